"""Export a trained model as a SavedModel localizer (image in; class, score, box, CAM out).

Usage:
  python scripts/export.py --model=runs/alexnet_has_32/model.keras --output_dir=exports/has32
  python scripts/export.py --model=model.keras --output_dir=out --image_size=224 \\
      --mean=123.7,116.3,103.5 --std=58.4,57.1,57.4 --class_names=class_names.txt

Preprocessing values not given as flags come from the training run: `image_size` from
the `config.json` beside the model (or --train_config), the input preprocessing from the
run's `preprocessing.json` (the backbone's keras.applications preprocessing for a
fine-tuned pretrained model; recorded in the export's assets), else `mean`/`std` from its
data source (or --source), and the class names from the source. See keras_has.export.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app, flags  # noqa: E402

def define_flags():
    """Defines the flags (only when run as a script, so that importing this file for
    its functions defines none)."""
    flags.DEFINE_string("model", None, "Trained model (.keras file).")
    flags.DEFINE_string("output_dir", None, "SavedModel directory to create.")
    flags.DEFINE_string("train_config", "",
                        "Training config.json (default: config.json beside --model, if any).")
    flags.DEFINE_integer("image_size", 0, "Model input side (0: from the training config).")
    flags.DEFINE_list("mean", [], "Per-channel mean in [0, 255], 3 values "
                      "(empty: from the data source).")
    flags.DEFINE_list("std", [], "Per-channel std in [0, 255], 3 values "
                      "(empty: from the data source).")
    flags.DEFINE_string("source", "", "Data source to read mean/std/class names from "
                        "(empty: the config's).")
    flags.DEFINE_string("split", "", "Split the normalisation is measured on "
                        "(empty: the config's training split).")
    flags.DEFINE_string("class_names", "", "Comma-separated names or a one-name-per-line file "
                        "(empty: the source's).")
    flags.DEFINE_float("cam_threshold", 0.2, "CAM threshold, a fraction of each CAM's max.")
    flags.DEFINE_integer("top_k", 5, "Classes returned per image.")
    flags.DEFINE_integer("max_image_pixels", 50_000_000,
                         "Largest height * width accepted from bytes.")
    flags.DEFINE_bool("overwrite", False, "Replace an existing --output_dir.")
    flags.DEFINE_bool("cam_signature", True, "Add the cam_features signature that "
                      "scripts/evaluate.py uses to evaluate the export.")
    flags.mark_flags_as_required(["model", "output_dir"])


FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import keras

    import keras_has.models  # noqa: F401  (registers the custom layers for loading)
    from keras_has import export

    if not os.path.isfile(FLAGS.model):
        raise app.UsageError(
            f"--model: expected a .keras file, received {FLAGS.model!r} (not a file)")
    class_names = FLAGS.class_names or None
    if class_names and not os.path.isfile(class_names):
        class_names = [name.strip() for name in class_names.split(",")]
    try:
        settings = export.resolve_serving_settings(
            model_path=FLAGS.model, train_config=FLAGS.train_config or None,
            image_size=FLAGS.image_size or None,
            mean=FLAGS.mean or None, std=FLAGS.std or None,
            class_names=class_names, source=FLAGS.source or None, split=FLAGS.split or None)
        model = keras.saving.load_model(FLAGS.model, compile=False)
        path = export.export_saved_model(
            model, FLAGS.output_dir, image_size=settings["image_size"],
            preprocessing=settings["preprocessing"], class_names=settings["class_names"],
            cam_threshold=FLAGS.cam_threshold, top_k=FLAGS.top_k, config=settings["config"],
            overwrite=FLAGS.overwrite, cam_signature=FLAGS.cam_signature,
            max_image_pixels=FLAGS.max_image_pixels)
    except (ValueError, FileExistsError) as error:
        print(f"export.py: {error}", file=sys.stderr)
        return 2
    print(f"exported {FLAGS.model} to {path} (signatures serving_default, serving_images)")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
