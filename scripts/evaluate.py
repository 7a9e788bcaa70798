"""Evaluates a model's CAM localization on a source: table, JSON, PNG gallery.

    python scripts/evaluate.py --model_path=run/model.keras --source=synthetic \
        --image_size=224 --out_dir=run/eval
    python scripts/evaluate.py --model_path=run/export --source=synthetic
    python scripts/evaluate.py --model_path=run/ckpt.weights.h5 --model=tiny_gap \
        --num_classes=3 --source=/path/to/wsol_root --split=test

A SavedModel directory must carry the `cam_features` signature (exports have it unless
made with cam_signature=False); its image size and input preprocessing come from its
assets/preprocessing.json unless flags override them. For a .keras file or checkpoint
of a training run, the preprocessing recorded in the run folder (preprocessing.json) is
used, so a fine-tuned pretrained backbone is evaluated on the inputs it was trained on.

All logic lives in keras_has.evaluation / metrics / visualize; this file parses flags.
"""

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags(fv=FLAGS):
    """Defines the script's flags on `fv` (only when run as a script, or in tests on
    their own FlagValues, so importing this file defines nothing)."""
    d = dict(flag_values=fv)
    flags.DEFINE_string("model_path", None, "a .keras file, a .weights.h5 checkpoint or a "
                        "SavedModel directory", **d)
    flags.DEFINE_string("model", None, "model name (keras_has.models) for a weights "
                        "checkpoint", **d)
    flags.DEFINE_integer("num_classes", None, "number of classes for a weights checkpoint", **d)
    flags.DEFINE_string("source", "synthetic", "source name, WSOL folder or TFDS name", **d)
    flags.DEFINE_string("split", "test", "split to evaluate", **d)
    flags.DEFINE_integer("image_size", None, "evaluation image size (default: the export's, "
                         "the .keras model's input, or 224)", **d)
    flags.DEFINE_list("mean", None, "3 per-channel means, pixel scale (default: the export's, "
                      "else the source's training statistics)", **d)
    flags.DEFINE_list("std", None, "3 per-channel stds (default: as --mean)", **d)
    flags.DEFINE_string("preprocessing", "", "input preprocessing: dataset, caffe, tf or "
                        "torch (default: the export's or the run's recorded one, else "
                        "dataset statistics)", **d)
    flags.DEFINE_integer("batch_size", 32, "batch size", **d)
    flags.DEFINE_float("cam_threshold", 0.2, "fixed CAM threshold (fraction of max)", **d)
    flags.DEFINE_float("cam_curve_interval", 0.001, "threshold sweep step", **d)
    flags.DEFINE_enum("box_rule", "tight", ["tight", "wsolevaluation"], "box rule", **d)
    flags.DEFINE_integer("num_examples", 16, "images in the PNG gallery (0: none)", **d)
    flags.DEFINE_integer("max_batches", None, "evaluate at most this many batches", **d)
    flags.DEFINE_string("out_dir", None, "where to write metrics.json and gallery.png", **d)
    flags.mark_flag_as_required("model_path", flag_values=fv)


def run(fv=FLAGS):
    """Evaluates as the parsed flags `fv` say."""
    from keras_has import data, evaluation

    from keras_has import preprocessing as prep_lib

    if fv.preprocessing and fv.preprocessing not in prep_lib.MODES[1:]:
        raise app.UsageError(f"--preprocessing: expected one of {list(prep_lib.MODES[1:])}, "
                             f"received {fv.preprocessing!r}")
    model, settings = evaluation.load_for_evaluation(
        fv.model_path, fv.model, fv.num_classes, fv.image_size)
    source = data.get_source(fv.source)
    prep = settings["preprocessing"]
    if fv.mean or fv.std or (fv.preprocessing and fv.preprocessing != getattr(prep, "mode", "")):
        mean = [float(v) for v in fv.mean] if fv.mean else None
        std = [float(v) for v in fv.std] if fv.std else None
        if mean is None or std is None:
            mean, std = data.get_normalization(source)
        prep = prep_lib.make_preprocessing(fv.preprocessing or "dataset", mean, std)
    elif prep is None:
        prep = prep_lib.make_preprocessing("dataset", *data.get_normalization(source))
    ds = data.make_eval_dataset(source, settings["image_size"], fv.batch_size,
                                split=fv.split, preprocessing=prep)
    result = evaluation.run_localization(
        model, ds, cam_threshold=fv.cam_threshold,
        cam_curve_interval=fv.cam_curve_interval, box_rule=fv.box_rule,
        num_examples=fv.num_examples, max_batches=fv.max_batches)
    print(f"\n{'metric':36s} {'value':>10s}")
    for k, v in result.metrics.items():
        print(f"{k:36s} {v:10.3f}" if isinstance(v, float) else f"{k:36s} {v:>10}")
    if fv.out_dir:
        written = evaluation.write_evaluation(result, fv.out_dir, preprocessing=prep)
        print("wrote " + ", ".join(written))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    run(FLAGS)


if __name__ == "__main__":
    define_flags()
    app.run(main)
