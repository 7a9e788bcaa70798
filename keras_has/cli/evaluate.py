"""`keras-has evaluate`: CAM localization metrics of a trained model on a split.

    keras-has evaluate --model_path=runs/quick/model.keras --source=synthetic \\
        --output_dir=runs/quick/eval
    keras-has evaluate --model_path=exports/has32 --source=/data/CUB --split=test
    keras-has evaluate --model_path=runs/a/checkpoints/epoch_010.weights.h5 --model=tiny_gap \\
        --num_classes=3 --image_size=64 --source=synthetic

Any Keras classifier can be evaluated, not only models keras-has trained:
--cam_method (cam, gradcam, ..., see keras_has.localize.cams.compute_cams), --cam_layer
(default: the feature map that feeds the head, through nested models),
--cam_normalization (minmax, max, ivr), and --preprocessing=none for a model that scales
its own input:

    keras-has evaluate --model_path=my_classifier.keras --source=/data/my_wsol_folder \\
        --preprocessing=tf --cam_method=gradcam --cam_normalization=ivr

Every flag is a field of `keras_has.config.commands.EvaluateConfig`. A SavedModel must
carry the `cams_for_labels` signature (or an older export's `cam_features`; exports
have it unless made with cam_signature=False); its image size and input preprocessing come from its
assets/preprocessing.json. For a .keras file or a checkpoint of a training run, the
preprocessing the run recorded in its folder (preprocessing.json) is used, so only the
evaluated split is read and a fine-tuned pretrained backbone sees the inputs it was
trained on. Prints the metrics table; with --output_dir writes metrics.json and
gallery.png (--out_dir, the former name, still works).
The logic is `keras_has.serve.evaluate.evaluate_model_file`.
"""
from __future__ import annotations

from absl import flags

from keras_has.cli import common, config_flags
from keras_has.config.commands import EvaluateConfig, cam_output_value

config_flags.define_config_flags(EvaluateConfig)
flags.DEFINE_alias("out_dir", "output_dir")  # the former name (deprecated)


def evaluate(config: EvaluateConfig):
    """Evaluates as `config` says; returns `(result, preprocessing, written)`."""
    from keras_has.util import console
    from keras_has.serve import evaluate as serve_evaluate

    return serve_evaluate.evaluate_model_file(
        config.model_path, config.source, split=config.split, model_name=config.model,
        num_classes=config.num_classes, image_size=config.image_size, mean=config.mean,
        std=config.std, preprocessing_mode=config.preprocessing,
        batch_size=config.batch_size, cam_threshold=config.cam_threshold,
        cam_curve_interval=config.cam_curve_interval, box_rule=config.box_rule,
        num_examples=config.num_examples, max_batches=config.max_batches,
        output_dir=config.output_dir, verbose=1 if console.fit_verbosity(-1) == 1 else 0,
        skip_corrupt=config.skip_corrupt, cam_method=config.cam_method,
        cam_layer=config.cam_layer, cam_normalization=config.cam_normalization,
        cam_output=cam_output_value(config.cam_output),
        fold_batch_norm=config.fold_batch_norm)


def _evaluate(command, config, _):
    from keras_has.localize.metrics import metric_title

    result, _, written = evaluate(config)
    print(f"\n{'metric':44s} {'value':>10s}   key in metrics.json")
    for k, v in result.metrics.items():
        if k == "skipped_images":
            continue  # listed in metrics.json; the count is printed
        value = f"{v:10.3f}" if isinstance(v, float) else f"{v:>10}"
        print(f"{metric_title(k):44s} {value}   {k}")
    if written:
        print("wrote " + ", ".join(written))
    return 0


def main(argv) -> int:
    return common.run_command(argv, (EvaluateConfig,), _evaluate)
