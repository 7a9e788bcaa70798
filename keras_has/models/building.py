"""What every GAP model builder shares: argument checks, the GAP + Dense classifier head
and per-layer initialisation seeds."""
import keras

# The layer names of the CAM contract: the last conv feature map and the Dense classifier
# over its global average (every model of keras_has.models has both).
FEATURES_LAYER = "cam_features"
CLASSIFIER_LAYER = "classifier"


__all__ = ["FEATURES_LAYER", "CLASSIFIER_LAYER", "check_dtype_policy", "check_input_shape",
           "check_num_classes", "gap_classifier", "LayerSeeds", "config_class_names",
           "walk_tensor_references"]


def check_dtype_policy(dtype_policy):
    """Returns ``dtype_policy`` (None or a Keras policy name) after checking it exists."""
    if dtype_policy is None:
        return None
    try:
        keras.dtype_policies.get(dtype_policy)
    except Exception as err:  # Keras raises ValueError/TypeError depending on the input
        raise ValueError(
            "`dtype_policy` must be None (use the global Keras policy) or a Keras dtype policy "
            f"name such as 'float32' or 'mixed_bfloat16', received {dtype_policy!r}"
        ) from err
    return dtype_policy if isinstance(dtype_policy, str) else keras.dtype_policies.get(dtype_policy).name


def check_input_shape(input_shape, default, name, min_size=1):
    """Returns a 3-tuple ``(H, W, 3)`` (H, W may be None) or raises a clear ValueError."""
    if input_shape is None:
        return tuple(default)
    shape = tuple(input_shape)
    ok = len(shape) == 3 and shape[2] == 3
    ok = ok and all(
        d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= min_size) for d in shape[:2]
    )
    if not ok:
        raise ValueError(
            f"{name}: `input_shape` must be (height, width, 3) with height and width None or ints "
            f">= {min_size}, received {input_shape!r}"
        )
    return shape


def check_num_classes(num_classes, name):
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{name}: `num_classes` must be a positive int, received {num_classes!r}")
    return num_classes


def gap_classifier(features, num_classes, dropout, dtype_policy, seeds=None):
    """Global average pooling, optional dropout, and the float32 ``classifier`` Dense."""
    seeds = seeds or LayerSeeds(None)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1), received {dropout!r}")
    x = keras.layers.GlobalAveragePooling2D(name="gap", dtype=dtype_policy)(features)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="gap_dropout", seed=seeds.next(), dtype=dtype_policy)(x)
    # dtype="float32": logits stay float32 under a mixed-precision policy.
    return keras.layers.Dense(
        num_classes, kernel_initializer=seeds.kernel(), name="classifier", dtype="float32"
    )(x)


class LayerSeeds:
    """Distinct deterministic seeds for a model's initialisers and dropout layers.

    ``LayerSeeds(None)`` returns None everywhere (Keras' own, globally seeded draws);
    ``LayerSeeds(s)`` returns ``s, s + 1, ...`` so one seed fixes the whole model.
    """

    def __init__(self, seed):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"`seed` must be None or an int >= 0, received {seed!r}")
        self._seed = seed
        self._count = 0

    def next(self):
        if self._seed is None:
            return None
        self._count += 1
        return self._seed + self._count - 1

    def kernel(self, name="glorot_uniform"):
        """A kernel initializer (``name`` is a keras.initializers name) with the next seed."""
        if self._seed is None:
            return name
        config = keras.initializers.serialize(keras.initializers.get(name))
        config["config"]["seed"] = self.next()
        return keras.initializers.deserialize(config)


def config_class_names(cls):
    """The ``module`` / ``class_name`` / ``registered_name`` entries that make a layer
    config entry build ``cls`` (a registered Keras serializable)."""
    return {
        "module": cls.__module__,
        "class_name": cls.__name__,
        "registered_name": keras.saving.get_registered_name(cls),
    }


def walk_tensor_references(obj, fn):
    """Calls ``fn(d)`` on every dict ``d`` with a ``keras_history`` inside ``obj`` (a
    functional config's ``inbound_nodes``: the references to other layers' outputs)."""
    if isinstance(obj, dict):
        if "keras_history" in obj:
            fn(obj)
        for value in obj.values():
            walk_tensor_references(value, fn)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            walk_tensor_references(value, fn)
