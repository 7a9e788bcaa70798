"""Post-hoc CAM methods beside trained WSOL methods on one test split (a table).

Each --arm is TITLE=GLOB[:METHODS]: the .keras files of one trained model (one per seed,
the files the GLOB matches, sorted) and the CAM methods it is explained with (default
cam). Every method is scored under every --normalizations entry; the maps are computed
once per model, method and split.

    python scripts/compare_cams.py --source=../shared/data/pets3 \
        --arm="GAP=outputs/methods_pets3/cam_seed*/model.keras:cam,gradcam,gradcam_plus_plus,xgradcam,layercam,eigencam" \
        --arm="Hide-and-Seek=outputs/methods_pets3/has_seed*/model.keras" \
        --normalizations=minmax,ivr --output_dir=outputs/posthoc_pets3

Prints the Markdown table; with --output_dir writes results.json and table.md there
(and with --gallery=N, gallery.png: the first N images under each arm's first seed).
The logic is keras_has.experiments.posthoc.compare_cam_methods.
"""
import argparse
import glob
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))


def parse_arm(text):
    from keras_has.experiments.posthoc import CamArm

    title, sep, rest = text.partition("=")
    if not sep or not title or not rest:
        raise SystemExit(f"--arm: expected TITLE=GLOB[:METHODS], received {text!r}")
    pattern, _, methods = rest.partition(":")
    paths = tuple(sorted(glob.glob(os.path.expanduser(pattern))))
    if not paths:
        raise SystemExit(f"--arm {title}: no files match {pattern!r}")
    names = tuple(m for m in (methods or "cam").split(",") if m)
    return CamArm(title, paths, names)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--mask_split", default="auto",
                        help="split with masks of the same images ('auto': <split>_mask; "
                             "empty: no PxAP)")
    parser.add_argument("--arm", action="append", required=True)
    parser.add_argument("--normalizations", default="minmax,ivr")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_batches", type=int, default=None)
    parser.add_argument("--cam_threshold", type=float, default=0.2)
    parser.add_argument("--output_dir", default=None)
    parser.add_argument("--gallery", type=int, default=0,
                        help="with --output_dir: gallery.png of this many first images "
                             "under each arm's first seed and method (its first "
                             "normalisation); 0: none")
    args = parser.parse_args(argv)
    if args.gallery < 0 or (args.gallery and not args.output_dir):
        raise SystemExit(f"--gallery: expected 0, or a positive count with --output_dir, "
                         f"received {args.gallery}")

    from keras_has.util import console

    console.quiet_tensorflow()
    from keras_has.experiments import posthoc, report
    from keras_has.localize.cams import check_method

    arms = [parse_arm(text) for text in args.arm]
    for arm in arms:
        for method in arm.methods:
            try:
                check_method(method)
            except ValueError as error:
                raise SystemExit(f"--arm {arm.title}: {error}") from None
    normalizations = tuple(n for n in args.normalizations.split(",") if n)
    started = time.perf_counter()
    rows, runs = posthoc.compare_cam_methods(
        arms, args.source, split=args.split, mask_split=args.mask_split or None,
        normalizations=normalizations, batch_size=args.batch_size,
        cam_threshold=args.cam_threshold, max_batches=args.max_batches)
    seeds = {len(arm.paths) for arm in arms}
    images = "" if args.max_batches is None else f"; first {args.max_batches} batches"
    table = report.format_table(
        report.summarize(runs), rows, posthoc.TABLE_COLUMNS, min(seeds),
        units=f"percent on {args.split!r}{images}",
        detail=f"GT-known / Top-1 Loc at CAM threshold {args.cam_threshold}, IoU >= 0.5")
    print(table)
    print(f"compare_cams.py: {time.perf_counter() - started:.0f} s")
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
        report.write_results(os.path.join(args.output_dir, "results.json"), {
            "arms": [{"title": a.title, "paths": list(a.paths), "methods": list(a.methods)}
                     for a in arms], "normalizations": list(normalizations),
            "split": args.split, "runs": runs, "table": table})
        with open(os.path.join(args.output_dir, "table.md"), "w", encoding="utf-8") as f:
            f.write(table + "\n")
        if args.gallery:
            written = posthoc.write_gallery(arms, args.source, args.output_dir,
                                            split=args.split, num_examples=args.gallery,
                                            normalization=normalizations[0],
                                            batch_size=args.batch_size,
                                            cam_threshold=args.cam_threshold)
            print("wrote " + ", ".join(p for p in written if p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
