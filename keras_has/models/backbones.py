"""GAP models on ``keras.applications`` backbones, modified for CAMs.

Following clovaai/wsolevaluation (``wsol/{vgg,resnet,inception}.py``, "cam" variants):

* ``vgg16_gap``: VGG16 convolutions without pool5 (1/16 resolution), then the CAM
  paper's ``CAM_conv`` 1024 3x3 group 2 (zhoubolei/CAM ``deploy_vgg16CAM.prototxt``;
  wsolevaluation uses group 1), GAP, dropout 0.5, classifier: 18,100,008 parameters
  with 1000 classes.
* ``resnet50_gap``: ResNet50 with the last stage's stride set to 1 (1/16 resolution,
  14x14 at 224 px); its 2048-channel output is ``cam_features``; GAP, classifier.
* ``inceptionv3_gap``: InceptionV3 up to ``mixed7`` (wsolevaluation's ``Mixed_6e``)
  with the ``mixed3`` reduction block's strides set to 1 and "same" padding
  (wsolevaluation's ``Mixed_6a`` stride 1 pad 1), then dropout 0.5 / conv 1024 3x3 /
  dropout 0.5 / conv 1024 3x3 (= cam_features), GAP, dropout 0.5, classifier.
  (wsolevaluation ends with a 1x1 conv to K classes before GAP, which equals GAP followed
  by a dense layer; Keras' InceptionV3 stem pads differently, so sizes differ slightly.)
* ``mobilenetv2_gap``: MobileNetV2 with block 13's stride set to 1 (1/16 resolution);
  ``out_relu`` (1280 channels) is ``cam_features``; GAP, classifier.

Weights (``weights=``):

* ``None``: random initialisation.
* ``"imagenet"``: the ``include_top=False`` ImageNet weights through
  ``keras.applications``' own ``keras.utils.get_file`` download-and-cache mechanism
  (``$KERAS_HOME/models`` or ``~/.keras/models``), so it works offline once the file is
  cached. The ImageNet classifier is never loaded.
* a path: a weights file for the corresponding ``keras.applications`` model built with
  ``include_top=False``: a Keras 3 ``.weights.h5`` file (``model.save_weights``) or a
  legacy Keras ``.h5`` weights file (the format ``keras.applications`` downloads).

Stride changes do not change weight shapes, so pretrained weights are loaded into the
unmodified ``keras.applications`` model and copied layer by layer into the modified one.

Pretrained weights are loaded into the application at its reference input size (the
weights do not depend on it) and copied into the model at ``input_shape``.

ImageNet weights expect ``keras.applications`` preprocessing (caffe-style BGR mean
subtraction for VGG16/ResNet50, [-1, 1] for InceptionV3/MobileNetV2):
``keras_has.data.preprocessing`` provides it, and training picks it whenever weights are loaded.
"""
import os

import keras

from keras_has.models.building import (
    LayerSeeds,
    check_dtype_policy,
    check_input_shape,
    check_num_classes,
    config_class_names,
    gap_classifier,
)
from keras_has.models.caffe_layers import conv2d
from keras_has.models.fused_batch_norm import FusedBatchNormalization
from keras_has.models.add_relu import fuse_add_relu_pairs
from keras_has.models.pointwise_conv import PointwiseMatmulConv2D

DEFAULT_INPUT_SHAPE = (224, 224, 3)


__all__ = ["DEFAULT_INPUT_SHAPE", "IMAGENET_WEIGHT_FILES", "imagenet_weights_path",
           "build_backbone", "vgg16_gap", "resnet50_gap", "inceptionv3_gap", "mobilenetv2_gap"]


def _set_strides_one(layer_config, same_padding=False):
    layer_config["config"]["strides"] = (1, 1)
    if same_padding:
        layer_config["config"]["padding"] = "same"


def _layers_by_name(config, names, backbone):
    by_name = {layer["config"]["name"]: layer for layer in config["layers"]}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise RuntimeError(
            f"{backbone}: keras.applications model has no layers {missing}; this Keras version "
            "changed the architecture's layer names, update keras_has/models/backbones.py"
        )
    return [by_name[n] for n in names]


def _modify_resnet50(config):
    for layer in _layers_by_name(config, ["conv5_block1_1_conv", "conv5_block1_0_conv"], "resnet50"):
        _set_strides_one(layer)


def _modify_mobilenetv2(config):
    pad, depthwise = _layers_by_name(config, ["block_13_pad", "block_13_depthwise"], "mobilenetv2")
    pad["config"]["padding"] = ((1, 1), (1, 1))
    _set_strides_one(depthwise)


def _modify_inceptionv3(config):
    names = [layer["config"]["name"] for layer in config["layers"]]
    _layers_by_name(config, ["mixed2", "mixed3"], "inceptionv3")
    start, stop = names.index("mixed2"), names.index("mixed3")
    changed = 0
    for layer in config["layers"][start + 1 : stop]:
        strides = layer["config"].get("strides")
        if strides is not None and tuple(strides) == (2, 2):
            _set_strides_one(layer, same_padding=True)
            changed += 1
    if changed != 3:  # two stride-2 convs and the stride-2 max pool of the reduction block
        raise RuntimeError(f"inceptionv3: expected 3 stride-2 layers in the mixed3 block, found {changed}")


# The file names `keras.applications` caches ImageNet `include_top=False` weights under,
# for the reference input size (every conv weight is independent of the input size).
IMAGENET_WEIGHT_FILES = {
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "inceptionv3": "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "mobilenetv2": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
}


# Input shapes the applications load their cached weights at (None: any size).
_REFERENCE_SHAPES = {"mobilenetv2": (224, 224, 3)}


def _keras_home():
    try:
        from keras.src.backend import config as keras_config

        return keras_config.keras_home()
    except (ImportError, AttributeError):  # the private accessor moved: the documented rule
        return os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")


def imagenet_weights_path(kind, size=None):
    """Where ``keras.applications`` caches the ImageNet weights of backbone ``kind``
    (``$KERAS_HOME/models`` or ``~/.keras/models``); for MobileNetV2 ``size`` names the
    size-specific file (96, 128, 160, 192 or 224; default 224)."""
    name = IMAGENET_WEIGHT_FILES[kind]
    if kind == "mobilenetv2" and size is not None:
        name = name.replace("_224_", f"_{int(size)}_")
    return os.path.join(_keras_home(), "models", name)


# MobileNetV2 has ImageNet weights trained at these square input sizes.
_MOBILENETV2_SIZES = (96, 128, 160, 192, 224)


# kind: (keras.applications constructor name, output layer, config modifier, min input size)
_BACKBONES = {
    "vgg16": ("VGG16", "block5_conv3", None, 32),
    "resnet50": ("ResNet50", "conv5_block3_out", _modify_resnet50, 32),
    "inceptionv3": ("InceptionV3", "mixed7", _modify_inceptionv3, 75),
    "mobilenetv2": ("MobileNetV2", "out_relu", _modify_mobilenetv2, 32),
}


def _check_weights(weights, name):
    if weights is None or weights == "imagenet":
        return weights
    if isinstance(weights, (str, os.PathLike)):
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{name}: `weights` must be None, 'imagenet' or the path of an existing weights file "
                f"(.weights.h5 or legacy .h5); no file at {path!r}"
            )
        if not path.endswith((".h5", ".hdf5")):
            raise ValueError(
                f"{name}: `weights` file must be a Keras '.weights.h5' or legacy '.h5' weights file, "
                f"received {path!r}"
            )
        return path
    raise ValueError(f"{name}: `weights` must be None, 'imagenet' or a file path, received {weights!r}")


def _seed_initializers(layer_config, seeds):
    for key, value in layer_config["config"].items():
        if key.endswith("_initializer") and isinstance(value, dict) and "seed" in value.get("config", {}):
            value["config"]["seed"] = seeds.next()


def _set_input_shape(config, input_shape):
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            layer["config"]["batch_shape"] = (None, *input_shape)
            layer["config"].pop("batch_input_shape", None)


def _load_pretrained(kind, application, weights, input_shape):
    """The unmodified ``include_top=False`` application with ``weights`` loaded.

    MobileNetV2 has ImageNet weights per input size: the file for ``input_shape`` is used
    when it is cached (what ``keras.applications`` does), else the cached 224 px file.

    Raises:
        FileNotFoundError: ``"imagenet"`` weights neither cached nor downloadable
            (names the cache file to provide).
        ValueError: a weights file that does not fit the architecture (names the file).
    """
    if weights == "imagenet":
        path = imagenet_weights_path(kind)
        shape = _REFERENCE_SHAPES.get(kind)
        rows = input_shape[0]
        if (kind == "mobilenetv2" and rows in _MOBILENETV2_SIZES and input_shape[1] == rows
                and (os.path.isfile(imagenet_weights_path(kind, rows))
                     or not os.path.isfile(path))):
            path, shape = imagenet_weights_path(kind, rows), (rows, rows, 3)
        try:
            return application(include_top=False, weights="imagenet", input_shape=shape)
        except Exception as error:  # noqa: BLE001 - download failures have many types
            if os.path.isfile(path):
                raise ValueError(
                    f"{kind}: cannot load the cached ImageNet weights {path}: {error}"
                ) from None
            raise FileNotFoundError(
                f"{kind}: weights='imagenet' needs the keras.applications cache file {path} "
                f"(absent) or network access to download it ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}); copy the file there "
                "(for MobileNetV2 the 224 px file serves every input size) or pass a weights "
                "file path"
            ) from None
    base = application(include_top=False, weights=None, input_shape=_REFERENCE_SHAPES.get(kind))
    try:
        base.load_weights(weights)
    except Exception as error:  # noqa: BLE001 - h5py and Keras raise various types
        raise ValueError(
            f"{kind}: the weights file {weights} does not fit keras.applications."
            f"{application.__name__}(include_top=False): {str(error).splitlines()[0]}"
        ) from None
    return base


def _swap_layer_class(config, class_name, replacement):
    """Swaps every ``keras.layers.<class_name>`` of an application config for
    ``replacement`` (a subclass with the same arguments, variables and names)."""
    names = config_class_names(replacement)
    for layer in config["layers"]:
        if layer["class_name"] == class_name and layer.get("module") == "keras.layers":
            layer.update(names)


def build_backbone(
    kind,
    input_shape,
    weights=None,
    dtype_policy=None,
    seed=None,
    fused_batch_norm=True,
    pointwise_matmul=True,
    fused_add_relu=True,
):
    """Builds the modified feature extractor of ``kind`` (see module docstring).

    Args:
        kind: one of "vgg16", "resnet50", "inceptionv3", "mobilenetv2".
        input_shape: ``(H, W, 3)``, H and W may be None.
        weights: None, "imagenet" or a weights file path.
        dtype_policy: None (global policy) or a policy name given to every layer.
        seed: with ``weights=None``, None (Keras' global seeding) or an int that fixes
            every random initialiser; ignored when weights are loaded.
        fused_batch_norm: if True (default), every BatchNormalization layer is a
            ``FusedBatchNormalization`` (same function, variables and weights; faster).
        pointwise_matmul: if True (default), every Conv2D layer is a
            ``PointwiseMatmulConv2D`` (same function, variables and weights; its 1x1
            kernels train with matrix-product gradients, faster under bfloat16).
        fused_add_relu: if True (default), every ``Add`` read only by a ReLU
            ``Activation`` computes that ReLU itself (``AddReLU``; one XLA-compiled
            kernel in training, faster; the activation becomes linear, names kept).

    Returns:
        A functional ``keras.Model`` named ``{kind}_backbone``: ``[B, H, W, 3]`` ->
        feature map ``[B, h, w, C]``.
    """
    if kind not in _BACKBONES:
        raise ValueError(f"unknown backbone {kind!r}; expected one of {sorted(_BACKBONES)}")
    app_name, output_name, modify, _ = _BACKBONES[kind]
    application = getattr(keras.applications, app_name)
    input_shape = tuple(input_shape)
    if weights is None:
        base = application(include_top=False, weights=None, input_shape=input_shape)
    else:
        # Loaded at the application's reference size: keras.applications would otherwise
        # look for a size-specific file (e.g. MobileNetV2's `..._160_no_top.h5`) that is
        # not the cached one. The weights do not depend on the input size.
        base = _load_pretrained(kind, application, weights, input_shape)
    config = base.get_config()
    _set_input_shape(config, input_shape)
    if modify is not None:
        modify(config)
    if fused_batch_norm:
        _swap_layer_class(config, "BatchNormalization", FusedBatchNormalization)
    if pointwise_matmul:
        _swap_layer_class(config, "Conv2D", PointwiseMatmulConv2D)
    if fused_add_relu:
        fuse_add_relu_pairs(config)
    seeds = LayerSeeds(seed)
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            continue
        if dtype_policy is not None:
            layer["config"]["dtype"] = dtype_policy
        if weights is None:
            _seed_initializers(layer, seeds)
    rebuilt = base.__class__.from_config(config)
    backbone = keras.Model(rebuilt.input, rebuilt.get_layer(output_name).output, name=f"{kind}_backbone")
    if weights is not None:
        for layer in backbone.layers:
            if layer.weights:
                layer.set_weights(base.get_layer(layer.name).get_weights())
    return backbone


def _backbone_gap(
    kind,
    num_classes,
    input_shape,
    weights,
    cam_convs,
    cam_groups,
    cam_dropout,
    dropout,
    dtype_policy,
    seed,
    name,
    fused_batch_norm=True,
    pointwise_matmul=True,
    fused_add_relu=True,
):
    check_num_classes(num_classes, name)
    input_shape = check_input_shape(input_shape, DEFAULT_INPUT_SHAPE, name, min_size=_BACKBONES[kind][3])
    weights = _check_weights(weights, name)
    dtype_policy = check_dtype_policy(dtype_policy)
    seeds = LayerSeeds(seed)
    cam_convs = tuple(cam_convs)
    if not all(isinstance(f, int) and f > 0 and f % cam_groups == 0 for f in cam_convs):
        raise ValueError(
            f"{name}: `cam_convs` must be positive ints divisible by `cam_groups` ({cam_groups}), "
            f"received {cam_convs!r}"
        )
    if not 0.0 <= cam_dropout < 1.0:
        raise ValueError(f"{name}: `cam_dropout` must be in [0, 1), received {cam_dropout!r}")

    inputs = keras.Input(shape=input_shape, name="images")
    x = build_backbone(
        kind,
        input_shape,
        weights,
        dtype_policy,
        seeds.next(),
        fused_batch_norm,
        pointwise_matmul,
        fused_add_relu,
    )(inputs)
    for i, filters in enumerate(cam_convs, start=1):
        last = i == len(cam_convs)
        if cam_dropout > 0:
            x = keras.layers.Dropout(
                cam_dropout, name=f"cam_conv{i}_dropout", seed=seeds.next(), dtype=dtype_policy
            )(x)
        x = conv2d(
            filters,
            3,
            padding="same",
            groups=cam_groups,
            kernel_initializer=seeds.kernel(),
            name=f"cam_conv{i}",
            dtype=dtype_policy,
        )(x)
        x = keras.layers.ReLU(name="cam_features" if last else f"cam_conv{i}_relu", dtype=dtype_policy)(x)
    if not cam_convs:
        x = keras.layers.Identity(name="cam_features", dtype=dtype_policy)(x)
    logits = gap_classifier(x, num_classes, dropout, dtype_policy, seeds)
    return keras.Model(inputs, logits, name=name)


_BACKBONE_ARGS_DOC = """
    Args:
        num_classes: number of classes ``K``.
        input_shape: ``(H, W, 3)``; default ``(224, 224, 3)``; H, W may be None.
        weights: None, "imagenet" (Keras cache / download) or a weights file path.
        cam_convs: filters of the 3x3 CAM convs added after the backbone.
        cam_groups: groups of those convs.
        cam_dropout: dropout before each CAM conv.
        dropout: dropout after global average pooling.
        dtype_policy: None (global Keras policy) or a policy name, e.g. "mixed_bfloat16".
        seed: None (Keras' global seeding) or an int fixing every random initialiser
            and dropout layer (backbone initialisers only when ``weights=None``).
        name: model name.
        fused_batch_norm: True (default): the backbone's BatchNormalization layers run
            TensorFlow's fused kernel (``FusedBatchNormalization``: same function,
            variables and weights, faster); False: ``keras.layers.BatchNormalization``.
        pointwise_matmul: True (default): the backbone's Conv2D layers are
            ``PointwiseMatmulConv2D`` (same function, variables and weights; 1x1 kernels
            train with matrix-product gradients, faster under bfloat16); False:
            ``keras.layers.Conv2D``.
        fused_add_relu: True (default): each residual ``Add`` followed only by a ReLU
            computes it (``AddReLU``: one XLA-compiled kernel in training; ResNet50);
            False: Keras' ``Add`` and ``Activation``.

    Returns:
        A built model: ``[B, H, W, 3]`` -> float32 logits ``[B, K]``, with layers
        ``cam_features`` and ``classifier``.
"""


def vgg16_gap(
    num_classes,
    input_shape=None,
    weights=None,
    cam_convs=(1024,),
    cam_groups=2,
    cam_dropout=0.0,
    dropout=0.5,
    dtype_policy=None,
    seed=None,
    name="vgg16_gap",
    fused_batch_norm=True,
    pointwise_matmul=True,
    fused_add_relu=True,
):
    return _backbone_gap("vgg16", **locals())  # locals() == exactly the arguments above


def resnet50_gap(
    num_classes,
    input_shape=None,
    weights=None,
    cam_convs=(),
    cam_groups=1,
    cam_dropout=0.0,
    dropout=0.0,
    dtype_policy=None,
    seed=None,
    name="resnet50_gap",
    fused_batch_norm=True,
    pointwise_matmul=True,
    fused_add_relu=True,
):
    return _backbone_gap("resnet50", **locals())  # locals() == exactly the arguments above


def inceptionv3_gap(
    num_classes,
    input_shape=None,
    weights=None,
    cam_convs=(1024, 1024),
    cam_groups=1,
    cam_dropout=0.5,
    dropout=0.5,
    dtype_policy=None,
    seed=None,
    name="inceptionv3_gap",
    fused_batch_norm=True,
    pointwise_matmul=True,
    fused_add_relu=True,
):
    return _backbone_gap("inceptionv3", **locals())  # locals() == exactly the arguments above


def mobilenetv2_gap(
    num_classes,
    input_shape=None,
    weights=None,
    cam_convs=(),
    cam_groups=1,
    cam_dropout=0.0,
    dropout=0.0,
    dtype_policy=None,
    seed=None,
    name="mobilenetv2_gap",
    fused_batch_norm=True,
    pointwise_matmul=True,
    fused_add_relu=True,
):
    return _backbone_gap("mobilenetv2", **locals())  # locals() == exactly the arguments above


vgg16_gap.__doc__ = "VGG16-GAP (CAM paper head on keras.applications.VGG16, pool5 removed).\n" + _BACKBONE_ARGS_DOC
resnet50_gap.__doc__ = "ResNet50-GAP (last stage stride 1, wsolevaluation).\n" + _BACKBONE_ARGS_DOC
inceptionv3_gap.__doc__ = "InceptionV3-GAP (mixed3 stride 1, two CAM convs, wsolevaluation).\n" + _BACKBONE_ARGS_DOC
mobilenetv2_gap.__doc__ = "MobileNetV2-GAP (block 13 stride 1).\n" + _BACKBONE_ARGS_DOC
