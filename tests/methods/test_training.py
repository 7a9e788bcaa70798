"""keras_has.methods.training: labels as an input of the training graph.

Tiny models (tiny_gap, 16 px, 3 classes) and hand-made tensors: the labels reach ACoL's
erasing and SPG's guidance (and differ from the top-1 class's result), CutMix's loss
is the hand-computed mixed cross-entropy, the graphs trace anywhere without a context,
and every file a TrainingModel writes is the inference model's.
"""
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_has import methods, models
from keras_has.methods import ops
from keras_has.methods.base import step_seed
from keras_has.methods.layers import AcolErase, takes_labels
from keras_has.methods.training import TrainingModel, labelled_graph

from tests.helpers import REPO_ROOT, subprocess_env

NUM_CLASSES = 3


def _built(name, seed=0):
    base = models.get_model("tiny_gap", NUM_CLASSES, input_shape=(16, 16, 3), widths=(4, 8),
                            seed=seed)
    method = methods.get_method(name)
    return method.build(base, seed=seed, model_name="tiny_gap",
                        model_kwargs={"widths": (4, 8)}), method


def _images(batch=4, seed=1):
    return tf.random.stateless_normal([batch, 16, 16, 3], [seed, 2])


def _cross_entropy(logits, labels):
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels]


# ------------------------------------------------------------------- the labelled graph
def test_labelled_graph_erases_the_labelled_class_region_not_the_top1s():
    # One input holds the features (3 ones) and two class maps; class 0 is the top-1
    # (GAP 2.25 against 0.25) and peaks at (0, 0), class 1 peaks at (1, 1).
    inputs = keras.Input((2, 2, 5))
    erased = AcolErase(0.7, name="erase")([inputs[..., :3], inputs[..., 3:]])
    model = keras.Model(inputs, erased)
    maps = np.stack([[[9.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]], -1)
    x = tf.constant(np.concatenate([np.ones([2, 2, 3]), maps], -1)[None], tf.float32)

    graph = labelled_graph(model)
    assert [t.name for t in graph.inputs][1] == "labels"
    assert graph.get_layer("erase") is model.get_layer("erase")
    np.testing.assert_array_equal(model(x).numpy()[0, ..., 0], [[0, 1], [1, 1]])
    np.testing.assert_array_equal(graph([x, tf.constant([1])]).numpy()[0, ..., 0],
                                  [[1, 1], [1, 0]])
    np.testing.assert_array_equal(graph([x, tf.constant([0])]).numpy()[0, ..., 0],
                                  [[0, 1], [1, 1]])


def test_labelled_graph_shares_every_layer_and_weight_of_the_model():
    model, _ = _built("spg")
    graph = labelled_graph(model)
    assert [id(w) for w in graph.weights] == [id(w) for w in model.weights]
    images = _images()
    # SPG's logits are the baseline's, whatever the labels.
    np.testing.assert_allclose(graph([images, tf.constant([0, 1, 2, 0])]).numpy(),
                               model(images).numpy(), rtol=1e-6, atol=1e-6)
    assert takes_labels(model.get_layer("spg_head"))
    assert not takes_labels(model.get_layer("classifier"))


def test_acol_training_loss_uses_branch_b_on_the_features_erased_at_the_label():
    model, _ = _built("acol")
    images = _images()
    probe = keras.Model(model.inputs, [model.get_layer("acol_smooth").output,
                                       model.get_layer("classifier").output])
    smooth, maps_a = [t.numpy() for t in probe(images, training=True)]
    top1 = maps_a.mean(axis=(1, 2)).argmax(-1)
    labels = (top1 + 1) % NUM_CLASSES

    def branch_b_loss(classes):
        cams = maps_a[np.arange(len(classes)), :, :, classes]
        mask = ops.acol_erase_mask(tf.constant(cams), 0.7).numpy()
        x = model.get_layer("acol_b_conv")(tf.constant(smooth * mask[..., None]))
        class_maps = model.get_layer("classifier_b")(model.get_layer("acol_b_features")(x))
        return _cross_entropy(tf.reduce_mean(class_maps, [1, 2]).numpy(), labels).mean(), mask

    expected, mask_label = branch_b_loss(labels)
    at_top1, mask_top1 = branch_b_loss(top1)
    assert not np.array_equal(mask_label, mask_top1)  # the case tells them apart
    assert not np.isclose(expected, at_top1, rtol=1e-4)

    graph = labelled_graph(model)
    graph([images, tf.constant(labels)], training=True)
    assert len(graph.losses) == 1
    np.testing.assert_allclose(graph.losses[0].numpy(), expected, rtol=1e-5)


def test_spg_guidance_loss_is_computed_from_the_given_labels():
    model, _ = _built("spg")
    head = model.get_layer("spg_head")
    images = _images()
    probe = keras.Model(model.inputs, head.input)
    head_inputs = probe(images, training=True)
    top1 = tf.argmax(head_inputs[0], -1, output_type=tf.int32)
    labels = (top1 + 1) % NUM_CLASSES
    expected = head.aux_loss(head_inputs, labels).numpy()
    assert not np.isclose(expected, head.aux_loss(head_inputs, top1).numpy(), rtol=1e-4)

    graph = labelled_graph(model)
    graph([images, labels], training=True)
    assert len(graph.losses) == 1
    np.testing.assert_allclose(graph.losses[0].numpy(), expected, rtol=1e-5)


def test_graphs_trace_in_a_plain_tf_function_with_no_training_wrapper():
    model, _ = _built("acol")
    graph = labelled_graph(model)
    images = _images()
    labels = tf.constant([2, 1, 0, 2])

    @tf.function
    def inference(x):
        logits = model(x, training=True)
        return logits, len(model.losses)

    @tf.function
    def labelled(x, y):
        logits = graph([x, y], training=True)
        return logits, tf.add_n(graph.losses)

    logits, count = inference(images)
    assert count == 0  # without labels the heads add nothing (inference behaviour)
    labelled_logits, aux = labelled(images, labels)
    # Branch A's logits do not depend on the labels; branch B's loss does.
    np.testing.assert_allclose(labelled_logits.numpy(), logits.numpy(), rtol=1e-5, atol=1e-6)
    graph([images, labels], training=True)
    np.testing.assert_allclose(aux.numpy(), graph.losses[0].numpy(), rtol=1e-5)


def test_labelled_graph_rejects_a_model_without_one_input_and_one_output():
    a, b = keras.Input((2,)), keras.Input((2,))
    two_inputs = keras.Model([a, b], keras.layers.Add()([a, b]))
    with pytest.raises(ValueError, match=r"expected one image input and one logits output, "
                                         r"received 2 input\(s\) and 1 output\(s\)"):
        labelled_graph(two_inputs)
    with pytest.raises(TypeError, match="method: expected a keras_has.methods.Method"):
        TrainingModel(_built("cam")[0], "cam")


# ----------------------------------------------------------------------------- CutMix
def test_cutmix_compute_loss_is_the_area_weighted_cross_entropy_of_both_labels():
    model, method = _built("cutmix")
    training = TrainingModel(model, method)
    training.compile(optimizer="sgd")
    logits = tf.constant([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    targets = {"labels": tf.constant([0, 1]), "mix_labels": tf.constant([2, 0]),
               "mix_weight": tf.constant(0.75)}
    expected = (0.75 * _cross_entropy(logits, [0, 1]) + 0.25 * _cross_entropy(logits, [2, 0]))
    np.testing.assert_allclose(training.compute_loss(y=targets, y_pred=logits).numpy(),
                               expected.mean(), rtol=1e-6)
    # At evaluation the targets are the labels: the plain cross-entropy.
    np.testing.assert_allclose(
        training.compute_loss(y=tf.constant([0, 1]), y_pred=logits, training=False).numpy(),
        _cross_entropy(logits, [0, 1]).mean(), rtol=1e-6)


def test_cutmix_training_step_pastes_with_the_step_seed_and_mixes_the_loss():
    model, method = _built("cutmix")
    training = TrainingModel(model, method, seed=5)
    training.compile(optimizer=keras.optimizers.SGD(0.0),
                     metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    images, labels = _images(), tf.constant([0, 1, 2, 0])
    mixed, targets = method.augment_batch(images, labels, step_seed(5, 0))
    weight, other = float(targets["mix_weight"]), targets["mix_labels"].numpy()
    assert weight < 1.0 and (other != labels.numpy()).any()  # this seed pastes
    logits = model(mixed, training=True).numpy()
    expected = (weight * _cross_entropy(logits, labels.numpy())
                + (1 - weight) * _cross_entropy(logits, other)).mean()
    logs = training.train_on_batch(images, labels, return_dict=True)
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-5)
    # Accuracy is measured against the unpasted labels.
    assert logs["accuracy"] == pytest.approx((logits.argmax(-1) == labels.numpy()).mean())


# ------------------------------------------------------------------------------ files
def test_a_training_model_saves_and_loads_the_inference_model(tmp_path):
    model, method = _built("acol")
    training = TrainingModel(model, method, seed=0)
    training.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    images, labels = _images(), tf.constant([0, 1, 2, 0])
    training.train_on_batch(images, labels)
    with pytest.raises(ValueError, match=r"the loss is the method's \(Acol.loss\(\)\); "
                                         r"expected no `loss`, received loss='mse'"):
        training.compile(optimizer="sgd", loss="mse")

    path = str(tmp_path / "model.keras")
    training.save(path)
    loaded = keras.saving.load_model(path)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert len(loaded.inputs) == 1 and not isinstance(loaded, TrainingModel)
    for ours, theirs in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert getattr(loaded, "optimizer", None) is None  # for inference; training state: save_weights
    np.testing.assert_allclose(loaded(images).numpy(), model(images).numpy(), rtol=1e-6)

    # Weight files are the inference model's: a freshly built model reads them.
    weights = str(tmp_path / "epoch.weights.h5")
    training.save_weights(weights)
    fresh, _ = _built("acol", seed=1)
    fresh.load_weights(weights)
    for ours, theirs in zip(model.weights, fresh.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    # ...and a training model reads them back, optimizer state included.
    other, other_method = _built("acol", seed=2)
    again = TrainingModel(other, other_method)
    again.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    again.optimizer.build(other.trainable_variables)
    again.load_weights(weights)
    assert int(again.optimizer.iterations.numpy()) == 1
    np.testing.assert_array_equal(other.get_layer("classifier_b").kernel.numpy(),
                                  model.get_layer("classifier_b").kernel.numpy())


# ------------------------------------------------------------------ MirroredStrategy
_TWO_REPLICAS = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from keras_has import methods, models
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    base = models.get_model("tiny_gap", 3, input_shape=(16, 16, 3), widths=(4, 8), seed=0)
    method = methods.get_method("acol")
    model = method.build(base, seed=0)
    training = methods.TrainingModel(model, method, seed=0)
    training.compile(optimizer=keras.optimizers.SGD(0.0))
images = np.random.default_rng(0).normal(size=(8, 16, 16, 3)).astype("float32")
labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
logged = training.fit(batches, epochs=1, verbose=0).history["loss"][0]
# Each replica gets 4 images: its loss is its own classification + branch B loss.
expected = []
for half in (slice(0, 4), slice(4, 8)):
    logits = training((images[half], labels[half]), training=True)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels[half], logits)
    expected.append(float(ce) + float(training.losses[0]))
print("LOSSES", logged, np.mean(expected))
"""


def test_every_replica_trains_on_its_own_labels_and_the_losses_average_over_replicas():
    proc = subprocess.run([sys.executable, "-c", _TWO_REPLICAS], capture_output=True,
                          text=True, env=subprocess_env(), timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("LOSSES")][-1]
    logged, expected = (float(v) for v in line.split()[1:])
    # Keras scales every replica's loss by 1 / replicas and reports the sum: the mean
    # of the replicas' classification + auxiliary losses (each with its labels).
    assert logged == pytest.approx(expected, rel=1e-5)
