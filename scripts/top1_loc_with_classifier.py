"""Top-1 Loc of one method's boxes under another model's classes (as many WSOL papers
report it: a localizer's boxes with the baseline's classifier), seed by seed.

    python scripts/top1_loc_with_classifier.py --source=../shared/data/pets3 \
        --boxes="outputs/has/has_seed*/model.keras" \
        --classes="outputs/gap/gap_seed*/model.keras"

The files of each glob are sorted and paired in order (seed 0 with seed 0, ...). Prints
each pair's Top-1 Loc and the mean ± std (percent). The logic is
keras_has.experiments.posthoc.top1_loc_with_classifier.
"""
import argparse
import glob
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--boxes", required=True, help="glob of the box models' .keras files")
    parser.add_argument("--classes", required=True,
                        help="glob of the classifiers' .keras files")
    parser.add_argument("--cam_threshold", type=float, default=0.2)
    args = parser.parse_args(argv)
    boxes = sorted(glob.glob(os.path.expanduser(args.boxes)))
    classes = sorted(glob.glob(os.path.expanduser(args.classes)))
    if not boxes or len(boxes) != len(classes):
        raise SystemExit(f"--boxes / --classes: expected the same number (>= 1) of files, "
                         f"matched {len(boxes)} and {len(classes)}")

    from keras_has.util import console

    console.quiet_tensorflow()
    import numpy as np

    from keras_has.experiments.posthoc import top1_loc_with_classifier

    values = []
    for box_path, class_path in zip(boxes, classes):
        value = top1_loc_with_classifier(box_path, class_path, args.source, split=args.split,
                                         cam_threshold=args.cam_threshold)
        values.append(value)
        print(f"{value:.2f}  boxes {box_path}  classes {class_path}")
    print(f"Top-1 Loc (boxes of --boxes, classes of --classes): {np.mean(values):.2f} ± "
          f"{np.std(values):.2f} over {len(values)} pair(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
