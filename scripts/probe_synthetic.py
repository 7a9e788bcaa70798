"""Probe the built-in synthetic dataset: does a plain GAP CNN's CAM box the part, and
does Hide-and-Seek move it to the whole object?

Trains a small GAP CNN with and without hiding on in-memory data from
`keras_has.data.synthetic.generate_arrays` (the same examples the TFDS builder
writes), then for each model reports test classification accuracy and, per CAM
threshold, mean IoU and GT-known Loc (IoU >= 0.5, box from the largest 8-connected
region of the GT-class CAM) against the object box and against the part box.

Examples:
    # baseline and Hide-and-Seek, a few minutes on 2 CPU cores
    python scripts/probe_synthetic.py --train_size=5000 --test_size=500 --epochs=16
    # how long the TFDS builder takes to generate a config (10k images for s64)
    python scripts/probe_synthetic.py --time_build=s64 --build_dir=/tmp/syn_build
"""
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app, flags  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("image_size", 64, "Image side in pixels.")
flags.DEFINE_integer("train_size", 3000, "Training images.")
flags.DEFINE_integer("test_size", 500, "Test images.")
flags.DEFINE_integer("epochs", 8, "Training epochs.")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam initial learning rate (cosine decay to 0).")
flags.DEFINE_integer("seed", 0, "Seed for data, weights and hiding.")
flags.DEFINE_integer("data_seed", 0, "Seed for the generated data.")
flags.DEFINE_list("modes", ["gap", "has"], "Models to train: gap (no hiding), has (hiding).")
flags.DEFINE_list("grid_sizes", ["0", "8", "16"], "Hiding grid sizes at 64 px (scaled to image_size).")
flags.DEFINE_float("hide_prob", 0.5, "Hiding probability per patch.")
flags.DEFINE_list("thresholds", ["0.1", "0.2", "0.3", "0.4", "0.5"], "CAM thresholds (fraction of max).")
flags.DEFINE_list("widths", ["16", "32", "64", "128"], "Conv block widths (probe model or tiny_gap).")
flags.DEFINE_string("model", "tiny_gap", "probe (built here) or a keras_has.models name such as tiny_gap.")
flags.DEFINE_string("time_build", None, "Instead of training: time builder.download_and_prepare() of this "
                    "config (e.g. s64) into --build_dir, and print images per second.")
flags.DEFINE_string("build_dir", "/tmp/keras_has_synthetic_probe", "data_dir for --time_build.")
flags.DEFINE_float("body_consistency", None, "Override DesignParams.body_consistency.")
flags.DEFINE_float("body_contrast", None, "Override DesignParams.body_contrast.")
flags.DEFINE_list("part_scale", None, "Override DesignParams.part_scale (lo,hi).")


def build_probe_model(image_size, num_classes, widths, seed):
    """Conv-BN-ReLU blocks (2x2 max-pool after the first two), GAP, Dense."""
    import keras
    keras.utils.set_random_seed(seed)
    x = inp = keras.Input((image_size, image_size, 3))
    for i, w in enumerate(widths):
        x = keras.layers.Conv2D(w, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU(name="cam_features" if i == len(widths) - 1 else None)(x)
        if i < 2:
            x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(num_classes, name="classifier")(x)
    return keras.Model(inp, out)


def hide(images, grid_sizes, hide_prob, rng):
    """Numpy grid hiding: per image a grid size from grid_sizes (0 = none), each cell
    hidden with hide_prob, hidden pixels set to 0 (the mean after normalisation)."""
    b, s = images.shape[:2]
    choice = rng.integers(len(grid_sizes), size=b)
    keep = np.ones((b, s, s), bool)
    for gi, g in enumerate(grid_sizes):
        idx = np.nonzero(choice == gi)[0]
        if g == 0 or len(idx) == 0:
            continue
        n = -(-s // g)
        cells = rng.random((len(idx), n, n)) >= hide_prob
        keep[idx] = np.repeat(np.repeat(cells, g, 1), g, 2)[:, :s, :s]
    return images * keep[..., None]


def largest_region_box(fg):
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(4)
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = stats[k, :4]
    return np.array([x, y, x + w - 1, y + h - 1])


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = ix * iy
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)
    return inter / (area(a) + area(b) - inter)


def coverage(box, gt):
    """Fraction of the ground-truth box `gt` inside `box`."""
    ix = max(0, min(box[2], gt[2]) - max(box[0], gt[0]) + 1)
    iy = max(0, min(box[3], gt[3]) - max(box[1], gt[1]) + 1)
    return ix * iy / ((gt[2] - gt[0] + 1) * (gt[3] - gt[1] + 1))


def evaluate(model, x, data, thresholds):
    import keras
    feats_model = keras.Model(model.input, [model.output, model.get_layer("cam_features").output])
    logits, feats = feats_model.predict(x, batch_size=256, verbose=0)
    kernel = model.get_layer("classifier").kernel.numpy()
    labels = data["label"]
    acc = float(np.mean(np.argmax(logits, 1) == labels))
    cams = np.einsum("bhwc,cb->bhw", feats, kernel[:, labels])
    s = x.shape[1]
    res = {t: {"iou_obj": [], "iou_part": [], "obj_cov": [], "part_cov": []} for t in thresholds}
    for i in range(len(x)):
        cam = cv2.resize(cams[i], (s, s), interpolation=cv2.INTER_LINEAR)
        cam = cam - cam.min()
        cam = cam / cam.max() if cam.max() > 0 else cam
        gray = np.floor(cam * 255)
        for t in thresholds:
            box = largest_region_box(gray > np.floor(t * gray.max()))
            res[t]["iou_obj"].append(iou(box, data["object_box"][i]))
            res[t]["iou_part"].append(iou(box, data["part_box"][i]))
            res[t]["obj_cov"].append(coverage(box, data["object_box"][i]))
            res[t]["part_cov"].append(coverage(box, data["part_box"][i]))
    return acc, {t: {k: np.array(v) for k, v in r.items()} for t, r in res.items()}


def main(argv):
    del argv
    import keras
    from keras_has.data import synthetic

    if FLAGS.time_build:
        import tensorflow_datasets as tfds
        builder = tfds.builder(f"keras_has_synthetic/{FLAGS.time_build}", data_dir=FLAGS.build_dir)
        cfg = builder.builder_config
        total = cfg.train_size + cfg.validation_size + cfg.test_size
        t0 = time.time()
        builder.download_and_prepare()
        dt = time.time() - t0
        print(f"built {FLAGS.time_build}: {total} images at {cfg.image_size} px in {dt:.1f}s "
              f"({total / dt:.0f} images/s) into {FLAGS.build_dir}")
        return

    overrides = {}
    if FLAGS.body_consistency is not None:
        overrides["body_consistency"] = FLAGS.body_consistency
    if FLAGS.body_contrast is not None:
        overrides["body_contrast"] = FLAGS.body_contrast
    if FLAGS.part_scale is not None:
        overrides["part_scale"] = tuple(float(v) for v in FLAGS.part_scale)
    params = synthetic.DesignParams(**overrides)
    s = FLAGS.image_size
    t0 = time.time()
    train = synthetic.generate_arrays(FLAGS.data_seed, "train", FLAGS.train_size, s, params)
    test = synthetic.generate_arrays(FLAGS.data_seed, "test", FLAGS.test_size, s, params)
    print(f"design: {params}; generated in {time.time() - t0:.1f}s")
    mean = train["image"].reshape(-1, 3).mean(0)
    std = train["image"].reshape(-1, 3).std(0)
    norm = lambda im: ((im.astype(np.float32) - mean) / std).astype(np.float32)
    x_train, x_test = norm(train["image"]), norm(test["image"])
    grid_sizes = [int(round(int(g) * s / 64)) for g in FLAGS.grid_sizes]
    thresholds = [float(t) for t in FLAGS.thresholds]
    rows = []
    for mode in FLAGS.modes:
        if FLAGS.model == "probe":
            model = build_probe_model(s, synthetic.NUM_CLASSES, [int(w) for w in FLAGS.widths], FLAGS.seed)
        else:
            from keras_has import models
            keras.utils.set_random_seed(FLAGS.seed)
            model = models.get_model(FLAGS.model, synthetic.NUM_CLASSES, input_shape=(s, s, 3),
                                     widths=tuple(int(w) for w in FLAGS.widths), seed=FLAGS.seed)
        steps = FLAGS.epochs * -(-FLAGS.train_size // FLAGS.batch_size)
        lr = keras.optimizers.schedules.CosineDecay(FLAGS.learning_rate, steps)  # to 0 at the end
        model.compile(keras.optimizers.Adam(lr),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        rng = np.random.default_rng(FLAGS.seed + 1)
        t0 = time.time()
        for epoch in range(FLAGS.epochs):
            xe = hide(x_train, grid_sizes, FLAGS.hide_prob, rng) if mode == "has" else x_train
            h = model.fit(xe, train["label"], batch_size=FLAGS.batch_size, epochs=1, verbose=0, shuffle=True)
            print(f"[{mode}] epoch {epoch + 1}: loss {h.history['loss'][0]:.3f} "
                  f"acc {h.history['accuracy'][0]:.3f} ({time.time() - t0:.0f}s)", flush=True)
        acc, res = evaluate(model, x_test, test, thresholds)
        # Accuracy when the part is hidden (pixels at the mean): does the body carry evidence?
        part_hidden = x_test * (1 - test["part_mask"].astype(np.float32) / 255)
        acc_nopart = float(np.mean(np.argmax(model.predict(part_hidden, batch_size=256, verbose=0), 1)
                                   == test["label"]))
        agree = test["body_class"] == test["label"]
        pred = np.argmax(model.predict(x_test, batch_size=256, verbose=0), 1)
        print(f"[{mode}] Top-1 where the body wears its class's pattern: "
              f"{100 * np.mean(pred[agree] == test['label'][agree]):.1f}% ({agree.sum()} images); "
              f"where it wears another class's: {100 * np.mean(pred[~agree] == test['label'][~agree]):.1f}% "
              f"({(~agree).sum()} images)")
        for t in thresholds:
            r = res[t]
            rows.append((mode, t, acc, acc_nopart, r["iou_obj"].mean(), (r["iou_obj"] >= 0.5).mean(),
                         r["iou_part"].mean(), (r["iou_part"] >= 0.5).mean(), r["obj_cov"].mean(),
                         r["part_cov"].mean()))
    print("\nclas_nopart: accuracy with the part's pixels set to the mean; obj_cov / part_cov: mean"
          " fraction of the object / part box inside the CAM box")
    print("mode  thr   clas  clas_nopart  IoU_obj  Loc_obj  IoU_part  Loc_part  obj_cov  part_cov")
    for m, t, a, an, io, lo, ip, lp, oc, pc in rows:
        print(f"{m:5s} {t:.2f}  {100 * a:5.1f}  {100 * an:5.1f}        {io:.3f}    {100 * lo:5.1f}"
              f"    {ip:.3f}    {100 * lp:5.1f}    {oc:.3f}    {pc:.3f}")


if __name__ == "__main__":
    app.run(main)
