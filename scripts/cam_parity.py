"""Parity of keras-has's CAM methods with pytorch-grad-cam on the same network.

One small architecture is built in Keras and in PyTorch (3x3 convs with batch norm and
max pooling, a 3x3 conv + ReLU named ``target`` at 8x8, then a 1x1 conv + ReLU, global
average pooling and a linear classifier: a nonlinear head, so that the gradient methods
differ), the Keras weights (random, batch-norm statistics included) are copied into the
PyTorch model, and both compute the maps of the same images and classes at ``target``.

pytorch-grad-cam post-processes every map: ReLU, min-max normalisation (``/ (max +
1e-7)``), bilinear resize to the input (cv2), min-max again. The keras-has maps go
through ``normalize_cams -> resize_cams -> normalize_cams`` (the same steps without the
1e-7), and the script prints, per method both tools have, the max absolute difference
of the normalised maps (target <= 1e-3). pytorch-grad-cam's EigenCAM leaves the sign of
the principal component to LAPACK; keras-has flips it so that the projection's largest
magnitude is positive (the rule of grad-cam's ``get_2d_projection_with_sign_correction``),
so Eigen-CAM is also compared with that function on the same PyTorch activations.

Usage (needs ``pip install -e .[bench]``: torch and grad-cam):
  python scripts/cam_parity.py [--batch=4] [--size=32] [--seed=0]
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from grad_cam_torch import METHODS, import_grad_cam, torch_cams  # noqa: E402
from keras_has.localize import boxes, cams  # noqa: E402

TOLERANCE = 1e-3
NUM_CLASSES = 5


def keras_model(size, seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = inputs
    for i, width in enumerate((8, 16), start=1):
        x = keras.layers.Conv2D(width, 3, padding="same", name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(epsilon=1e-3, name=f"bn{i}")(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv3")(x)
    x = keras.layers.ReLU(name="target")(x)
    x = keras.layers.Conv2D(12, 1, name="conv4")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, name="fc")(x))
    rng = np.random.default_rng(seed)
    for i, width in enumerate((8, 16), start=1):  # non-trivial batch-norm statistics
        bn = model.get_layer(f"bn{i}")
        bn.set_weights([rng.uniform(0.5, 1.5, width), rng.normal(0, 0.2, width),
                        rng.normal(0, 0.3, width), rng.uniform(0.5, 2.0, width)])
    return model


def torch_model(model):
    """The same network in torch.nn with ``model``'s weights; ``.target`` is the CAM layer."""
    import torch
    from torch import nn

    def conv(name, cin, cout, k):
        layer = nn.Conv2d(cin, cout, k, padding=k // 2)
        kernel, bias = model.get_layer(name).get_weights()
        layer.weight.data = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
        layer.bias.data = torch.from_numpy(bias)
        return layer

    def bn(name, width):
        layer = nn.BatchNorm2d(width, eps=1e-3)
        gamma, beta, mean, var = model.get_layer(name).get_weights()
        for param, value in ((layer.weight, gamma), (layer.bias, beta),
                             (layer.running_mean, mean), (layer.running_var, var)):
            param.data = torch.from_numpy(value.astype(np.float32))
        return layer

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(conv("conv1", 3, 8, 3), bn("bn1", 8), nn.ReLU(), nn.MaxPool2d(2),
                                      conv("conv2", 8, 16, 3), bn("bn2", 16), nn.ReLU(), nn.MaxPool2d(2),
                                      conv("conv3", 16, 16, 3))
            self.target = nn.ReLU()
            self.head = nn.Sequential(conv("conv4", 16, 12, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten(), nn.Linear(12, NUM_CLASSES))
            kernel, bias = model.get_layer("fc").get_weights()
            self.head[-1].weight.data = torch.from_numpy(kernel.T.copy())
            self.head[-1].bias.data = torch.from_numpy(bias)

        def forward(self, x):
            return self.head(self.target(self.stem(x)))

    return Net().eval()


def normalized(maps, size):
    """pytorch-grad-cam's post-processing, with keras-has's functions."""
    return boxes.normalize_cams(boxes.resize_cams(boxes.normalize_cams(maps), (size, size)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    grad_cam, note = import_grad_cam()
    import torch
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction

    print(f"keras {keras.__version__}; {note}")
    model = keras_model(args.size, args.seed)
    net = torch_model(model)
    images = np.random.default_rng(args.seed + 1).normal(size=(args.batch, args.size, args.size, 3))
    images = images.astype(np.float32)
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        torch_logits = net(x).numpy()
    keras_logits = np.asarray(model(images, training=False))
    # Each image a different class (the top-1 of random images is often one class).
    class_ids = (keras_logits.argmax(axis=1) + np.arange(args.batch)) % NUM_CLASSES
    print(f"logits max |keras - torch| = {np.abs(keras_logits - torch_logits).max():.2e}; "
          f"classes {class_ids.tolist()}; maps at 'target' {args.size // 4}x{args.size // 4}, "
          f"compared at {args.size}x{args.size}")

    worst = 0.0
    print(f"{'method':<20} {'max |diff|':>12}  (target <= {TOLERANCE:g})")
    for method in METHODS:
        ours = cams.compute_cams(model, images, method=method, layer="target", class_ids=class_ids).numpy()
        theirs = torch_cams(grad_cam, method, net, net.target, x, class_ids)
        diff = float(np.abs(normalized(ours, args.size) - theirs).max())
        if method == "eigencam":
            print(f"{'eigencam (EigenCAM)':<20} {diff:>12.2e}  not counted: EigenCAM leaves the "
                  "component's sign to LAPACK (next line: grad-cam's sign-corrected projection)")
            continue
        print(f"{method:<20} {diff:>12.2e}  {'ok' if diff <= TOLERANCE else 'DIFFERS'}")
        worst = max(worst, diff)
    # Eigen-CAM with grad-cam's sign-corrected projection of the same activations.
    captured = []
    hook = net.target.register_forward_hook(lambda m, i, o: captured.append(o.detach().numpy()))
    with torch.no_grad():
        net(x)
    hook.remove()
    projection = np.maximum(get_2d_projection_with_sign_correction(captured[0]), 0)
    theirs = scale_cam_image(scale_cam_image(projection, (args.size, args.size)))
    ours = cams.compute_cams(model, images, method="eigencam", layer="target").numpy()
    diff = float(np.abs(normalized(ours, args.size) - theirs).max())
    worst = max(worst, diff)
    print(f"{'eigencam (signed)':<20} {diff:>12.2e}  {'ok' if diff <= TOLERANCE else 'DIFFERS'}")
    print(f"worst: {worst:.2e} ({'within' if worst <= TOLERANCE else 'above'} {TOLERANCE:g})")


if __name__ == "__main__":
    main()
