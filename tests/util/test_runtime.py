"""keras_has.util.runtime: the process settings of the inference commands."""
import os
import subprocess
import sys
import textwrap

import numpy as np

from keras_has.util import runtime

from tests.helpers import REPO_ROOT

_VARIABLE = "TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD"


def test_sets_the_variables_where_unset_and_keeps_the_users_value():
    environ = {}
    assert runtime.prefer_inference_threading(environ) == {_VARIABLE: "1"}
    assert environ == {_VARIABLE: "1"}
    environ = {_VARIABLE: "0", "OTHER": "x"}
    assert runtime.prefer_inference_threading(environ) == {_VARIABLE: "0"}
    assert environ == {_VARIABLE: "0", "OTHER": "x"}


def _child(code, env_value):
    env = {k: v for k, v in os.environ.items() if k != _VARIABLE}
    if env_value is not None:
        env[_VARIABLE] = env_value
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         env=env, cwd=REPO_ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_only_the_inference_subcommands_set_it_before_they_start():
    # A bad flag stops each command after its process set-up, before any work.
    code = f"""
        import os
        from keras_has.cli import run
        status = run({{sub!r}}, ["--no_such_flag=1"])
        print(status, os.environ.get({_VARIABLE!r}))
    """
    assert _child(code.format(sub="evaluate"), None) == "1 1"
    assert _child(code.format(sub="predict"), None) == "1 1"
    assert _child(code.format(sub="train"), None) == "1 None"
    assert _child(code.format(sub="evaluate"), "0") == "1 0"


def test_a_forward_pass_is_the_same_to_the_last_bit_either_way(tmp_path):
    # The caller thread takes one of the same shares of each parallel loop: bfloat16
    # convolutions big enough to be split across the threads give identical outputs.
    code = """
        import sys
        import numpy as np
        import keras
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        rng = np.random.default_rng(0)
        inputs = keras.Input((56, 56, 16))
        x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(inputs)
        x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
        x = keras.layers.Conv2D(96, 1, activation="relu")(x)
        model = keras.Model(inputs, keras.layers.Activation("linear", dtype="float32")(x))
        model.set_weights([rng.normal(0, 0.2, w.shape).astype("float32") for w in model.get_weights()])
        out = model.predict(rng.uniform(-1, 1, (16, 56, 56, 16)).astype("float32"), batch_size=16, verbose=0)
        np.save(sys.argv[1] if len(sys.argv) > 1 else "{path}", out)
        print(float(np.abs(out).sum()))
    """
    outputs = []
    for value in ("0", "1"):
        path = tmp_path / f"out_{value}.npy"
        _child(code.replace("{path}", str(path)), value)
        outputs.append(np.load(path))
    assert outputs[0].shape == (16, 56, 56, 96) and np.abs(outputs[0]).sum() > 0
    np.testing.assert_array_equal(outputs[0], outputs[1])
