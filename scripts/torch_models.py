"""The GAP models of ``keras_has.models`` written in plain ``torch.nn``, for speed comparisons.

Benchmark-only (``scripts/benchmark_models.py --torch``); the library never imports it and
PyTorch is an optional dependency (``pip install -e .[bench]``). Each builder mirrors the
Keras architecture layer for layer (same convolutions, groups, biases, strides, pooling,
normalisation and head), so the number of trainable parameters and of batch-norm moving
statistics equals the Keras model's (``parameter_counts``; the benchmark asserts it).

Differences that do not change the amount of work:

* MobileNetV2's stride-2 convolutions pad 1 on every side (Keras pads 0 before / 1 after
  for even sizes);
* InceptionV3's batch norms have no scale (Keras ``scale=False``): here ``BatchNorm2d``
  keeps its weight fixed at 1 (``requires_grad=False``, not counted) so PyTorch still
  runs its fused kernel.

Every model takes ``[B, 3, H, W]`` float images and returns ``[B, num_classes]`` logits.
"""
import torch
from torch import nn

# name: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj), as keras_has.models.googlenet_gap.
_GOOGLENET_BLOCKS = (
    (64, 96, 128, 16, 32, 32),
    (128, 128, 192, 32, 96, 64),
    None,
    (192, 96, 208, 16, 48, 64),
    (160, 112, 224, 24, 64, 64),
    (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64),
    (256, 160, 320, 32, 128, 128),
)


class _GapHead(nn.Module):
    """Global average pooling, optional dropout, linear classifier."""

    def __init__(self, channels, num_classes, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.classifier(self.dropout(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)))


def _conv_relu(cin, cout, kernel, stride=1, padding=0, groups=1):
    return [nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups), nn.ReLU(inplace=True)]


def alexnet_gap(num_classes):
    """AlexNet-GAP of the CAM paper (groups 2, LRN, Caffe ceil-mode pools)."""
    layers = (
        _conv_relu(3, 96, 11, 4)
        + [nn.MaxPool2d(3, 2, ceil_mode=True), nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)]
        + _conv_relu(96, 256, 5, padding=2, groups=2)
        + [nn.MaxPool2d(3, 2, ceil_mode=True), nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)]
        + _conv_relu(256, 384, 3, padding=1)
        + _conv_relu(384, 384, 3, padding=1, groups=2)
        + _conv_relu(384, 384, 3, padding=1, groups=2)
        + [nn.MaxPool2d(3, 1, ceil_mode=True)]
        + _conv_relu(384, 512, 3, padding=1, groups=2)
        + _conv_relu(512, 512, 3, padding=1, groups=2)
    )
    return nn.Sequential(*layers, _GapHead(512, num_classes, 0.5))


class _GoogLeNetInception(nn.Module):
    def __init__(self, cin, widths):
        super().__init__()
        n1, r3, n3, r5, n5, proj = widths
        self.b1 = nn.Sequential(*_conv_relu(cin, n1, 1))
        self.b3 = nn.Sequential(*_conv_relu(cin, r3, 1), *_conv_relu(r3, n3, 3, padding=1))
        self.b5 = nn.Sequential(*_conv_relu(cin, r5, 1), *_conv_relu(r5, n5, 5, padding=2))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), *_conv_relu(cin, proj, 1))
        self.channels = n1 + n3 + n5 + proj

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


def googlenet_gap(num_classes):
    """GoogLeNet-GAP of the CAM paper (up to inception_4e, CAM conv 1024 group 2)."""
    layers = (
        _conv_relu(3, 64, 7, 2, 3)
        + [nn.MaxPool2d(3, 2, ceil_mode=True), nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)]
        + _conv_relu(64, 64, 1)
        + _conv_relu(64, 192, 3, padding=1)
        + [nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0), nn.MaxPool2d(3, 2, ceil_mode=True)]
    )
    channels = 192
    for widths in _GOOGLENET_BLOCKS:
        if widths is None:
            layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
        else:
            layers.append(_GoogLeNetInception(channels, widths))
            channels = layers[-1].channels
    layers += _conv_relu(channels, 1024, 3, padding=1, groups=2)
    return nn.Sequential(*layers, _GapHead(1024, num_classes, 0.5))


def vgg16_gap(num_classes):
    """VGG16 without pool5, CAM conv 1024 3x3 group 2, GAP, dropout 0.5."""
    layers, cin = [], 3
    for stage, (width, repeats) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))):
        for _ in range(repeats):
            layers += _conv_relu(cin, width, 3, padding=1)
            cin = width
        if stage < 4:
            layers.append(nn.MaxPool2d(2, 2))
    layers += _conv_relu(512, 1024, 3, padding=1, groups=2)
    return nn.Sequential(*layers, _GapHead(1024, num_classes, 0.5))


def _bn(channels, eps, momentum_keras, scale=True):
    # Keras' momentum m weights the old value; PyTorch's momentum weights the new one.
    bn = nn.BatchNorm2d(channels, eps=eps, momentum=1.0 - momentum_keras)
    if not scale:
        bn.weight.requires_grad_(False)
    return bn


class _Bottleneck(nn.Module):
    """Keras ResNet50 (v1) block: biased convs, stride on the first 1x1, projection shortcut."""

    def __init__(self, cin, width, stride, project):
        super().__init__()

        def conv_bn(a, b, k, s=1):
            return [nn.Conv2d(a, b, k, s, k // 2), _bn(b, 1.001e-5, 0.99)]

        self.main = nn.Sequential(
            *conv_bn(cin, width, 1, stride), nn.ReLU(inplace=True),
            *conv_bn(width, width, 3), nn.ReLU(inplace=True),
            *conv_bn(width, 4 * width, 1),
        )
        self.shortcut = nn.Sequential(*conv_bn(cin, 4 * width, 1, stride)) if project else nn.Identity()

    def forward(self, x):
        return torch.relu(self.main(x) + self.shortcut(x))


def resnet50_gap(num_classes, last_stride=1):
    """Keras ResNet50 with the last stage's stride 1 (``last_stride=2``: the standard
    ``keras.applications.ResNet50``), GAP, classifier."""
    layers = [nn.Conv2d(3, 64, 7, 2, 3), _bn(64, 1.001e-5, 0.99), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, last_stride)):
        for i in range(blocks):
            layers.append(_Bottleneck(cin, width, stride if i == 0 else 1, project=i == 0))
            cin = 4 * width
    return nn.Sequential(*layers, _GapHead(2048, num_classes, 0.0))


class _InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expansion):
        super().__init__()
        hidden = cin * expansion
        layers = []
        if expansion != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), _bn(hidden, 1e-3, 0.999), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), _bn(hidden, 1e-3, 0.999),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False), _bn(cout, 1e-3, 0.999),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


def mobilenetv2_gap(num_classes, block13_stride=1):
    """Keras MobileNetV2 (alpha 1) with block 13's stride 1 (``block13_stride=2``: the
    standard ``keras.applications.MobileNetV2``), GAP, classifier."""
    layers = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), _bn(32, 1e-3, 0.999), nn.ReLU6(inplace=True)]
    cin, block = 32, 0
    for expansion, cout, repeats, stride in (
        (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)
    ):
        for i in range(repeats):
            s = (stride if block != 13 else block13_stride) if i == 0 else 1
            layers.append(_InvertedResidual(cin, cout, s, expansion))
            cin, block = cout, block + 1
    layers += [nn.Conv2d(320, 1280, 1, bias=False), _bn(1280, 1e-3, 0.999), nn.ReLU6(inplace=True)]
    return nn.Sequential(*layers, _GapHead(1280, num_classes, 0.0))


class _ConvBN(nn.Sequential):
    """Keras InceptionV3 ``conv2d_bn``: conv without bias, BN without scale, ReLU."""

    def __init__(self, cin, cout, kernel, stride=1, padding="same"):
        kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
        pad = (kernel[0] // 2, kernel[1] // 2) if padding == "same" else 0
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, pad, bias=False), _bn(cout, 1e-3, 0.99, scale=False),
            nn.ReLU(inplace=True),
        )


class _Concat(nn.Module):
    def __init__(self, *branches):
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(*b) for b in branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], 1)


def _avg_pool_same():
    return nn.AvgPool2d(3, 1, 1, count_include_pad=False)  # TF "SAME" average excludes padding


def inceptionv3_gap(num_classes):
    """Keras InceptionV3 up to mixed7, mixed3 at stride 1 / same padding, two CAM convs 1024."""
    layers = [
        _ConvBN(3, 32, 3, 2, "valid"), _ConvBN(32, 32, 3, padding="valid"), _ConvBN(32, 64, 3),
        nn.MaxPool2d(3, 2), _ConvBN(64, 80, 1, padding="valid"), _ConvBN(80, 192, 3, padding="valid"),
        nn.MaxPool2d(3, 2),
    ]
    cin = 192
    for proj in (32, 64, 64):  # mixed0-2
        layers.append(_Concat(
            [_ConvBN(cin, 64, 1)],
            [_ConvBN(cin, 48, 1), _ConvBN(48, 64, 5)],
            [_ConvBN(cin, 64, 1), _ConvBN(64, 96, 3), _ConvBN(96, 96, 3)],
            [_avg_pool_same(), _ConvBN(cin, proj, 1)],
        ))
        cin = 64 + 64 + 96 + proj
    layers.append(_Concat(  # mixed3, stride 1 and same padding
        [_ConvBN(cin, 384, 3)],
        [_ConvBN(cin, 64, 1), _ConvBN(64, 96, 3), _ConvBN(96, 96, 3)],
        [nn.MaxPool2d(3, 1, 1)],
    ))
    cin = 384 + 96 + cin
    for width in (128, 160, 160, 192):  # mixed4-7
        layers.append(_Concat(
            [_ConvBN(cin, 192, 1)],
            [_ConvBN(cin, width, 1), _ConvBN(width, width, (1, 7)), _ConvBN(width, 192, (7, 1))],
            [_ConvBN(cin, width, 1), _ConvBN(width, width, (7, 1)), _ConvBN(width, width, (1, 7)),
             _ConvBN(width, width, (7, 1)), _ConvBN(width, 192, (1, 7))],
            [_avg_pool_same(), _ConvBN(cin, 192, 1)],
        ))
        cin = 768
    for _ in range(2):
        layers += [nn.Dropout(0.5)] + _conv_relu(cin, 1024, 3, padding=1)
        cin = 1024
    return nn.Sequential(*layers, _GapHead(1024, num_classes, 0.5))


MODELS = {
    f.__name__: f for f in (alexnet_gap, googlenet_gap, vgg16_gap, resnet50_gap, mobilenetv2_gap, inceptionv3_gap)
}


def parameter_counts(model):
    """``(trainable parameters, batch-norm moving statistics)`` of a torch model, counted as
    Keras counts trainable and non-trainable weights."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    moving = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    return trainable, moving
