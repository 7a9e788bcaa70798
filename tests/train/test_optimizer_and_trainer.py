"""keras_has.train.trainer: schedule values, coupled L2, resume bookkeeping, a tiny train()."""
import csv
import json
import os

import numpy as np
import pytest

import keras

from keras_has.train import optimizer as optimizer_lib
from keras_has.train import trainer as training
from keras_has import config as cfg
from keras_has.config import OptimConfig

PAPER = OptimConfig()


# ---------------------------------------------------------------- schedule values
@pytest.mark.parametrize("epoch, lr", [
    # 0-based epoch index e is the 1-based epoch e + 1 of the paper's description.
    (0, 1e-2), (17, 1e-2),            # epochs 1-18
    (18, 5e-3), (28, 5e-3),           # 19-29
    (29, 1e-3), (42, 1e-3),           # 30-43
    (43, 5e-4), (51, 5e-4),           # 44-52
    (52, 1e-4), (54, 1e-4), (80, 1e-4),  # 53 on
])
def test_paper_learning_rate_at_55_epochs(epoch, lr):
    assert optimizer_lib.learning_rate_at(epoch, PAPER, 55) == lr


@pytest.mark.parametrize("epoch, wd", [(0, 5e-4), (28, 5e-4), (29, 0.0), (54, 0.0)])
def test_paper_weight_decay_off_from_epoch_30(epoch, wd):
    assert optimizer_lib.weight_decay_at(epoch, PAPER, 55) == wd


def test_schedule_scaled_to_10_epochs():
    # 18*10/55 = 3.27 -> 3, 29*10/55 = 5.27 -> 5, 43*10/55 = 7.82 -> 8, 52*10/55 = 9.45 -> 9
    assert optimizer_lib.scaled_boundaries(PAPER.lr_boundaries, 10, 55) == (3, 5, 8, 9)
    lrs = [optimizer_lib.learning_rate_at(e, PAPER, 10) for e in range(10)]
    assert lrs == [1e-2] * 3 + [5e-3] * 2 + [1e-3] * 3 + [5e-4] + [1e-4]
    wds = [optimizer_lib.weight_decay_at(e, PAPER, 10) for e in range(10)]
    assert wds == [5e-4] * 5 + [0.0] * 5


def test_schedule_one_epoch_keeps_first_values():
    assert optimizer_lib.learning_rate_at(0, PAPER, 1) == 1e-2
    assert optimizer_lib.weight_decay_at(0, PAPER, 1) == 5e-4


def test_schedule_unscaled_and_decay_never_off():
    optim = OptimConfig(lr_values=(0.1, 0.01), lr_boundaries=(15,),
                        schedule_reference_epochs=None, weight_decay_until_epoch=None)
    assert [optimizer_lib.learning_rate_at(e, optim, 5) for e in (0, 4)] == [0.1, 0.1]
    assert optimizer_lib.learning_rate_at(15, optim, 50) == 0.01
    assert optimizer_lib.weight_decay_at(49, optim, 50) == 5e-4
    off_now = OptimConfig(weight_decay_until_epoch=0)
    assert optimizer_lib.weight_decay_at(0, off_now, 55) == 0.0


# ----------------------------------------------------------------- coupled L2 SGD
def test_l2sgd_matches_hand_computed_caffe_update():
    w = keras.Variable(np.array([[1.0, 2.0]], "float32"))
    b = keras.Variable(np.array([1.0], "float32"))
    opt = optimizer_lib.L2SGD(l2=0.1, learning_rate=0.1, momentum=0.9)
    g_w = np.array([[0.5, 0.5]], "float32")
    g_b = np.array([0.0], "float32")
    opt.apply([g_w, g_b], [w, b])
    # g' = g + 0.1 w = [0.6, 0.7]; v = -0.1 g' ; w += v
    np.testing.assert_allclose(w.numpy(), [[0.94, 1.93]], rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), [1.0])  # rank-1 variables are not decayed
    opt.l2.assign(0.0)
    opt.apply([g_w, g_b], [w, b])
    # v = 0.9 [-0.06, -0.07] - 0.1 * 0.5 = [-0.104, -0.113]
    np.testing.assert_allclose(w.numpy(), [[0.836, 1.817]], rtol=1e-6)


def test_l2sgd_differs_from_keras_decoupled_decay():
    def run(opt):
        w = keras.Variable(np.ones((2, 2), "float32"))
        for _ in range(20):
            opt.apply([np.zeros((2, 2), "float32")], [w])
        return float(w.numpy()[0, 0])

    coupled = run(optimizer_lib.L2SGD(l2=0.01, learning_rate=0.1, momentum=0.9))
    decoupled = run(keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, weight_decay=0.01))
    # Decoupled: w *= (1 - lr * wd) per step, no momentum.
    assert decoupled == pytest.approx((1 - 0.1 * 0.01) ** 20, rel=1e-5)
    # Coupled goes through momentum: a much stronger pull towards zero.
    assert coupled < decoupled - 0.01


def test_l2sgd_serialises():
    opt = optimizer_lib.L2SGD(l2=5e-4, learning_rate=0.01, momentum=0.9)
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(clone, optimizer_lib.L2SGD)
    assert float(clone.l2.numpy()) == pytest.approx(5e-4)
    assert clone.momentum == 0.9


def test_epoch_schedule_callback_sets_and_logs_values():
    optim = OptimConfig(lr_values=(0.1, 0.01), lr_boundaries=(2,),
                        schedule_reference_epochs=None, weight_decay=1e-3,
                        weight_decay_until_epoch=1)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=optimizer_lib.L2SGD(l2=0.5, learning_rate=9.0), loss="mse")
    seen = []
    probe = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: seen.append(
        (float(model.optimizer.learning_rate.numpy()), float(model.optimizer.l2.numpy()))))
    x = np.zeros((4, 3), "float32")
    y = np.zeros((4, 2), "float32")
    hist = model.fit(x, y, epochs=4, verbose=0,
                     callbacks=[optimizer_lib.EpochSchedule(optim, 4), probe])
    np.testing.assert_allclose(seen, [(0.1, 1e-3), (0.1, 0.0), (0.01, 0.0), (0.01, 0.0)],
                               rtol=1e-6)
    assert hist.history["learning_rate"] == [0.1, 0.1, 0.01, 0.01]
    assert hist.history["weight_decay"] == [1e-3, 0.0, 0.0, 0.0]


# ----------------------------------------------------------- resume bookkeeping
def _write_csv(path, epochs):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "loss"])
        for e in epochs:
            w.writerow([e, 1.0 / (e + 1)])


def test_truncate_csv_drops_rows_the_backup_did_not_finish(tmp_path):
    csv_path = tmp_path / "log.csv"
    backup = tmp_path / "backup"
    backup.mkdir()
    _write_csv(csv_path, [1, 2, 3])  # epochs counted from 1; the backup finished two
    (backup / "training_metadata.json").write_text(json.dumps({"epoch": 2, "batch": 0}))
    training.truncate_csv_to_backup(str(csv_path), str(backup))
    assert training.read_csv_log(str(csv_path))["epoch"] == [1, 2]
    # No backup at all: the CSV is emptied (the run restarts from epoch 1).
    (backup / "training_metadata.json").unlink()
    training.truncate_csv_to_backup(str(csv_path), str(backup))
    assert csv_path.read_text() == ""


def test_atomic_write_json_leaves_no_temp(tmp_path):
    from keras_has.util.files import atomic_write_json

    path = tmp_path / "sub" / "c.json"
    atomic_write_json(str(path), {"a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2]}
    assert os.listdir(path.parent) == ["c.json"]


def test_atomic_backup_and_restore_round_trip(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=optimizer_lib.L2SGD(learning_rate=0.1, momentum=0.9), loss="mse")
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    y = np.zeros((8, 2), "float32")
    cb = training.AtomicBackupAndRestore(str(tmp_path / "b"), delete_checkpoint=False)
    model.fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[cb])
    assert sorted(os.listdir(tmp_path / "b")) == ["latest.weights.h5", "training_metadata.json"]
    meta = json.loads((tmp_path / "b" / "training_metadata.json").read_text())
    assert meta["epoch"] == 2
    # A fresh model resumes at epoch 2 with the same weights and optimizer step count.
    fresh = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    fresh.compile(optimizer=optimizer_lib.L2SGD(learning_rate=0.1, momentum=0.9), loss="mse")
    hist = fresh.fit(x, y, epochs=3, batch_size=4, verbose=0,
                     callbacks=[training.AtomicBackupAndRestore(str(tmp_path / "b"))])
    assert hist.epoch == [2]
    assert int(fresh.optimizer.iterations.numpy()) == 6


def test_cosine_schedule_from_the_first_rate_to_zero():
    optim = cfg.OptimConfig(lr_schedule="cosine", lr_values=(0.2,), lr_boundaries=())
    assert optimizer_lib.learning_rate_at(0, optim, 10) == pytest.approx(0.2)
    assert optimizer_lib.learning_rate_at(5, optim, 10) == pytest.approx(0.1)
    assert optimizer_lib.learning_rate_at(2.5, optim, 10) == pytest.approx(
        0.1 * (1 + np.cos(np.pi / 4)))
    assert optimizer_lib.learning_rate_at(10, optim, 10) == pytest.approx(0.0, abs=1e-12)


def test_cosine_schedule_sets_the_rate_before_every_step():
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    optim = cfg.OptimConfig(lr_schedule="cosine", lr_values=(1.0,), lr_boundaries=())
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer_lib.make_optimizer(optim, 2), loss="mse")
    model.fit(np.zeros((8, 2)), np.zeros((8, 1)), batch_size=2, epochs=2, verbose=0,
              callbacks=[optimizer_lib.EpochSchedule(optim, 2), Probe()])
    expected = [0.5 * (1 + np.cos(np.pi * (e + b / 4) / 2)) for e in range(2) for b in range(4)]
    np.testing.assert_allclose(seen, expected, rtol=1e-6)


def test_l2_adam_is_adam_on_the_gradient_plus_l2_times_the_kernel():
    w0 = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)
    grad = np.array([[0.1, 0.0], [-0.3, 0.2]], np.float32)

    def one_step(opt, g):
        var = keras.Variable(w0)
        opt.build([var])
        opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
        return keras.ops.convert_to_numpy(var)

    coupled = one_step(optimizer_lib.L2Adam(l2=0.1, learning_rate=0.01), grad)
    reference = one_step(keras.optimizers.Adam(learning_rate=0.01), grad + 0.1 * w0)
    np.testing.assert_allclose(coupled, reference, rtol=1e-6)
    plain = one_step(keras.optimizers.Adam(learning_rate=0.01), grad)
    assert not np.allclose(coupled, plain)


def test_make_optimizer_follows_the_config():
    adam = optimizer_lib.make_optimizer(cfg.OptimConfig(optimizer="adam", momentum=0.8), 10)
    assert isinstance(adam, optimizer_lib.L2Adam) and adam.beta_1 == 0.8
    sgd = optimizer_lib.make_optimizer(cfg.OptimConfig(), 55)
    assert isinstance(sgd, optimizer_lib.L2SGD) and float(sgd.l2.numpy()) == pytest.approx(5e-4)
