"""The evaluation pass: a saved model evaluated with its batch norms folded (the evaluate
command's default), and the forward pass running one batch ahead of the scoring."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_has.localize import evaluation
from keras_has.models import get_model
from keras_has.models.folding import FoldedBatchNorm
from keras_has.serve import evaluate as serve_evaluate
from tests.serve.test_evaluate_savedmodel import NUM_CLASSES, SIZE, eval_batches


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny GAP model whose batch norms do something (random statistics), saved."""
    model = get_model("tiny_gap", num_classes=NUM_CLASSES, input_shape=(SIZE, SIZE, 3),
                      widths=(8, 16), seed=1)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.5, n),
                               rng.normal(0, 0.5, n), rng.uniform(0.2, 3, n)])
    path = tmp_path_factory.mktemp("folded") / "model.keras"
    model.save(path)
    return model, str(path)


def test_load_for_evaluation_folds_and_keeps_the_function(saved):
    model, path = saved
    folded, settings = serve_evaluate.load_for_evaluation(path)  # folds by default
    plain, _ = serve_evaluate.load_for_evaluation(path, fold_batch_norm=False)
    assert settings["image_size"] == SIZE
    kinds = [type(layer) for layer in folded.layers]
    assert FoldedBatchNorm in kinds and keras.layers.BatchNormalization not in kinds
    assert [type(layer) for layer in plain.layers] == [type(layer) for layer in model.layers]
    assert [layer.name for layer in folded.layers] == [layer.name for layer in model.layers]
    x = np.random.default_rng(1).normal(size=(4, SIZE, SIZE, 3)).astype(np.float32)
    expected = model.predict_on_batch(x)
    assert np.abs(expected).max() > 0.1  # not a degenerate comparison
    np.testing.assert_allclose(folded.predict_on_batch(x), expected, atol=1e-4)


def test_folded_evaluation_gives_the_same_metrics(saved):
    _, path = saved
    folded, _ = serve_evaluate.load_for_evaluation(path, fold_batch_norm=True)
    plain, _ = serve_evaluate.load_for_evaluation(path, fold_batch_norm=False)
    kwargs = dict(cam_threshold=0.3, cam_curve_interval=0.05, verbose=0, num_examples=6)
    a = evaluation.run_localization(plain, eval_batches(batches=3), **kwargs)
    b = evaluation.run_localization(folded, eval_batches(batches=3), **kwargs)
    assert a.metrics == b.metrics
    np.testing.assert_allclose(b.examples["cam"], a.examples["cam"], atol=1e-4)


def test_a_subclassed_model_is_evaluated_as_it_is():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3)
            self.bn = keras.layers.BatchNormalization()

        def call(self, x):
            return self.bn(self.conv(x))

    net = Net()
    net(np.zeros((1, 8, 8, 3), np.float32))
    assert serve_evaluate._folded(net) is net


class _Source:
    """A CAM source that records the order of its calls and fails on request."""

    def __init__(self, fail_at=None):
        self.calls, self.fail_at = [], fail_at

    def forward(self, images, labels):
        self.calls.append(float(images[0, 0, 0, 0]))
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise RuntimeError("forward failed on purpose")
        cams = tf.reduce_mean(images, axis=-1)[:, ::4, ::4]
        return tf.one_hot(labels, NUM_CLASSES), cams


def test_forward_ahead_keeps_the_order_and_raises_errors():
    batches = eval_batches(batches=4)
    source = _Source()
    ahead = list(evaluation._forward_ahead(batches, source.forward))
    assert source.calls == [float(b["image"][0, 0, 0, 0]) for b in batches]
    for (batch, images, labels, logits, cams), expected in zip(ahead, batches):
        assert batch is expected
        np.testing.assert_array_equal(images, expected["image"])
        np.testing.assert_array_equal(labels, expected["label"])
        assert cams.shape == (3, SIZE // 4, SIZE // 4) and logits.shape == (3, NUM_CLASSES)
    # The same metrics as scoring each batch after its own forward pass.
    result = evaluation.run_localization(_Source(), batches, verbose=0, cam_curve_interval=0.1)
    one_by_one = evaluation.LocalizationEvaluator(cam_curve_interval=0.1)
    from keras_has.localize import boxes as loc

    for b in batches:
        logits, cams = _Source().forward(tf.constant(b["image"]), tf.constant(b["label"]))
        one_by_one.accumulate(loc.normalize_cams(loc.resize_cams(np.asarray(cams), (SIZE, SIZE))),
                              b["boxes"], b["num_boxes"], b["label"], logits=np.asarray(logits))
    assert result.metrics == one_by_one.compute()
    # Stopping early reads no more than one batch ahead; an error comes out of the loop.
    counted = _Source()
    assert len(list(evaluation._forward_ahead(batches, counted.forward, max_batches=2))) == 2
    assert len(counted.calls) == 2
    with pytest.raises(RuntimeError, match="on purpose"):
        evaluation.run_localization(_Source(fail_at=3), batches, verbose=0)


class _PositiveSource:
    """CAMs that are positive everywhere: 1 on a 8 x 8 block at the top left, 0.5 around."""

    def forward(self, images, labels):
        cams = np.full((len(labels), SIZE, SIZE), 0.5, np.float32)
        cams[:, :8, :8] = 1.0
        return tf.one_hot(labels, NUM_CLASSES), tf.constant(cams)


def test_the_pass_scores_the_normalisation_it_was_given():
    """`max` keeps a positive background at 0.5 (above the 0.2 threshold: the box is
    the whole image); min-max takes it to 0 (the box is the block). The evaluator
    scores the maps as normalised, not min-max'ed again."""
    boxes = np.array([[[0, 0, SIZE - 1, SIZE - 1]], [[0, 0, 7, 7]]], np.float32)
    batch = {"image": np.zeros((2, SIZE, SIZE, 3), np.float32), "label": np.zeros(2, np.int32),
             "boxes": boxes, "num_boxes": np.ones(2, np.int32)}
    by_max = evaluation.run_localization(_PositiveSource(), [batch], verbose=0,
                                         cam_normalization="max", cam_threshold=0.2)
    by_minmax = evaluation.run_localization(_PositiveSource(), [batch], verbose=0,
                                            cam_normalization="minmax", cam_threshold=0.2)
    # Image 0's GT is the whole image, image 1's the block.
    np.testing.assert_allclose(by_max.ious, [1.0, 64 / SIZE ** 2])
    np.testing.assert_allclose(by_minmax.ious, [64 / SIZE ** 2, 1.0])
