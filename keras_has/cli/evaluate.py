"""`keras-has evaluate`: CAM localization metrics of a trained model on a split.

    keras-has evaluate --model_path=runs/quick/model.keras --source=synthetic \\
        --out_dir=runs/quick/eval
    keras-has evaluate --model_path=exports/has32 --source=/data/CUB --split=test
    keras-has evaluate --model_path=runs/a/checkpoints/epoch_010.weights.h5 --model=tiny_gap \\
        --num_classes=3 --image_size=64 --source=synthetic

A SavedModel must carry the `cam_features` signature (exports have it unless made with
cam_signature=False); its image size and input preprocessing come from its
assets/preprocessing.json. For a .keras file or a checkpoint of a training run, the
preprocessing the run recorded in its folder (preprocessing.json) is used, so only the
evaluated split is read and a fine-tuned pretrained backbone sees the inputs it was
trained on. Prints the metrics table; with --out_dir writes metrics.json and gallery.png.
The logic is `keras_has.evaluation.evaluate_model_file`.
"""
from __future__ import annotations

from absl import flags

from keras_has.cli import common

flags.DEFINE_string("model_path", None, "A .keras file, a .weights.h5 checkpoint or a "
                    "SavedModel directory (required).")
flags.DEFINE_string("model", None, "Model name (keras_has.models.list_models()), for a "
                    "weights checkpoint.")
flags.DEFINE_integer("num_classes", None, "Number of classes, for a weights checkpoint.")
flags.DEFINE_string("source", "synthetic", "Source name, WSOL metadata folder or TFDS name.")
flags.DEFINE_string("split", "test", "Split to evaluate.")
flags.DEFINE_bool("skip_corrupt", False, "WSOL folders: skip missing or unreadable images "
                  "(counted, logged once) instead of failing.")
flags.DEFINE_integer("image_size", None, "Evaluation image size (default: the export's, "
                     "the .keras model's input, or 224 for a checkpoint).")
flags.DEFINE_list("mean", None, "3 per-channel means, pixel scale, with --std (default: the "
                  "export's or the run's recorded preprocessing).")
flags.DEFINE_list("std", None, "3 per-channel stds, pixel scale, with --mean.")
flags.DEFINE_string("preprocessing", "", "Input preprocessing: dataset, caffe, tf or torch "
                    "(default: the export's or the run's recorded one, else dataset "
                    "statistics of --source's training split).")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_float("cam_threshold", 0.2, "Fixed CAM threshold (fraction of the max) of "
                   "GT-known and Top-1 Loc.")
flags.DEFINE_float("cam_curve_interval", None, "Step of the CAM threshold sweep of "
                   "MaxBoxAcc (default: keras_has.metrics.DEFAULT_CAM_CURVE_INTERVAL, 0.01, "
                   "as in compare).")
flags.DEFINE_string("box_rule", "tight", "Box rule: tight or wsolevaluation.")
flags.DEFINE_integer("num_examples", 16, "Images in the PNG gallery (0: none).")
flags.DEFINE_integer("max_batches", None, "Evaluate at most this many batches.")
flags.DEFINE_string("out_dir", None, "Where to write metrics.json and gallery.png "
                    "(default: nothing written).")

FLAGS = flags.FLAGS


def _floats(name, values):
    if values is None:
        return None
    try:
        return [float(v) for v in values]
    except ValueError:
        raise ValueError(f"{name}: expected 3 comma-separated numbers, received "
                         f"{','.join(values)!r}") from None


def evaluate(fv=FLAGS):
    """Evaluates as the parsed flags `fv` say; returns `(result, preprocessing, written)`."""
    if not fv.model_path:
        raise ValueError("model_path: expected a .keras file, a .weights.h5 checkpoint or a "
                         "SavedModel directory (--model_path), received nothing")
    from keras_has import console, evaluation, metrics

    interval = fv.cam_curve_interval
    return evaluation.evaluate_model_file(
        fv.model_path, fv.source, split=fv.split, model_name=fv.model,
        num_classes=fv.num_classes, image_size=fv.image_size,
        mean=_floats("mean", fv.mean), std=_floats("std", fv.std),
        preprocessing_mode=fv.preprocessing or None, batch_size=fv.batch_size,
        cam_threshold=fv.cam_threshold,
        cam_curve_interval=metrics.DEFAULT_CAM_CURVE_INTERVAL if interval is None else interval,
        box_rule=fv.box_rule, num_examples=fv.num_examples, max_batches=fv.max_batches,
        out_dir=fv.out_dir, verbose=1 if console.fit_verbosity(-1) == 1 else 0,
        skip_corrupt=fv.skip_corrupt)


def _evaluate(command, _):
    result, _, written = evaluate(FLAGS)
    print(f"\n{'metric':36s} {'value':>10s}")
    for k, v in result.metrics.items():
        print(f"{k:36s} {v:10.3f}" if isinstance(v, float) else f"{k:36s} {v:>10}")
    if written:
        print("wrote " + ", ".join(written))
    return 0


def main(argv) -> int:
    return common.run_command(argv, (), _evaluate)
