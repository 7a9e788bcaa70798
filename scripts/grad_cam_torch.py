"""pytorch-grad-cam for ``scripts/cam_parity.py`` and ``scripts/benchmark_cams.py``.

Benchmark-only (``pip install -e .[bench]``; the library never imports it).
pytorch-grad-cam (PyPI ``grad-cam``) imports torchvision at import time, for image
utilities that its CAM classes do not call. Where torchvision is missing or does not
load (e.g. a CUDA build of torchvision beside a CPU build of torch: ``torchvision::nms
does not exist``), `import_grad_cam` puts a stand-in module in its place that provides
those names and raises if one is ever called, and says so in its note; the CAM classes
used here (GradCAM ... AblationCAM) then run unchanged.

``METHODS`` maps keras-has method names to pytorch-grad-cam class names, and
`torch_cams` runs one of them on a batch.
"""
import os
import sys
import types

# Score-/Ablation-CAM's progress bars; tqdm reads this when it is first imported (torch
# imports it: import this module before torch).
os.environ.setdefault("TQDM_DISABLE", "1")

METHODS = {
    "gradcam": "GradCAM",
    "gradcam_plus_plus": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "scorecam": "ScoreCAM",
    "eigencam": "EigenCAM",
    "ablationcam": "AblationCAM",
}


def _stand_in(name):
    def unavailable(*args, **kwargs):
        raise RuntimeError(f"torchvision is not installed here; {name} is a stand-in "
                           "(scripts/grad_cam_torch.py)")
    return unavailable


def _install_torchvision_stand_in():
    for key in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
        del sys.modules[key]
    root = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    for name in ("Compose", "Normalize", "ToTensor", "Resize"):
        setattr(transforms, name, _stand_in(f"torchvision.transforms.{name}"))
    functional.resize = _stand_in("torchvision.transforms.functional.resize")
    transforms.functional = functional
    root.transforms = transforms
    root.__version__ = "stand-in"
    sys.modules.update({"torchvision": root, "torchvision.transforms": transforms,
                        "torchvision.transforms.functional": functional})


def import_grad_cam():
    """``(pytorch_grad_cam module, note)``; the note names the versions and whether the
    torchvision stand-in was used. Raises ImportError when grad-cam is not installed."""
    import torch

    note = ""
    try:
        import torchvision  # noqa: F401
        note = f"torchvision {torchvision.__version__}"
    except Exception as error:  # noqa: BLE001 - ImportError, or RuntimeError of a broken build
        _install_torchvision_stand_in()
        note = (f"torchvision unavailable ({type(error).__name__}: {str(error).splitlines()[0][:80]}); "
                "its image utilities replaced by a stand-in that grad-cam's CAM classes never call")
    import pytorch_grad_cam
    from importlib.metadata import version

    return pytorch_grad_cam, f"torch {torch.__version__}, grad-cam {version('grad-cam')}, {note}"


def torch_cams(grad_cam, method, model, target_layer, images_nchw, class_ids, batch_size=32):
    """pytorch-grad-cam's maps ``[B, H, W]`` (ReLU, min-max, resized to the input,
    min-max again: its own post-processing) for ``class_ids`` (ClassifierOutputTarget:
    the model's output, logits here)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = getattr(grad_cam, METHODS[method])
    kwargs = {"batch_size": batch_size} if method == "ablationcam" else {}
    cam = cls(model=model, target_layers=[target_layer], **kwargs)
    if method == "scorecam":
        cam.batch_size = batch_size
    targets = [ClassifierOutputTarget(int(k)) for k in class_ids]
    try:
        return cam(input_tensor=images_nchw, targets=targets)
    finally:
        cam.activations_and_grads.release()
