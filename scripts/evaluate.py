"""Evaluates a model's CAM localization on a source: table, JSON, PNG gallery.

    python scripts/evaluate.py --model_path=run/model.keras --source=synthetic \
        --image_size=224 --out_dir=run/eval
    python scripts/evaluate.py --model_path=run/ckpt.weights.h5 --model=tiny_gap \
        --num_classes=3 --source=/path/to/wsol_root --split=test

All logic lives in keras_has.evaluation / metrics / visualize; this file parses flags.
"""
import json
import os

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model_path", None, "a .keras file or a .weights.h5 checkpoint")
flags.DEFINE_string("model", None, "model name (keras_has.models) for a weights checkpoint")
flags.DEFINE_integer("num_classes", None, "number of classes for a weights checkpoint")
flags.DEFINE_string("source", "synthetic", "source name, WSOL folder or TFDS name")
flags.DEFINE_string("split", "test", "split to evaluate")
flags.DEFINE_integer("image_size", 224, "evaluation image size")
flags.DEFINE_integer("batch_size", 32, "batch size")
flags.DEFINE_float("cam_threshold", 0.2, "fixed CAM threshold (fraction of max)")
flags.DEFINE_float("cam_curve_interval", 0.001, "threshold sweep step")
flags.DEFINE_enum("box_rule", "tight", ["tight", "wsolevaluation"], "box rule")
flags.DEFINE_integer("num_examples", 16, "images in the PNG gallery (0: none)")
flags.DEFINE_integer("max_batches", None, "evaluate at most this many batches")
flags.DEFINE_string("out_dir", None, "where to write metrics.json and gallery.png")
flags.mark_flag_as_required("model_path")


def main(_):
    import keras
    from keras_has import data, evaluation, visualize
    from keras_has.callbacks import _atomic_write_json

    path = FLAGS.model_path
    if not os.path.exists(path):
        raise FileNotFoundError(f"--model_path: {path} does not exist")
    if path.endswith(".keras"):
        model = keras.saving.load_model(path, compile=False)
    elif path.endswith(".weights.h5"):
        if not FLAGS.model or not FLAGS.num_classes:
            raise ValueError("--model and --num_classes are required for a weights checkpoint")
        from keras_has import models
        model = models.get_model(FLAGS.model, FLAGS.num_classes,
                                 input_shape=(FLAGS.image_size, FLAGS.image_size, 3))
        model.load_weights(path)
    else:
        raise ValueError(f"--model_path: expected a .keras file or a .weights.h5 "
                         f"checkpoint, received {path}")
    source = data.get_source(FLAGS.source)
    mean, std = data.get_normalization(source)
    ds = data.make_eval_dataset(source, FLAGS.image_size, FLAGS.batch_size, split=FLAGS.split,
                                mean=mean, std=std)
    result = evaluation.run_localization(
        model, ds, cam_threshold=FLAGS.cam_threshold,
        cam_curve_interval=FLAGS.cam_curve_interval, box_rule=FLAGS.box_rule,
        num_examples=FLAGS.num_examples, max_batches=FLAGS.max_batches)
    print(f"\n{'metric':36s} {'value':>10s}")
    for k, v in result.metrics.items():
        print(f"{k:36s} {v:10.3f}" if isinstance(v, float) else f"{k:36s} {v:>10}")
    if FLAGS.out_dir:
        os.makedirs(FLAGS.out_dir, exist_ok=True)
        _atomic_write_json(os.path.join(FLAGS.out_dir, "metrics.json"), result.metrics)
        if result.examples is not None:
            ex = result.examples
            grid = visualize.gallery(visualize.denormalize_images(ex["image"], mean, std),
                                     ex["cam"], ex["boxes"], ex["num_boxes"], ex["pred_box"])
            visualize.save_png(os.path.join(FLAGS.out_dir, "gallery.png"), grid)
        print(f"wrote {FLAGS.out_dir}/metrics.json and gallery.png")


if __name__ == "__main__":
    app.run(main)
