"""Training step time of every WSOL method, round-robin, relative to `cam`.

Builds each method's model as training does (quickstart settings by default:
tiny_gap widths 16-128, pools 2, 64 px, batch 32, mixed_bfloat16), with its loss,
its training model (`keras_has.methods.TrainingModel`: labels as a graph input, the
method's batch augmentation and loss) and its input pipeline
(the built-in dataset's training split; Hide-and-Seek's hiding in `tf.data`), then
times one `train_on_batch` per method per round, so a busy machine slows all methods
alike; prints the median seconds per step and the ratio to the first method.

Usage:
  python scripts/benchmark_methods.py --rounds=30
"""
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("methods", ["cam", "has", "acol", "spg", "adl", "cutmix"], "Methods to time.")
flags.DEFINE_integer("rounds", 30, "Timed rounds (one step of each method per round).",
                     lower_bound=1)
flags.DEFINE_integer("warmup", 3, "Untimed steps per method first.", lower_bound=1)
flags.DEFINE_integer("batch", 32, "Images per batch.", lower_bound=1)
flags.DEFINE_integer("size", 64, "Image side.", lower_bound=8)
flags.DEFINE_string("policy", "mixed_bfloat16", "Keras dtype policy of the models.")


def main(argv):
    del argv
    import keras

    from keras_has import config as cfg
    from keras_has import data, methods, models
    from keras_has.train.trainer import run_preprocessing

    base = cfg.TrainConfig(model="tiny_gap", output_dir="unused",
                           data=cfg.DataConfig(source="synthetic", image_size=FLAGS.size,
                                               resize_size=FLAGS.size, batch_size=FLAGS.batch),
                           hiding=cfg.HidingConfig(grid_sizes=(0, 8, 16, 24, 32)),
                           model_kwargs={"widths": (16, 32, 64, 128), "pools": 2})
    prep, mean, _ = run_preprocessing(base)
    steps = {}
    for name in FLAGS.methods:
        method = methods.get_method(name)
        hiding = method.pipeline_hiding(base.hiding, FLAGS.size)
        if hiding is not None:
            hiding["fill_value"] = prep.value_of(mean)
        ds = data.make_train_dataset("synthetic", FLAGS.size, FLAGS.batch, hiding=hiding,
                                     seed=0, preprocessing=prep, resize_size=FLAGS.size,
                                     drop_remainder=True).repeat()
        model = models.get_model("tiny_gap", 10, input_shape=(FLAGS.size, FLAGS.size, 3),
                                 widths=(16, 32, 64, 128), pools=2, seed=0,
                                 dtype_policy=FLAGS.policy)
        model = method.build(model, seed=0, model_name="tiny_gap",
                             model_kwargs={"widths": (16, 32, 64, 128), "pools": 2})
        training = methods.TrainingModel(model, method, seed=0)
        training.compile(optimizer=keras.optimizers.Adam(1e-3))
        steps[name] = (training, iter(ds))
    times = {name: [] for name in steps}
    for round_ in range(FLAGS.warmup + FLAGS.rounds):
        for name, (model, batches) in steps.items():
            # The input pipeline runs outside the timed step (in training it overlaps the
            # steps through prefetching).
            images, labels = next(batches)
            start = time.perf_counter()
            model.train_on_batch(images, labels)
            if round_ >= FLAGS.warmup:
                times[name].append(time.perf_counter() - start)
    reference = float(np.median(times[FLAGS.methods[0]]))
    print(f"{'method':8s} {'s/step':>8s} {'vs ' + FLAGS.methods[0]:>8s}")
    for name, values in times.items():
        median = float(np.median(values))
        print(f"{name:8s} {median:8.4f} {median / reference:7.2f}x")


if __name__ == "__main__":
    app.run(main)
