"""The WSOL method zoo (keras_has.methods): each method's math on hand-made tensors, the
registry and config checks, and every method through train / evaluate / export."""

import numpy as np
import pytest
import tensorflow as tf

from keras_has import methods
from keras_has.localize import cams as cam
from keras_has import config as cfg
from keras_has.methods import ops
from keras_has.methods.layers import AcolErase, AttentionDropout

from tests.helpers import make_wsol_folder


# ------------------------------------------------------------------------- registry
def test_registry_lists_the_six_methods_and_rejects_unknown_names():
    assert methods.list_methods() == ["acol", "adl", "cam", "cutmix", "has", "spg"]
    assert methods.get_method("acol").config.acol_threshold == 0.7
    with pytest.raises(ValueError, match=r"method: expected one of .*'grad_cam'"):
        methods.get_method("grad_cam")


def test_method_config_defaults_are_wsolevaluations_and_bad_values_fail():
    c = cfg.MethodConfig()
    assert (c.acol_threshold, c.adl_threshold, c.adl_drop_rate, c.cutmix_beta,
            c.cutmix_prob) == (0.7, 0.9, 0.75, 1.0, 1.0)
    assert methods.get_method("spg", c).thresholds() == ((0.7, 0.01), (0.5, 0.05), (0.7, 0.1))
    with pytest.raises(ValueError, match="method: expected 'auto' or a method name"):
        cfg.MethodConfig(method="")
    for name in ("acol_threshold", "spg_threshold_2l", "adl_threshold", "adl_drop_rate",
                 "cutmix_prob"):
        with pytest.raises(ValueError, match=rf"{name}: expected a number in \[0, 1\]"):
            cfg.MethodConfig(**{name: 1.5})
        with pytest.raises(ValueError, match=name):
            cfg.MethodConfig(**{name: -0.1})
    with pytest.raises(ValueError, match="cutmix_beta: expected a number > 0"):
        cfg.MethodConfig(cutmix_beta=0)


def _train_config(tmp_path, method, model="tiny_gap", hiding=(), **kwargs):
    root = make_wsol_folder(str(tmp_path / "d"), n_train=8, n_test=4)
    model_kwargs = kwargs.pop("model_kwargs", {"widths": (8, 16)} if model == "tiny_gap" else {})
    return cfg.TrainConfig(
        model=model, output_dir=str(tmp_path / "run"),
        data=cfg.DataConfig(source=root, image_size=32, batch_size=4, eval_split="test"),
        hiding=cfg.HidingConfig(grid_sizes=hiding, hide_prob=0.5),
        wsol=cfg.MethodConfig(method=method), epochs=1, steps_per_epoch=1,
        strategy="mirrored", eval_every=1, verbose=0, model_kwargs=model_kwargs, **kwargs)


# ----------------------------------------------------------------------------- ACoL
def test_acol_erase_mask_from_a_hand_made_cam():
    cam_map = tf.constant([[[0.0, 1.0, 2.0], [3.0, 4.0, 10.0]]])  # normalised: x / 10
    np.testing.assert_array_equal(ops.acol_erase_mask(cam_map, 0.7).numpy(),
                                  [[[1, 1, 1], [1, 1, 0]]])
    np.testing.assert_array_equal(ops.acol_erase_mask(cam_map, 0.3).numpy(),
                                  [[[1, 1, 1], [0, 0, 0]]])
    # Shift and scale do not matter (min-max normalisation); a constant map erases all
    # at threshold 0 only.
    np.testing.assert_array_equal(ops.acol_erase_mask(cam_map * 3 - 5, 0.7).numpy(),
                                  [[[1, 1, 1], [1, 1, 0]]])
    np.testing.assert_array_equal(ops.acol_erase_mask(tf.ones([1, 2, 2]), 0.5).numpy(),
                                  np.ones([1, 2, 2]))


def test_acol_erase_layer_uses_the_label_in_training_and_the_top1_class_otherwise():
    features = tf.ones([1, 2, 2, 3])
    class0 = np.array([[9.0, 0.0], [0.0, 0.0]])  # GAP 2.25: the top-1 class
    class1 = np.array([[0.0, 0.0], [0.0, 1.0]])  # GAP 0.25
    maps = tf.constant(np.stack([class0, class1], -1)[None], tf.float32)
    layer = AcolErase(0.7)
    top1 = layer([features, maps]).numpy()[0, ..., 0]
    np.testing.assert_array_equal(top1, [[0, 1], [1, 1]])
    labelled = layer([features, maps], labels=tf.constant([1])).numpy()[0, ..., 0]
    np.testing.assert_array_equal(labelled, [[1, 1], [1, 0]])


# ------------------------------------------------------------------------------ SPG
def test_spg_guidance_mask_at_given_thresholds():
    attention = tf.constant([[[0.9, 0.8, 0.05],
                              [0.5, 0.75, 0.0],
                              [0.2, 0.1, 0.08]]])
    target, valid = ops.spg_guidance_mask(attention, high=0.7, low=0.1, min_fg_pixels=3)
    # Foreground: > 0.7 (3 pixels, enough); background: < 0.1; the rest ignored.
    np.testing.assert_array_equal(target.numpy()[0], [[1, 1, 0], [0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(valid.numpy()[0], [[1, 1, 1], [0, 1, 1], [0, 0, 1]])
    # Too few foreground pixels: fall back to > 0.7 * max = 0.63.
    target, valid = ops.spg_guidance_mask(attention, high=0.85, low=0.01, min_fg_pixels=2)
    np.testing.assert_array_equal(target.numpy()[0], [[1, 1, 0], [0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(valid.numpy()[0], [[1, 1, 0], [0, 1, 1], [0, 0, 0]])
    # The masked BCE averages over valid pixels only: logit 0 gives log 2 everywhere.
    loss = ops.masked_bce_with_logits(tf.zeros([1, 3, 3]), target, valid)
    assert np.isclose(loss.numpy(), np.log(2.0))
    assert ops.spg_min_fg_pixels(224, 224) == 30 and ops.spg_min_fg_pixels(64, 64) == 2


# ------------------------------------------------------------------------------ ADL
def test_adl_importance_map_drop_mask_and_selection_from_a_hand_made_feature_map():
    # Channel means [[1, 3], [5, 9]]: max 9, threshold 0.9 -> drop where mean >= 8.1.
    means = np.array([[1.0, 3.0], [5.0, 9.0]])
    features = tf.constant(np.stack([means - 1, means + 1], -1)[None], tf.float32)
    importance, drop = ops.adl_maps(features, 0.9)
    np.testing.assert_allclose(importance.numpy()[0, ..., 0], 1 / (1 + np.exp(-means)), rtol=1e-6)
    np.testing.assert_array_equal(drop.numpy()[0, ..., 0], [[1, 1], [1, 0]])
    # uniform + drop_rate >= 1: the drop mask; else the importance map.
    dropped = ops.adl_select(features, 0.9, 0.75, tf.constant(0.3)).numpy()
    np.testing.assert_allclose(dropped, features.numpy() * drop.numpy())
    weighted = ops.adl_select(features, 0.9, 0.75, tf.constant(0.2)).numpy()
    np.testing.assert_allclose(weighted, features.numpy() * importance.numpy(), rtol=1e-6)


def test_adl_layer_is_identity_at_inference_and_drops_at_the_given_rate_in_training():
    features = tf.random.stateless_uniform([2, 4, 4, 3], [1, 2])
    layer = AttentionDropout(drop_rate=0.75, threshold=0.9, seed=0)
    np.testing.assert_array_equal(layer(features, training=False).numpy(), features.numpy())
    _, drop = ops.adl_maps(features, 0.9)
    draws = 400
    dropped = sum(np.array_equal(layer(features, training=True).numpy(),
                                 (features * drop).numpy()) for _ in range(draws))
    # Binomial(400, 0.75): mean 300, sd 8.7; 5 sd bounds.
    assert 256 <= dropped <= 344


# --------------------------------------------------------------------------- CutMix
def test_cutmix_box_area_and_clipping():
    # lam 0.75: sides int(10 * 0.5) = 5, half 2, centred at (5, 5): rows/cols 3..6.
    np.testing.assert_array_equal(ops.cutmix_box(10, 10, 0.75, 5, 5).numpy(), [3, 3, 7, 7])
    # At the corner the box is clipped: rows 0..1, cols 7..9.
    np.testing.assert_array_equal(ops.cutmix_box(10, 10, 0.75, 0, 9).numpy(), [0, 7, 2, 10])
    np.testing.assert_array_equal(ops.cutmix_box(10, 10, 1.0, 5, 5).numpy(), [5, 5, 5, 5])


def test_cutmix_batch_pastes_one_box_and_weights_labels_by_area_for_a_fixed_seed():
    images = tf.constant(np.arange(4, dtype=np.float32)[:, None, None, None]
                         * np.ones([4, 16, 16, 1], np.float32))
    labels = tf.constant([0, 1, 2, 3])
    mixed, pasted, weight = ops.cutmix_batch(images, labels, seed=[3, 7])
    again = ops.cutmix_batch(images, labels, seed=[3, 7])
    np.testing.assert_array_equal(mixed.numpy(), again[0].numpy())
    mixed, pasted = mixed.numpy()[..., 0], pasted.numpy()
    for i in range(4):
        changed = mixed[i] != i
        # Every changed pixel holds the pasted image's value (pasted label = its index).
        np.testing.assert_array_equal(mixed[i][changed], pasted[i])
        if pasted[i] != i:
            area = changed.sum()
            assert np.isclose(weight.numpy(), 1 - area / 256.0)
            rows, cols = np.nonzero(changed)  # one axis-aligned box
            assert area == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    # prob 0: nothing mixed, the label's weight is 1.
    same, _, one = ops.cutmix_batch(images, labels, seed=[3, 7], prob=0.0)
    np.testing.assert_array_equal(same.numpy(), images.numpy())
    assert one.numpy() == 1.0


def test_beta_one_one_is_uniform():
    draws = np.array([ops.stateless_beta(1.0, [s, 1]).numpy() for s in range(400)])
    # U(0, 1): mean 0.5 (sd of the mean 0.0144), a quarter below 0.25.
    assert abs(draws.mean() - 0.5) < 0.06
    assert 0.15 < (draws < 0.25).mean() < 0.35


# ---------------------------------------------------- every method, end to end
@pytest.mark.parametrize("method", ["cam", "has", "acol", "spg", "adl", "cutmix"])
def test_every_method_trains_evaluates_exports_and_reloads_its_cam(tmp_path, method):
    import keras

    from keras_has.serve.evaluate import SavedModelCamSource, run_localization
    from keras_has.serve.export import export_saved_model
    from keras_has.train.trainer import train

    config = _train_config(tmp_path, method, hiding=(8,) if method == "has" else (),
                           mixed_precision="mixed_bfloat16")
    result = train(config)
    assert np.isfinite(result.history["loss"]).all()
    assert "val_loc_gt_known_loc" in result.history  # the callback evaluated the method's CAM
    model = result.model
    assert (methods.layers.find_method_head(model) is not None) == (method in ("acol", "spg"))
    images = tf.random.stateless_normal([3, 32, 32, 3], [0, 1])
    labels = tf.constant([0, 1, 1])
    cams, logits = cam.compute_cams_and_logits(model, images, labels)
    assert cams.dtype == tf.float32 and logits.shape == (3, 2)
    # A reloaded .keras model gives its method's CAM.
    reloaded = keras.saving.load_model(result.model_path, compile=False)
    np.testing.assert_allclose(cam.compute_cams(reloaded, images, labels).numpy(), cams.numpy(),
                               rtol=1e-5, atol=1e-5)
    # The export's CAMs are the method's CAMs.
    export_dir = str(tmp_path / "export")
    export_saved_model(model, export_dir, image_size=32, mean=(0, 0, 0), std=(1, 1, 1),
                       cam_signature=True)
    source = SavedModelCamSource(export_dir)
    _, exported = source.forward(images, labels.numpy())
    # The export serves the model with its batch norms folded into the convolutions:
    # exactly the folded model's CAMs, and the model's own to bfloat16 precision.
    from keras_has.models import fold_batch_norms

    folded = cam.compute_cams(fold_batch_norms(model), images, labels).numpy()
    np.testing.assert_allclose(exported, folded, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(exported, cams.numpy(), atol=0.05)
    eval_ds = __import__("keras_has.data", fromlist=["x"]).make_eval_dataset(
        config.data.source, 32, 4, split="test", preprocessing=result.preprocessing)
    metrics = run_localization(model, eval_ds, verbose=0).metrics
    assert metrics["num_images"] == 4


def test_acol_cam_is_the_max_of_both_branches_normalised_cams():
    from keras_has import models

    base = models.get_model("tiny_gap", 3, input_shape=(16, 16, 3), widths=(4, 8), seed=0)
    model = methods.get_method("acol").build(base, seed=0)
    images = tf.random.stateless_normal([2, 16, 16, 3], [5, 6])
    labels = tf.constant([2, 0])
    import keras

    probe = keras.Model(model.inputs, [model.get_layer("acol_a_features").output,
                                       model.get_layer("acol_b_features").output])
    fa, fb = [f.numpy() for f in probe(images, training=False)]
    wa = model.get_layer("classifier").kernel.numpy()
    wb = model.get_layer("classifier_b").kernel.numpy()
    expected = []
    for b, k in enumerate(labels.numpy()):
        maps = [f[b] @ w[:, k] for f, w in ((fa, wa), (fb, wb))]
        maps = [(m - m.min()) / (m.max() - m.min()) for m in maps]
        expected.append(np.maximum(*maps))
    np.testing.assert_allclose(cam.compute_cams(model, images, labels).numpy(), expected,
                               rtol=1e-5, atol=1e-6)


def test_adl_inserts_layers_in_a_keras_applications_backbone_and_copies_weights():
    from keras_has import models

    base = models.get_model("vgg16_gap", 2, input_shape=(32, 32, 3), cam_convs=(8,),
                            cam_groups=1, seed=0)
    model = methods.get_method("adl").build(base, seed=0, model_name="vgg16_gap")
    inner = model.get_layer("vgg16_backbone")
    names = [layer.name for layer in inner.layers]
    for target in ("block3_pool", "block4_conv3", "block5_conv3"):
        assert names[names.index(target) + 1] == f"{target}_adl"
    images = tf.random.stateless_normal([2, 32, 32, 3], [1, 1])
    # Identity at inference: the same logits as the model it was built from.
    np.testing.assert_allclose(model(images, training=False).numpy(),
                               base(images, training=False).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="adl_layers: model .* has no layer 'nope'"):
        methods.get_method("adl", cfg.MethodConfig(adl_layers=("nope",))).build(
            base, model_name="vgg16_gap")
