"""Class activation maps (Zhou et al., CVPR 2016) from any registered GAP model.

For a model with a ``cam_features`` layer (feature map ``F`` ``[B, h, w, C]``) and a
dense ``classifier`` (kernel ``W`` ``[C, K]``), the CAM of class ``k`` is
``cam[b, i, j] = sum_c F[b, i, j, c] * W[c, k]``; the classifier bias is excluded (it only
shifts the map by a constant, which min-max normalisation removes). All functions are
graph-safe (usable inside ``tf.function`` and ``tf.data``-free serving signatures) and
return float32 also for models built under a mixed-precision policy.

Methods with extra heads record their own rule in the model (a
`keras_has.methods.layers.MethodHead` last layer: the branches' feature and classifier
layers and how they fuse, e.g. ACoL's per-class maximum of both branches' normalised
CAMs). `CamRule(model)` reads it and is the one CAM path of evaluation, callbacks,
export and serving; models without such a layer get the rule above, unchanged.
"""
import weakref

import keras
import tensorflow as tf

__all__ = ['FEATURES_LAYER', 'CLASSIFIER_LAYER', 'check_model', 'make_cam_model', 'cams_from_features', 'CamRule', 'cam_rule', 'compute_cams_and_logits', 'compute_cams']

from keras_has.models.building import CLASSIFIER_LAYER, FEATURES_LAYER  # noqa: E402


def check_model(model):
    """Raises unless ``model`` is a ``keras.Model`` with one logits output, a
    ``cam_features`` layer and a Dense ``classifier`` (the CAM contract)."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model, received {type(model).__name__}")
    names = {layer.name for layer in model.layers}
    missing = [n for n in (FEATURES_LAYER, CLASSIFIER_LAYER) if n not in names]
    if missing:
        raise ValueError(
            f"model {model.name!r} has no layer(s) named {missing}; CAMs need a '{FEATURES_LAYER}' "
            f"layer (last conv feature map) and a Dense '{CLASSIFIER_LAYER}' layer "
            "(build models with keras_has.models.get_model)"
        )
    classifier = model.get_layer(CLASSIFIER_LAYER)
    if not isinstance(classifier, keras.layers.Dense):
        raise ValueError(
            f"model {model.name!r}: layer '{CLASSIFIER_LAYER}' must be a keras.layers.Dense, "
            f"received {type(classifier).__name__}"
        )
    if len(model.outputs) != 1:
        raise ValueError(f"model {model.name!r} must have a single logits output, it has {len(model.outputs)}")


def make_cam_model(model):
    """See `CamRule`; kept for single-branch callers (the plain CAM rule)."""
    return CamRule(model).cam_model


def _plain_cam_model(model):
    """Derives a model with outputs ``(logits, features)`` from one forward pass.

    (The plain rule's model; `CamRule` builds it for models without a method head.)

    Args:
        model: a ``keras.Model`` with layers ``cam_features`` and ``classifier`` (every
            model of ``keras_has.models``). Weights are shared, not copied.

    Returns:
        A functional ``keras.Model`` named ``{model.name}_cam``: images ``[B, H, W, 3]`` ->
        ``(logits [B, K] float32, features [B, h, w, C] float32)``.
    """
    check_model(model)
    features = model.get_layer(FEATURES_LAYER).output
    logits = model.outputs[0]
    # Activation layers with a float32 policy autocast their (possibly bfloat16) input.
    features = keras.layers.Activation("linear", dtype="float32", name="cam_features_float32")(features)
    if logits.dtype != "float32":
        logits = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(logits)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, [logits, features], name=f"{model.name}_cam")


def cams_from_features(features, kernel, class_ids):
    """CAMs from a feature map and the classifier kernel, one map per example.

    Args:
        features: ``[B, h, w, C]`` feature maps (any float dtype).
        kernel: ``[C, K]`` classifier kernel.
        class_ids: ``[B]`` integer class of each example, in ``[0, K)``.

    Returns:
        float32 ``[B, h, w]`` with ``cam[b] = sum_c features[b, :, :, c] * kernel[c, class_ids[b]]``.
    """
    features = tf.cast(tf.convert_to_tensor(features), tf.float32)
    kernel = tf.cast(tf.convert_to_tensor(kernel), tf.float32)
    class_ids = tf.convert_to_tensor(class_ids)
    if features.shape.rank != 4:
        raise ValueError(f"`features` must have shape [B, h, w, C], received shape {features.shape}")
    if kernel.shape.rank != 2:
        raise ValueError(f"`kernel` must have shape [C, K], received shape {kernel.shape}")
    if class_ids.shape.rank != 1:
        raise ValueError(f"`class_ids` must have shape [B], received shape {class_ids.shape}")
    if not class_ids.dtype.is_integer:
        raise ValueError(f"`class_ids` must be integers, received dtype {class_ids.dtype.name}")
    c_feat, c_kernel = features.shape[-1], kernel.shape[0]
    if c_feat is not None and c_kernel is not None and c_feat != c_kernel:
        raise ValueError(
            f"`features` has {c_feat} channels but `kernel` has {c_kernel} rows; they must match"
        )
    b_feat, b_ids = features.shape[0], class_ids.shape[0]
    if b_feat is not None and b_ids is not None and b_feat != b_ids:
        raise ValueError(f"`class_ids` has {b_ids} entries for a batch of {b_feat} feature maps")
    class_ids = tf.cast(class_ids, tf.int32)
    num_classes = tf.shape(kernel)[1]
    with tf.control_dependencies(
        [
            tf.debugging.assert_equal(
                tf.shape(class_ids)[0], tf.shape(features)[0], message="`class_ids` length != batch size"
            ),
            tf.debugging.assert_non_negative(class_ids, message="`class_ids` must be >= 0"),
            tf.debugging.assert_less(class_ids, num_classes, message="`class_ids` must be < num_classes"),
        ]
    ):
        weights = tf.gather(kernel, class_ids, axis=1)  # [C, B]
    return tf.einsum("bhwc,cb->bhw", features, weights)


class CamRule:
    """The CAM rule of a model, read from the model itself.

    Args:
      model: a ``keras_has.models`` model, or a method's model from
        ``keras_has.methods`` (its ``MethodHead`` names the branches and the fusion).

    Attributes:
      cam_model: images ``[B, H, W, 3]`` -> ``(logits [B, K], features_1, ...)``, all
        float32 (one feature map per branch), weights shared with ``model``.
      kernels: each branch's classifier kernel ``[C_i, K]``.
      fusion: ``"single"`` or ``"max_normalized"``.
    """

    def __init__(self, model):
        from keras_has.methods.layers import find_method_head

        check_model(model)
        head = find_method_head(model)
        self.fusion = "single" if head is None else head.cam_fusion
        branches = ([[FEATURES_LAYER, CLASSIFIER_LAYER]] if head is None
                    else [list(b) for b in head.cam_branches])
        self.method = None if head is None else head.method
        if head is None:
            self.cam_model = _plain_cam_model(model)
        else:
            outputs = [model.outputs[0]]
            for i, (features_name, classifier_name) in enumerate(branches):
                layer = model.get_layer(features_name)
                outputs.append(keras.layers.Activation(
                    "linear", dtype="float32", name=f"cam_branch{i}_float32")(layer.output))
            inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
            self.cam_model = keras.Model(inputs, outputs, name=f"{model.name}_cam")
        self.kernels = []
        for _, classifier_name in branches:
            classifier = model.get_layer(classifier_name)
            if not isinstance(classifier, keras.layers.Dense):
                raise ValueError(f"model {model.name!r}: CAM classifier {classifier_name!r} must "
                                 f"be a keras.layers.Dense, received {type(classifier).__name__}")
            self.kernels.append(classifier.kernel)

    def forward(self, images, training=False):
        """``(logits float32 [B, K], [features float32 [B, h, w, C_i], ...])``."""
        out = self.cam_model(images, training=training)
        return tf.cast(out[0], tf.float32), [tf.cast(f, tf.float32) for f in out[1:]]

    def cams(self, features, class_ids):
        """float32 ``[B, h, w]``: the CAM of ``class_ids[b]`` for every image."""
        maps = [cams_from_features(f, k, class_ids) for f, k in zip(features, self.kernels)]
        if self.fusion == "single":
            return maps[0]
        return _max_normalized(maps)

    def class_cams(self, features):
        """float32 ``[B, h, w, K]``: every class's CAM (classifier bias excluded)."""
        maps = [tf.einsum("bhwc,ck->bhwk", tf.cast(f, tf.float32), tf.cast(k, tf.float32))
                for f, k in zip(features, self.kernels)]
        if self.fusion == "single":
            return maps[0]
        return _max_normalized(maps)


def _max_normalized(maps):
    from keras_has.methods.ops import minmax_normalize

    fused = minmax_normalize(maps[0])
    for other in maps[1:]:
        fused = tf.maximum(fused, minmax_normalize(other))
    return fused


# One cached (rule, tf.function) pair per model, released with the model.
_CAM_FUNCTIONS = weakref.WeakKeyDictionary()


def cam_rule(model) -> CamRule:
    """The model's cached `CamRule`."""
    entry = _CAM_FUNCTIONS.get(model)
    if entry is None:
        rule = CamRule(model)

        @tf.function(reduce_retracing=True)
        def fn(images, class_ids):
            logits, features = rule.forward(images, training=False)
            if class_ids is None:
                class_ids = tf.argmax(logits, axis=-1, output_type=tf.int32)
            return rule.cams(features, class_ids), logits

        entry = _CAM_FUNCTIONS[model] = (rule, fn)
    return entry[0]


def _cam_function(model):
    cam_rule(model)
    return _CAM_FUNCTIONS[model][1]


def compute_cams_and_logits(model, images, class_ids=None):
    """CAMs and logits from a single batched forward pass (inference mode).

    Args:
        model: a model from ``keras_has.models`` (or any model ``make_cam_model`` accepts).
        images: float ``[B, H, W, 3]`` normalised images.
        class_ids: int ``[B]`` class per image; None uses each image's top-1 prediction.

    Returns:
        ``(cams float32 [B, h, w], logits float32 [B, K])``.
    """
    check_model(model)
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4 or images.shape[-1] != 3:
        raise ValueError(f"`images` must have shape [B, H, W, 3], received shape {images.shape}")
    if not images.dtype.is_floating:
        raise ValueError(f"`images` must be normalised floats, received dtype {images.dtype.name}")
    images = tf.cast(images, tf.float32)
    if class_ids is not None:
        class_ids = tf.convert_to_tensor(class_ids)
        if class_ids.shape.rank != 1 or not class_ids.dtype.is_integer:
            raise ValueError(
                f"`class_ids` must be an int vector [B], received shape {class_ids.shape} "
                f"dtype {class_ids.dtype.name}"
            )
        class_ids = tf.cast(class_ids, tf.int32)
    return _cam_function(model)(images, class_ids)


def compute_cams(model, images, class_ids=None):
    """CAMs ``float32 [B, h, w]`` of ``class_ids`` (None: top-1 predictions); see
    ``compute_cams_and_logits``."""
    return compute_cams_and_logits(model, images, class_ids)[0]
