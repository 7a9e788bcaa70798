"""Linear probe: a linear classifier on a model's frozen global-average-pooled features.

The baseline every fine-tuning result is reported beside: if fine-tuning the whole
network classifies worse than a linear classifier on the *pretrained* features, the
fine-tuning destroyed what the backbone knew.

`linear_probe(model, train_ds, eval_ds)` extracts `GAP(cam_features)` once per image
(inference mode; training images also flipped left-right, two feature rows per image),
standardises the features with the training mean and std, and fits a multinomial
logistic regression with an L2 penalty by full-batch Adam (a convex objective; a few
hundred steps suffice for a few thousand rows). The L2 strength is chosen by k-fold
cross-validation on the training features only.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

__all__ = ["ProbeResult", "extract_features", "fit_logistic_regression", "linear_probe",
           "probe_table_row",
           "probe_pretrained"]


@dataclasses.dataclass
class ProbeResult:
    """What `linear_probe` returns.

    Attributes:
      top1_cls: Top-1 accuracy on the evaluation images, percent.
      train_top1_cls: Top-1 on the training features, percent.
      l2: the chosen L2 strength.
      cv_top1: `{l2: mean cross-validated Top-1 (percent)}`.
      num_train, num_eval: feature rows used.
    """

    top1_cls: float
    train_top1_cls: float
    l2: float
    cv_top1: dict
    num_train: int
    num_eval: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _feature_model(model):
    import keras

    features = model.get_layer("cam_features").output
    pooled = keras.ops.mean(keras.ops.cast(features, "float32"), axis=(1, 2))
    return keras.Model(model.inputs, pooled, name=f"{model.name}_gap_features")


def extract_features(model, dataset, flip: bool = False):
    """GAP features of `model`'s `cam_features` layer over an eval-style dataset.

    Args:
      model: a keras_has model (layer `cam_features` `[B, h, w, C]`).
      dataset: batches of dicts with `image` `[B, S, S, 3]` (preprocessed) and `label`
        `[B]` (`keras_has.data.make_eval_dataset`).
      flip: also return the features of the left-right flipped images (after the
        originals).

    Returns:
      `(features float32 [N, C] (2N with flip), labels int64 [N] (2N))`.
    """
    extractor = _feature_model(model)

    @tf.function(reduce_retracing=True)
    def run(images):
        return extractor(images, training=False)

    rows, labels = [], []
    flipped_rows = []
    for batch in dataset:
        images = tf.convert_to_tensor(batch["image"], tf.float32)
        rows.append(np.asarray(run(images)))
        labels.append(np.asarray(batch["label"]).astype(np.int64))
        if flip:
            flipped_rows.append(np.asarray(run(tf.reverse(images, axis=[2]))))
    if not rows:
        raise ValueError("dataset: no batches to extract features from")
    features = np.concatenate(rows + flipped_rows)
    labels = np.concatenate(labels * (2 if flip else 1))
    return features.astype(np.float32), labels


def fit_logistic_regression(features, labels, num_classes: int, l2: float, steps: int = 300,
                            learning_rate: float = 0.05, seed: int = 0):
    """Multinomial logistic regression with `l2 / 2 * ||W||^2` (bias not penalised).

    Args:
      features: float `[N, C]` (standardised is best).
      labels: int `[N]` in `[0, num_classes)`.

    Returns:
      `(kernel [C, K], bias [K])` NumPy float32.
    """
    x = tf.constant(features, tf.float32)
    y = tf.constant(labels, tf.int64)
    init = tf.random.stateless_normal([x.shape[1], num_classes], seed=[seed, 0], stddev=0.01)
    kernel = tf.Variable(init)
    bias = tf.Variable(tf.zeros([num_classes]))
    import keras

    optimizer = keras.optimizers.Adam(learning_rate)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits = tf.matmul(x, kernel) + bias
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
            loss += 0.5 * l2 * tf.reduce_sum(tf.square(kernel))
        grads = tape.gradient(loss, [kernel, bias])
        optimizer.apply_gradients(zip(grads, [kernel, bias]))
        return loss

    for _ in range(int(steps)):
        step()
    return kernel.numpy(), bias.numpy()


def _accuracy(features, labels, kernel, bias) -> float:
    predictions = np.argmax(features @ kernel + bias, axis=1)
    return float(100.0 * np.mean(predictions == labels))


def linear_probe(model, train_dataset, eval_dataset, num_classes: int,
                 l2_grid=(1e-4, 1e-3, 1e-2, 1e-1), folds: int = 3, seed: int = 0,
                 flip_train: bool = True) -> ProbeResult:
    """Top-1 of a linear classifier on `model`'s frozen GAP features.

    Args:
      model: the (pretrained, not fine-tuned) keras_has model.
      train_dataset, eval_dataset: eval-style dict datasets (no augmentation), e.g.
        `make_eval_dataset(source, S, B, split="train", preprocessing=...)`.
      num_classes: `K`.
      l2_grid: L2 strengths tried; the best mean k-fold Top-1 on the training images
        wins (ties: the stronger penalty).
      folds: cross-validation folds (images are assigned to folds with `seed`; an
        image's flipped copy stays in its fold).
      seed: fold assignment and initialisation.
      flip_train: add left-right flipped training images.

    Returns:
      `ProbeResult`.
    """
    train_x, train_y = extract_features(model, train_dataset, flip=flip_train)
    eval_x, eval_y = extract_features(model, eval_dataset)
    mean = train_x.mean(axis=0)
    std = train_x.std(axis=0) + 1e-6
    train_x = (train_x - mean) / std
    eval_x = (eval_x - mean) / std
    copies = 2 if flip_train else 1
    images = len(train_y) // copies
    rng = np.random.default_rng(seed)
    fold_of_image = rng.permutation(images) % folds
    fold = np.tile(fold_of_image, copies)
    cv = {}
    for l2 in l2_grid:
        scores = []
        for k in range(folds):
            fit, held = fold != k, fold == k
            kernel, bias = fit_logistic_regression(train_x[fit], train_y[fit], num_classes,
                                                   l2, seed=seed)
            scores.append(_accuracy(train_x[held], train_y[held], kernel, bias))
        cv[float(l2)] = float(np.mean(scores))
    best = max(sorted(cv, reverse=True), key=lambda v: cv[v])
    kernel, bias = fit_logistic_regression(train_x, train_y, num_classes, best, seed=seed)
    return ProbeResult(
        top1_cls=_accuracy(eval_x, eval_y, kernel, bias),
        train_top1_cls=_accuracy(train_x, train_y, kernel, bias),
        l2=best, cv_top1=cv, num_train=len(train_y), num_eval=len(eval_y))


def probe_pretrained(config, source, preprocessing, eval_dataset) -> dict:
    """`linear_probe` of `config`'s model as built (its pretrained weights, an untrained
    head), trained on `config`'s training split of `source` and scored on
    `eval_dataset`, both fed with `preprocessing`.

    Returns:
      `ProbeResult.to_dict()` plus `seconds`, the probe's wall time.
    """
    import time

    from keras_has import data, models

    started = time.perf_counter()
    size = config.data.image_size
    kwargs = dict(config.model_kwargs)
    kwargs.setdefault("seed", 0)
    model = models.get_model(config.model, source.num_classes, input_shape=(size, size, 3),
                             **kwargs)
    train_ds = data.make_eval_dataset(source, size, config.data.eval_batch_size
                                      or config.data.batch_size, split=config.data.train_split,
                                      preprocessing=preprocessing)
    result = linear_probe(model, train_ds, eval_dataset, source.num_classes).to_dict()
    result["seconds"] = time.perf_counter() - started
    return result


def probe_table_row(probe: dict) -> tuple:
    """The extra row a results table shows for a `probe_pretrained` result."""
    return ("Linear probe (frozen pretrained features)",
            {"Top-1 Clas": f"{probe['top1_cls']:.2f}"})

