"""Evaluates a model's CAM localization on a source: table, JSON, PNG gallery.

    python scripts/evaluate.py --model_path=run/model.keras --source=synthetic \
        --image_size=224 --out_dir=run/eval
    python scripts/evaluate.py --model_path=run/export --source=synthetic
    python scripts/evaluate.py --model_path=run/ckpt.weights.h5 --model=tiny_gap \
        --num_classes=3 --source=/path/to/wsol_root --split=test

A SavedModel directory must carry the `cam_features` signature (exports have it unless
made with cam_signature=False); its image size, mean and
std come from its assets/preprocessing.json unless flags override them.

All logic lives in keras_has.evaluation / metrics / visualize; this file parses flags.
"""

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model_path", None, "a .keras file, a .weights.h5 checkpoint or a SavedModel directory")
flags.DEFINE_string("model", None, "model name (keras_has.models) for a weights checkpoint")
flags.DEFINE_integer("num_classes", None, "number of classes for a weights checkpoint")
flags.DEFINE_string("source", "synthetic", "source name, WSOL folder or TFDS name")
flags.DEFINE_string("split", "test", "split to evaluate")
flags.DEFINE_integer("image_size", None, "evaluation image size (default: the export's, "
                     "the .keras model's input, or 224)")
flags.DEFINE_list("mean", None, "3 per-channel means, pixel scale (default: the export's, "
                  "else the source's training statistics)")
flags.DEFINE_list("std", None, "3 per-channel stds (default: as --mean)")
flags.DEFINE_integer("batch_size", 32, "batch size")
flags.DEFINE_float("cam_threshold", 0.2, "fixed CAM threshold (fraction of max)")
flags.DEFINE_float("cam_curve_interval", 0.001, "threshold sweep step")
flags.DEFINE_enum("box_rule", "tight", ["tight", "wsolevaluation"], "box rule")
flags.DEFINE_integer("num_examples", 16, "images in the PNG gallery (0: none)")
flags.DEFINE_integer("max_batches", None, "evaluate at most this many batches")
flags.DEFINE_string("out_dir", None, "where to write metrics.json and gallery.png")
flags.mark_flag_as_required("model_path")


def main(_):
    from keras_has import data, evaluation

    model, settings = evaluation.load_for_evaluation(
        FLAGS.model_path, FLAGS.model, FLAGS.num_classes, FLAGS.image_size)
    source = data.get_source(FLAGS.source)
    mean = [float(v) for v in FLAGS.mean] if FLAGS.mean else settings["mean"]
    std = [float(v) for v in FLAGS.std] if FLAGS.std else settings["std"]
    if mean is None or std is None:
        mean, std = data.get_normalization(source)
    ds = data.make_eval_dataset(source, settings["image_size"], FLAGS.batch_size,
                                split=FLAGS.split, mean=mean, std=std)
    result = evaluation.run_localization(
        model, ds, cam_threshold=FLAGS.cam_threshold,
        cam_curve_interval=FLAGS.cam_curve_interval, box_rule=FLAGS.box_rule,
        num_examples=FLAGS.num_examples, max_batches=FLAGS.max_batches)
    print(f"\n{'metric':36s} {'value':>10s}")
    for k, v in result.metrics.items():
        print(f"{k:36s} {v:10.3f}" if isinstance(v, float) else f"{k:36s} {v:>10}")
    if FLAGS.out_dir:
        written = evaluation.write_evaluation(result, FLAGS.out_dir, mean, std)
        print("wrote " + ", ".join(written))


if __name__ == "__main__":
    app.run(main)
