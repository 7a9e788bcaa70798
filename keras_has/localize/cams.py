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

__all__ = ['FEATURES_LAYER', 'CLASSIFIER_LAYER', 'METHODS', 'GRADIENT_METHODS', 'DEFAULT_BATCH_SIZE',
           'check_model', 'check_method', 'check_batch_size', 'make_cam_model', 'cams_from_features',
           'CamRule', 'cam_rule', 'CamPlan', 'plan_cams', 'compute_cams_and_logits', 'compute_cams']

from keras_has.localize import cam_methods, graph  # noqa: E402
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


# --------------------------------------------------------------- any Keras classifier

METHODS = ("cam", "gradcam", "gradcam_plus_plus", "xgradcam", "layercam", "scorecam",
           "eigencam", "ablationcam")
GRADIENT_METHODS = {"gradcam": cam_methods.gradcam,
                    "gradcam_plus_plus": cam_methods.gradcam_plus_plus,
                    "xgradcam": cam_methods.xgradcam,
                    "layercam": cam_methods.layercam}
# Masked (Score-CAM) or ablated (Ablation-CAM) images per forward pass.
DEFAULT_BATCH_SIZE = 32
_PASS_THROUGH = (keras.layers.Dropout, keras.layers.SpatialDropout2D, keras.layers.GaussianDropout,
                 keras.layers.GaussianNoise, keras.layers.AlphaDropout, keras.layers.Flatten,
                 keras.layers.Identity)


def check_method(method):
    """Raises ValueError unless ``method`` is one of `METHODS`."""
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, received {method!r}")


def check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, received {batch_size!r}")


def _has_cam_contract(model) -> bool:
    try:
        check_model(model)
    except ValueError:
        return False
    return True


def _gap_dense_classifier(head):
    """The Dense of a ``GlobalAveragePooling2D -> [Dropout | Flatten | Identity]* -> Dense
    [-> softmax / sigmoid]`` head, else None."""
    layers = [ref.layer for ref in head.layers]
    if head.logits[0] == "input_of" and layers:
        layers = layers[:-1]
    if len(layers) < 2 or not isinstance(layers[-1], keras.layers.Dense):
        return None
    first = layers[0]
    if not isinstance(first, keras.layers.GlobalAveragePooling2D) or first.keepdims \
            or first.data_format != "channels_last":
        return None
    if not all(isinstance(layer, _PASS_THROUGH) or (
            isinstance(layer, keras.layers.Activation)
            and getattr(layer.activation, "__name__", "") == "linear") for layer in layers[1:-1]):
        return None
    return layers[-1]


class CamPlan:
    """How ``method`` is computed on ``model``, resolved and checked once.

    Args:
      model: any Keras classifier with one image input (see `compute_cams`).
      method: one of `METHODS`.
      layer: None (the feature map feeding the classification head; ``cam_features`` for
        keras-has models), a layer name or a path ``"submodel/layer"``.
      output: None (single-output models), or the index / name of the class-score output.

    Attributes:
      kind: ``"rule"`` (the keras-has `CamRule`: ``method="cam"`` on a keras-has model
        at its ``cam_features``), ``"cam"``, ``"gradient"``, ``"scorecam"``,
        ``"ablationcam"`` or ``"eigencam"``.
      layer: the `graph.LayerRef` of the feature map (None for ``"rule"``).
      num_classes: the class-score width K.
      probe: the `graph.FeatureProbe` (None for ``"rule"``).
      output_activation: ``"softmax"`` / ``"sigmoid"`` when the model's output squashes
        its logits, else None (the output is the logits).

    Raises:
      ValueError: (one line) an unknown method, layer or output; a layer without spatial
        dimensions; ``cam`` on a head that is not global average pooling + Dense.
    """

    def __init__(self, model, method="cam", layer=None, output=None):
        if not isinstance(model, keras.Model):
            raise TypeError(f"model: expected a keras.Model, received {type(model).__name__}")
        check_method(method)
        if len(model.inputs) != 1:
            raise ValueError(f"model {model.name!r} has {len(model.inputs)} inputs; CAMs need "
                             "a classifier with one image input")
        self.model, self.method = model, method
        self.kernel = None
        self.probe = None
        self.layer = None
        self.output_activation = None
        index = graph.output_index(model, output)
        contract = _has_cam_contract(model)
        if method == "cam" and contract and layer in (None, FEATURES_LAYER) and index == 0:
            self.kind = "rule"
            self.num_classes = model.get_layer(CLASSIFIER_LAYER).units
            return
        head = graph.find_head(model, index)
        if head.num_classes is None:
            raise ValueError(f"output: model {model.name!r}'s output {index} has shape "
                             f"{tuple(model.outputs[index].shape)}; expected class scores [B, K]")
        self.num_classes = head.num_classes
        self.output_activation = head.output_activation
        if layer is None and contract:
            layer = FEATURES_LAYER
        if layer is None:
            if head.features is None:
                candidates = graph.feature_layers(model)[-5:]
                hint = (f"pass layer=, e.g. one of {candidates}" if candidates else
                        "it has no layer with a [B, h, w, C] output to take a map from")
                raise ValueError(
                    f"layer: no [B, h, w, C] feature map found before the output of model "
                    f"{model.name!r} ({head.problem}; head: {head.describe()}); {hint}")
            self.layer = head.features
        else:
            self.layer = graph.resolve_layer(model, layer)
        if method == "cam":
            self.kind = "cam"
            classifier = _gap_dense_classifier(head) if head.features is not None else None
            if classifier is None:
                raise ValueError(
                    f"method: 'cam' needs global average pooling + Dense after the feature map; "
                    f"model {model.name!r}'s head is {head.describe()}"
                    f"{' (' + head.problem + ')' if head.problem else ''}; use a gradient method "
                    "such as method='gradcam'")
            if head.features.path != self.layer.path:
                raise ValueError(
                    f"layer: method 'cam' reads the map that feeds the GAP + Dense head "
                    f"({head.features.path!r}), not {self.layer.path!r}; use a gradient method "
                    "such as method='gradcam' for other layers")
            self.kernel = classifier.kernel
        elif method in GRADIENT_METHODS:
            self.kind = "gradient"
        else:
            self.kind = method
        self.probe = graph.FeatureProbe(model, self.layer, head, index)

    @property
    def layer_path(self):
        return FEATURES_LAYER if self.layer is None else self.layer.path

    def probabilities(self, logits):
        """The model's own class probabilities from the logits the CAM functions return:
        the sigmoid of a sigmoid output, else the softmax (a softmax output's, or the
        softmax of a logits output)."""
        if self.output_activation == "sigmoid":
            return tf.sigmoid(logits)
        return tf.nn.softmax(logits, axis=-1)

    def function(self, batch_size=DEFAULT_BATCH_SIZE):
        """The batched ``tf.function`` ``(images, class_ids or None) -> (cams, logits)``."""
        if self.kind == "rule":
            return _cam_function(self.model)
        builder = {"cam": _cam_fn, "gradient": _gradient_fn, "eigencam": _eigencam_fn,
                   "scorecam": _channel_loop_fn, "ablationcam": _channel_loop_fn}[self.kind]
        return builder(self, batch_size)


def _top1(logits, class_ids):
    if class_ids is None:
        return tf.argmax(logits, axis=-1, output_type=tf.int32)
    return class_ids


def _pick(logits, class_ids):
    return tf.gather(logits, class_ids, axis=1, batch_dims=1)


def _cam_fn(plan, _):
    probe, kernel = plan.probe, plan.kernel

    @tf.function(reduce_retracing=True)
    def fn(images, class_ids):
        features, logits = probe(images)
        logits = tf.cast(logits, tf.float32)
        return cams_from_features(features, kernel, _top1(logits, class_ids)), logits

    return fn


def _gradient_fn(plan, _):
    probe, method_fn = plan.probe, GRADIENT_METHODS[plan.method]

    @tf.function(reduce_retracing=True)
    def fn(images, class_ids):
        # Only the feature map is watched: the backward pass runs through the head alone.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            features, logits = probe(images, tape=tape)
            logits = tf.cast(logits, tf.float32)
            class_ids = _top1(logits, class_ids)
            score = tf.reduce_sum(_pick(logits, class_ids))
        grads = tape.gradient(score, features)
        return method_fn(features, grads), logits

    return fn


def _eigencam_fn(plan, _):
    probe = plan.probe

    @tf.function(reduce_retracing=True)
    def fn(images, class_ids):
        features, logits = probe(images)
        return cam_methods.eigencam(features), tf.cast(logits, tf.float32)

    return fn


def _channel_loop_fn(plan, batch_size):
    """Score-CAM / Ablation-CAM: one extra forward pass per (image, channel), ``batch_size``
    of them at a time in a ``tf.while_loop``."""
    probe, scorecam = plan.probe, plan.kind == "scorecam"

    @tf.function(reduce_retracing=True)
    def fn(images, class_ids):
        features, logits = probe(images)
        logits = tf.cast(logits, tf.float32)
        class_ids = _top1(logits, class_ids)
        num_channels = features.shape[-1]
        total = tf.shape(features)[0] * num_channels
        num_chunks = (total + batch_size - 1) // batch_size
        if scorecam:
            height, width = images.shape[1], images.shape[2]
            rows = tf.constant(cam_methods.upsample_matrix(height, features.shape[1]))
            cols = tf.constant(cam_methods.upsample_matrix(width, features.shape[2]))
            channel_maps = tf.transpose(tf.cast(features, tf.float32), [0, 3, 1, 2])
        scores = tf.TensorArray(tf.float32, size=num_chunks, infer_shape=False, element_shape=[None])
        for i in tf.range(num_chunks):
            image_ids, channel_ids = cam_methods.channel_pairs(
                i * batch_size, tf.minimum((i + 1) * batch_size, total), num_channels)
            x = tf.gather(images, image_ids)
            if scorecam:
                masks = cam_methods.normalized_masks(
                    tf.gather_nd(channel_maps, tf.stack([image_ids, channel_ids], axis=1)), rows, cols)
                _, out = probe(x * tf.cast(masks[..., None], x.dtype))
            else:
                keep = 1.0 - tf.one_hot(channel_ids, num_channels)[:, None, None, :]
                _, out = probe(x, override=lambda f, keep=keep: f * tf.cast(keep, f.dtype))
            scores = scores.write(i, _pick(tf.cast(out, tf.float32), tf.gather(class_ids, image_ids)))
        scores = tf.reshape(scores.concat(), [-1, num_channels])
        if scorecam:
            weights = cam_methods.score_weights(scores)
        else:
            weights = cam_methods.ablation_weights(_pick(logits, class_ids), scores)
        return tf.nn.relu(cam_methods.weighted_sum(features, weights)), logits

    return fn


# One cached (plan, {batch_size: tf.function}) per model and arguments.
_PLANS = weakref.WeakKeyDictionary()


def plan_cams(model, method="cam", layer=None, output=None) -> CamPlan:
    """The model's cached `CamPlan` for these arguments (see `CamPlan`)."""
    check_method(method)
    if layer is not None and not isinstance(layer, str):
        raise ValueError(f"layer: expected None, a layer name or a path 'submodel/layer', "
                         f"received {layer!r}")
    if output is not None and (isinstance(output, bool) or not isinstance(output, (int, str))):
        raise ValueError(f"output: expected None, an output index or an output name, received {output!r}")
    if not isinstance(model, keras.Model):
        raise TypeError(f"model: expected a keras.Model, received {type(model).__name__}")
    plans = _PLANS.setdefault(model, {})
    key = (method, layer, output)
    if key not in plans:
        plans[key] = (CamPlan(model, method, layer, output), {})
    return plans[key][0]


def _function(model, plan, method, layer, output, batch_size):
    functions = _PLANS[model][(method, layer, output)][1]
    key = batch_size if plan.kind in ("scorecam", "ablationcam") else None
    if key not in functions:
        functions[key] = plan.function(batch_size)
    return functions[key]


def _is_symbolic(x):
    return not hasattr(x, "numpy")


def _check_images(model, images, plan):
    images = tf.convert_to_tensor(images)
    channels = model.inputs[0].shape[-1]
    if images.shape.rank != 4 or (channels is not None and images.shape[-1] != channels):
        raise ValueError(f"`images` must have shape [B, H, W, {channels if channels else 'C'}], "
                         f"received shape {images.shape}")
    if not images.dtype.is_floating:
        raise ValueError(f"`images` must be normalised floats, received dtype {images.dtype.name}")
    expected = tuple(model.inputs[0].shape[1:3])
    received = tuple(images.shape[1:3])
    for want, got in zip(expected, received):
        if want is not None and got is not None and want != got:
            raise ValueError(f"images: model {model.name!r} takes {expected[0]}x{expected[1]} "
                             f"images, received {received[0]}x{received[1]}")
    if plan.kind == "scorecam" and None in received:
        raise ValueError("images: method 'scorecam' needs images of a known height and width, "
                         f"received shape {images.shape}")
    return tf.cast(images, tf.float32)


def _check_class_ids(class_ids, images, num_classes):
    if class_ids is None:
        return None
    class_ids = tf.convert_to_tensor(class_ids)
    if class_ids.shape.rank != 1 or not class_ids.dtype.is_integer:
        raise ValueError(
            f"`class_ids` must be an int vector [B], received shape {class_ids.shape} "
            f"dtype {class_ids.dtype.name}"
        )
    batch = images.shape[0]
    if batch is not None and class_ids.shape[0] is not None and class_ids.shape[0] != batch:
        raise ValueError(f"`class_ids` has {class_ids.shape[0]} entries for a batch of {batch} images")
    if not _is_symbolic(class_ids):
        values = class_ids.numpy()
        bad = values[(values < 0) | (values >= num_classes)]
        if bad.size:
            raise ValueError(f"`class_ids` must be in [0, {num_classes}) (the model's classes), "
                             f"received {int(bad[0])}")
    return tf.cast(class_ids, tf.int32)


def compute_cams_and_logits(model, images, class_ids=None, method="cam", layer=None,
                            batch_size=DEFAULT_BATCH_SIZE, output=None):
    """CAMs and logits of a batch, from one batched graph (inference mode).

    Args:
        model: any Keras classifier with one image input: a keras-has model (its CAM rule,
            `CamRule`, for ``method="cam"``), or e.g. a ``keras.applications`` model, a
            functional model around a nested backbone, a Sequential model.
        images: float ``[B, H, W, C]`` images as the model takes them (normalised).
        class_ids: int ``[B]`` class per image; None uses each image's top-1 prediction.
        method: one of `METHODS` (see `compute_cams`).
        layer: None (the feature map feeding the head), a layer name or ``"sub/layer"``.
        batch_size: masked / ablated images per forward pass (``scorecam``, ``ablationcam``).
        output: the class-score output of a multi-output model (index or name).

    Returns:
        ``(cams float32 [B, h, w], logits float32 [B, K])``; the logits are the class
        scores before a final softmax / sigmoid.
    """
    check_batch_size(batch_size)
    plan = plan_cams(model, method, layer, output)
    images = _check_images(model, images, plan)
    class_ids = _check_class_ids(class_ids, images, plan.num_classes)
    return _function(model, plan, method, layer, output, batch_size)(images, class_ids)


def compute_cams(model, images, method="cam", layer=None, class_ids=None,
                 batch_size=DEFAULT_BATCH_SIZE, output=None):
    """Class activation maps ``float32 [B, h, w]`` at ``layer``'s resolution, before
    normalisation (`keras_has.localize.boxes.normalize_cams` comes next).

    Args:
        model: any Keras classifier with one image input (see `compute_cams_and_logits`).
        images: float ``[B, H, W, C]`` images as the model takes them.
        method: ``"cam"`` (Zhou et al.: ``sum_c A_c W[c, k]``, the raw map, bias excluded;
            needs global average pooling + Dense after the layer), ``"gradcam"``,
            ``"gradcam_plus_plus"``, ``"xgradcam"``, ``"layercam"`` (gradients of the
            class score before the softmax), ``"scorecam"``, ``"ablationcam"`` (one
            forward pass per channel, ``batch_size`` at a time) or ``"eigencam"``
            (class-agnostic); formulas in `keras_has.localize.cam_methods`. All but
            ``cam`` end with a ReLU, as published.
        layer: None: the last 4-D feature map before the class scores (through nested
            Functional / Sequential models; ``cam_features`` on keras-has models), else a
            layer name or a path ``"submodel/layer"``.
        class_ids: int ``[B]``; None: each image's top-1 class. (The former signature
            ``compute_cams(model, images, class_ids)`` still works: a non-string third
            argument is taken as ``class_ids``.)
        batch_size: masked / ablated images per forward pass (``scorecam``, ``ablationcam``).
        output: which output holds the class scores, for a multi-output model.

    Raises:
        ValueError: (one line, before any work) an unknown method or layer, a layer
            without spatial dimensions, a multi-output model without ``output``, a class
            id out of range, images of the wrong size for a fixed-input model.
    """
    if not isinstance(method, str):
        if class_ids is not None:
            raise ValueError("compute_cams: class_ids given twice (third argument and class_ids=)")
        method, class_ids = "cam", method
    return compute_cams_and_logits(model, images, class_ids, method=method, layer=layer,
                                   batch_size=batch_size, output=output)[0]
