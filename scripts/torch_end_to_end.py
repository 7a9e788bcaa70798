"""The PyTorch side of ``scripts/benchmark_end_to_end.py``: a fine-tuning epoch and a
localization evaluation pass written the way clovaai/wsolevaluation's trainer and
evaluator are (our own code, their semantics), run in a child process.

Benchmark-only: needs torch (``pip install -e .[bench]``) and ``torch_models`` (the
architectures); the library never imports it. No torchvision: PyPI's torchvision does
not import beside the torch 2.13.0 CPU build this project benchmarks with, so the
transforms torchvision would apply are written with PIL and torch ops, the same ones:

* training (wsolevaluation ``data_loaders.py``): ``Resize((R, R))`` (PIL bilinear, which
  is antialiased when shrinking), ``RandomCrop(S)``, ``RandomHorizontalFlip()``,
  ``ToTensor`` + ``Normalize`` (here one affine map in pixel scale: the keras-has run's
  preprocessing, so both frameworks feed the weights the same values);
* evaluation: ``Resize((S, S))``, ``ToTensor`` + ``Normalize``;
* a ``Dataset`` over the WSOL metadata files (``image_ids.txt``, ``class_labels.txt``;
  ``image_sizes.txt`` and ``localization.txt`` for the evaluator), ``DataLoader`` with
  ``num_workers`` worker processes (one per core), shuffled for training, the last
  partial batch dropped (keras-has's training pipeline drops it too).

Training step (wsolevaluation ``main.py`` ``Trainer.train``): Hide-and-Seek on the batch in
the main process (``wsol/method/has.py``'s semantics: the image cut into a grid of
``grid x grid`` cells, each cell hidden with probability ``hide_prob``, drawn with
Python's ``random``; here the grid size is drawn per image from the Mixed sizes, 0 = the
image left whole, and the fill is keras-has's: the dataset mean pixel in the model's
value space), forward under ``torch.autocast("cpu", torch.bfloat16)`` (or float32),
cross-entropy, ``loss.item()`` and the accuracy count per step, ``zero_grad`` /
``backward`` / ``step`` of SGD with momentum and (coupled) weight decay, the classifier
at ``lr_classifier_ratio`` times the backbone's rate. Frozen BatchNorm as keras-has's
``--freeze_batchnorm`` (inference mode, scale and offset not trained). One checkpoint
(model and optimizer state, ``torch.save``) per epoch, as wsolevaluation writes its
"best" checkpoint whenever the validation metric improves.

Evaluation (wsolevaluation ``inference.py`` ``CAMComputer`` and ``evaluation.py``
``BoxEvaluator`` with ``multi_contour_eval=True``): per batch one forward pass under
``torch.inference_mode()`` giving logits and the last conv features; the CAM of the
ground-truth class from the features and the classifier weights (channel mean, as their
``return_cam``); per image ``cv2.resize(..., INTER_CUBIC)`` to the input size, min-max
normalisation (``normalize_scoremap``), then for every threshold of
``np.arange(0, 1, cam_curve_interval)``: ``uint8(cam * 255) > int(t * max)``,
``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)``, every contour's bounding box
``(x, y, x + w, y + h)`` clipped to the image, the best IoU (``+1`` inclusive areas) with
the ground-truth boxes rescaled by ``int(coord * S / size)``; MaxBoxAccV2 = mean over IoU
30 / 50 / 70 of the best threshold's accuracy. wsolevaluation's own ``evaluate`` also
runs a second forward pass for the classification accuracy and computes gradients; here
one pass serves both, without autograd.

The worker runs with ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it (see
``torch_bench.py``: spin-waiting OpenMP barriers collapse on a shared 2-core machine).
"""
import os
import random
import sys
import tempfile
import time

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from torch_bench import serve_runner  # noqa: E402
from torch_models import MODELS  # noqa: E402

# ---------------------------------------------------------------------- metadata


def _lines(path):
    with open(path) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def read_split(root, split):
    """``(image_ids, labels {id: int}, sizes {id: (w, h)}, boxes {id: [(x0, y0, x1, y1)]})``
    of ``root/metadata/split``; sizes and boxes are empty when their files are absent."""
    meta = os.path.join(root, "metadata", split)
    ids = _lines(os.path.join(meta, "image_ids.txt"))
    labels = {}
    for line in _lines(os.path.join(meta, "class_labels.txt")):
        image_id, label = line.rsplit(",", 1)
        labels[image_id] = int(label)
    sizes, boxes = {}, {}
    if os.path.exists(os.path.join(meta, "image_sizes.txt")):
        for line in _lines(os.path.join(meta, "image_sizes.txt")):
            image_id, w, h = line.rsplit(",", 2)
            sizes[image_id] = (int(w), int(h))
    if os.path.exists(os.path.join(meta, "localization.txt")):
        for line in _lines(os.path.join(meta, "localization.txt")):
            image_id, *coords = line.rsplit(",", 4)
            boxes.setdefault(image_id, []).append(tuple(int(float(c)) for c in coords))
    return ids, labels, sizes, boxes


# ---------------------------------------------------------------------- data


class Preprocess:
    """``(pixel[order] - mean) / std`` on a uint8 HWC array -> float32 CHW tensor (what
    ``ToTensor`` + ``Normalize`` compute, in pixel scale)."""

    def __init__(self, mean, std, channel_order):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.bgr = channel_order == "bgr"

    def __call__(self, image):
        x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float()
        if self.bgr:
            x = x.flip(0)
        return (x - self.mean) / self.std


class TrainTransform:
    """``Resize((R, R))``, ``RandomCrop(S)``, ``RandomHorizontalFlip()``, preprocess."""

    def __init__(self, resize_size, crop_size, preprocess):
        self.resize_size, self.crop_size, self.preprocess = resize_size, crop_size, preprocess

    def __call__(self, image):
        image = image.resize((self.resize_size, self.resize_size), Image.BILINEAR)
        span = self.resize_size - self.crop_size + 1
        top = int(torch.randint(0, span, (1,)))
        left = int(torch.randint(0, span, (1,)))
        image = image.crop((left, top, left + self.crop_size, top + self.crop_size))
        if torch.rand(1) < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return self.preprocess(image)


class EvalTransform:
    """``Resize((S, S))``, preprocess."""

    def __init__(self, size, preprocess):
        self.size, self.preprocess = size, preprocess

    def __call__(self, image):
        return self.preprocess(image.resize((self.size, self.size), Image.BILINEAR))


class WsolDataset(torch.utils.data.Dataset):
    """Images of one split of a WSOL metadata folder: ``(image, label, index)``."""

    def __init__(self, root, split, transform):
        self.root, self.transform = root, transform
        self.image_ids, self.labels, self.sizes, self.boxes = read_split(root, split)

    def __len__(self):
        return len(self.image_ids)

    def __getitem__(self, index):
        image_id = self.image_ids[index]
        image = Image.open(os.path.join(self.root, "images", image_id)).convert("RGB")
        return self.transform(image), self.labels[image_id], index


def hide_and_seek(images, grid_sizes, hide_prob, fill):
    """In place: per image a grid size drawn from ``grid_sizes`` (0: left whole), then
    every ``grid x grid`` cell hidden (set to ``fill [C, 1, 1]``) with probability
    ``hide_prob``, Python's ``random`` per cell (wsolevaluation's ``has`` loop)."""
    _, _, height, width = images.shape
    for b in range(images.shape[0]):
        grid = random.choice(grid_sizes)
        if grid == 0:
            continue
        for y in range(0, height, grid):
            for x in range(0, width, grid):
                if random.random() <= hide_prob:
                    images[b, :, y:y + grid, x:x + grid] = fill
    return images


# ---------------------------------------------------------------------- model


class SamePad2d(nn.Module):
    """TensorFlow's "same" padding for a ``kernel``/``stride`` convolution (the extra
    pixel after, not before), so a stride-2 convolution sees what Keras' does."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x):
        pads = []
        for size in (x.shape[3], x.shape[2]):
            out = -(-size // self.stride)
            total = max((out - 1) * self.stride + self.kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return nn.functional.pad(x, pads)


def _keras_padding(module):
    """Replaces every stride-2 3x3 convolution by (SamePad2d, the convolution unpadded)."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d) and child.stride == (2, 2) and child.kernel_size == (3, 3):
            child.padding = (0, 0)
            setattr(module, name, nn.Sequential(SamePad2d(3, 2), child))
        else:
            _keras_padding(child)


def build_model(name, num_classes):
    """``torch_models.MODELS[name]`` with Keras' padding (MobileNetV2's stride-2 convs pad
    0 before / 1 after, as Keras does), so the Keras weights give the Keras function."""
    model = MODELS[name](num_classes)
    if name == "mobilenetv2_gap":
        _keras_padding(model)
    return model


def load_keras_weights(model, layers):
    """Copies Keras weights into ``model``.

    ``layers``: the Keras model's weighted layers in this model's module order, each
    ``{"kind": "conv" | "depthwise" | "bn" | "dense", "name": str, "weights": {role: array}}``
    (roles ``kernel``, ``bias``, ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``).
    Raises ValueError on any count or shape mismatch."""
    modules = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
    if len(modules) != len(layers):
        raise ValueError(f"weights: {len(layers)} Keras layers for {len(modules)} torch modules")

    def put(param, value, what):
        value = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
        if tuple(param.shape) != tuple(value.shape):
            raise ValueError(f"weights: {what}: torch {tuple(param.shape)} vs Keras {tuple(value.shape)}")
        with torch.no_grad():
            param.copy_(value)

    for module, layer in zip(modules, layers):
        w, what = layer["weights"], f"{layer['name']} -> {type(module).__name__}"
        if isinstance(module, nn.Conv2d):
            depthwise = module.groups > 1 and module.groups == module.in_channels
            if layer["kind"] != ("depthwise" if depthwise else "conv"):
                raise ValueError(f"weights: {what}: kind {layer['kind']}")
            put(module.weight, w["kernel"].transpose(2, 3, 0, 1) if depthwise else w["kernel"].transpose(3, 2, 0, 1),
                what)
            if module.bias is not None:
                put(module.bias, w["bias"], what)
        elif isinstance(module, nn.BatchNorm2d):
            if layer["kind"] != "bn":
                raise ValueError(f"weights: {what}: kind {layer['kind']}")
            put(module.weight, w.get("gamma", np.ones(module.num_features)), what)
            put(module.bias, w.get("beta", np.zeros(module.num_features)), what)
            put(module.running_mean, w["moving_mean"], what)
            put(module.running_var, w["moving_variance"], what)
        else:
            if layer["kind"] != "dense":
                raise ValueError(f"weights: {what}: kind {layer['kind']}")
            put(module.weight, w["kernel"].T, what)
            put(module.bias, w["bias"], what)


# ---------------------------------------------------------------------- evaluator


def normalize_scoremap(cam):
    """Min-max to [0, 1]; a constant or NaN map becomes zeros (wsolevaluation's rule)."""
    if np.isnan(cam).any() or cam.min() == cam.max():
        return np.zeros_like(cam)
    cam = cam - cam.min()
    return cam / cam.max()


def boxes_per_threshold(scoremap, thresholds):
    """Every contour's box ``[x0, y0, x1, y1]`` at each threshold (one
    ``findContours`` per threshold; ``[[0, 0, 0, 0]]`` where nothing is foreground)."""
    height, width = scoremap.shape
    gray = (scoremap * 255).astype(np.uint8)
    top = int(gray.max())
    out = []
    for t in thresholds:
        _, binary = cv2.threshold(gray, int(t * top), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if not contours:
            out.append(np.zeros((1, 4), np.int64))
            continue
        rects = np.array([cv2.boundingRect(c) for c in contours], np.int64)
        boxes = np.stack([rects[:, 0], rects[:, 1],
                          np.minimum(rects[:, 0] + rects[:, 2], width - 1),
                          np.minimum(rects[:, 1] + rects[:, 3], height - 1)], axis=1)
        out.append(boxes)
    return out


def multiple_iou(boxes, gt):
    """IoU ``[N, M]`` of inclusive pixel boxes (areas count ``x1 - x0 + 1``)."""
    a, b = boxes[:, None, :].astype(np.float64), gt[None, :, :].astype(np.float64)
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


class BoxEvaluator:
    """MaxBoxAccV2 (multi-contour) over ``thresholds`` at ``iou_thresholds`` percent."""

    def __init__(self, thresholds, iou_thresholds=(30, 50, 70)):
        self.thresholds = thresholds
        self.iou_thresholds = tuple(iou_thresholds)
        self.correct = {i: np.zeros(len(thresholds), np.int64) for i in self.iou_thresholds}
        self.count = 0

    def accumulate(self, scoremap, gt_boxes):
        per_threshold = boxes_per_threshold(scoremap, self.thresholds)
        counts = [len(b) for b in per_threshold]
        ious = multiple_iou(np.concatenate(per_threshold), np.asarray(gt_boxes)).max(axis=1)
        best = np.maximum.reduceat(ious, np.cumsum([0] + counts[:-1]))
        for i in self.iou_thresholds:
            self.correct[i] += best >= i / 100
        self.count += 1

    def compute(self):
        per_iou = {i: float(self.correct[i].max() * 100.0 / self.count) for i in self.iou_thresholds}
        return float(np.mean(list(per_iou.values()))), per_iou


# ---------------------------------------------------------------------- worker


class Runner:
    """One model, its optimizer and loaders; ``call(command, **args)`` runs a command."""

    def __init__(self, cfg):
        torch.manual_seed(cfg["seed"])
        random.seed(cfg["seed"])
        self.cfg = cfg
        self.bf16 = cfg["precision"] == "bfloat16"
        self.model = build_model(cfg["model"], cfg["num_classes"])
        self.trainable_bn = not cfg["freeze_batchnorm"]
        prep = Preprocess(cfg["mean"], cfg["std"], cfg["channel_order"])
        self.train_set = WsolDataset(cfg["root"], cfg["train_split"],
                                     TrainTransform(cfg["resize_size"], cfg["image_size"], prep))
        self.test_set = WsolDataset(cfg["root"], cfg["test_split"], EvalTransform(cfg["image_size"], prep))
        self.fill = torch.tensor(cfg["fill"], dtype=torch.float32).view(3, 1, 1)
        self.thresholds = list(np.arange(0, 1, cfg["cam_curve_interval"]))
        self.optimizer = None
        self.checkpoint = os.path.join(tempfile.mkdtemp(prefix="torch_e2e_"), "last_checkpoint.pth.tar")

    def info(self):
        return (f"torch {torch.__version__} (own process), {torch.get_num_threads()} threads, "
                f"DataLoader num_workers={self.cfg['workers']}, OMP_WAIT_POLICY="
                f"{os.environ.get('OMP_WAIT_POLICY')}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
                f"{len(self.train_set)} train / {len(self.test_set)} test images")

    def set_weights(self, layers):
        load_keras_weights(self.model, layers)
        self.model = self.model.to(memory_format=torch.channels_last)
        for m in self.model.modules():
            if isinstance(m, nn.BatchNorm2d) and not self.trainable_bn:
                m.weight.requires_grad_(False)
                m.bias.requires_grad_(False)
        head = [p for p in self.model[-1].parameters() if p.requires_grad]
        head_ids = {id(p) for p in head}
        backbone = [p for p in self.model.parameters() if p.requires_grad and id(p) not in head_ids]
        c = self.cfg
        self.optimizer = torch.optim.SGD(
            [{"params": backbone, "lr": c["lr"]}, {"params": head, "lr": c["lr"] * c["lr_classifier_ratio"]}],
            momentum=c["momentum"], weight_decay=c["weight_decay"], nesterov=c["nesterov"])
        return sum(p.numel() for p in backbone) + sum(p.numel() for p in head)

    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)

    def _train_mode(self):
        self.model.train()
        if not self.trainable_bn:
            for m in self.model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()

    def _loader(self, dataset, shuffle, drop_last):
        return torch.utils.data.DataLoader(dataset, batch_size=self.cfg["batch_size"], shuffle=shuffle,
                                           num_workers=self.cfg["workers"], drop_last=drop_last)

    def train_epoch(self):
        """One epoch over the training split; returns timings (seconds) and counts."""
        c = self.cfg
        loss_fn = nn.CrossEntropyLoss()
        t = dict(data=0.0, hide=0.0, step=0.0, checkpoint=0.0)
        start = time.perf_counter()
        self._train_mode()
        images_seen = correct = 0
        total_loss = 0.0
        tick = time.perf_counter()
        for images, target, _ in self._loader(self.train_set, shuffle=True, drop_last=True):
            now = time.perf_counter()
            t["data"] += now - tick
            if c["hide"]:
                hide_and_seek(images, c["grid_sizes"], c["hide_prob"], self.fill)
            images = images.contiguous(memory_format=torch.channels_last)
            tick = time.perf_counter()
            t["hide"] += tick - now
            with self._autocast():
                logits = self.model(images)
            loss = loss_fn(logits.float(), target)
            total_loss += loss.item() * images.shape[0]
            correct += (logits.argmax(dim=1) == target).sum().item()
            images_seen += images.shape[0]
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            now = time.perf_counter()
            t["step"] += now - tick
            tick = now
        tick = time.perf_counter()
        torch.save({"epoch": 0, "state_dict": self.model.state_dict(), "optimizer": self.optimizer.state_dict()},
                   self.checkpoint)
        t["checkpoint"] = time.perf_counter() - tick
        t["total"] = time.perf_counter() - start
        return dict(seconds=t, images=images_seen, loss=total_loss / max(images_seen, 1),
                    accuracy=100.0 * correct / max(images_seen, 1))

    def loader_alone(self, train=True):
        """One pass of a loader without the model (decode and transforms in the workers)."""
        start = time.perf_counter()
        n = 0
        loader = self._loader(self.train_set, True, True) if train else self._loader(self.test_set, False, False)
        for images, _, _ in loader:
            n += images.shape[0]
        return dict(seconds=time.perf_counter() - start, images=n)

    def evaluate(self):
        """One localization pass over the test split; timings, MaxBoxAccV2, Top-1."""
        size = self.cfg["image_size"]
        weight = self.model[-1].classifier.weight
        features = nn.Sequential(*list(self.model)[:-1])
        evaluator = BoxEvaluator(self.thresholds)
        t = dict(data=0.0, forward=0.0, cam=0.0, boxes=0.0)
        start = time.perf_counter()
        self.model.eval()
        correct = 0
        logits_all = []
        ds = self.test_set
        tick = time.perf_counter()
        for images, target, index in self._loader(ds, shuffle=False, drop_last=False):
            now = time.perf_counter()
            t["data"] += now - tick
            images = images.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), self._autocast():
                feats = features(images)
                logits = self.model[-1](feats).float()
                cams = (feats.float() * weight[target].float()[:, :, None, None]).mean(1).numpy()
            correct += (logits.argmax(dim=1) == target).sum().item()
            logits_all.append(logits.numpy())
            tick = time.perf_counter()
            t["forward"] += tick - now
            for cam, i in zip(cams, index.tolist()):
                image_id = ds.image_ids[i]
                now = time.perf_counter()
                scoremap = normalize_scoremap(cv2.resize(cam, (size, size), interpolation=cv2.INTER_CUBIC))
                w, h = ds.sizes[image_id]
                gt = [(int(x0 * size / w), int(y0 * size / h), int(x1 * size / w), int(y1 * size / h))
                      for x0, y0, x1, y1 in ds.boxes[image_id]]
                mid = time.perf_counter()
                evaluator.accumulate(scoremap, gt)
                tick = time.perf_counter()
                t["cam"] += mid - now
                t["boxes"] += tick - mid
        v2, per_iou = evaluator.compute()
        t["total"] = time.perf_counter() - start
        return dict(seconds=t, images=evaluator.count, max_box_acc_v2=v2, per_iou=per_iou,
                    top1=100.0 * correct / max(evaluator.count, 1), logits=np.concatenate(logits_all))

    def logits(self, images):
        """float32 logits of NHWC float32 ``images`` (no autocast): the weight check."""
        self.model.eval()
        x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        with torch.inference_mode():
            return self.model(x.contiguous(memory_format=torch.channels_last)).float().numpy()


if __name__ == "__main__":
    serve_runner(Runner)
