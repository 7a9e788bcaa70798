"""Imports point one way, down the layers (scripts/check_imports.py), and the config
layer loads alone: no TensorFlow, no Keras, nothing else of the product."""
import importlib.util
import subprocess
import sys
import textwrap

from tests.helpers import REPO_ROOT


def _checker():
    spec = importlib.util.spec_from_file_location(
        "check_imports", REPO_ROOT / "scripts" / "check_imports.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_import_cycle_and_no_import_up_the_layers():
    assert _checker().problems(str(REPO_ROOT / "keras_has")) == []


def test_checker_finds_a_cycle_and_an_upward_import(tmp_path):
    """The checker itself, on a made-up package: config -> train is upward, and
    a <-> b is a cycle."""
    root = tmp_path / "keras_has"
    for folder in ("config", "train", "data"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "config" / "a.py").write_text("def f():\n    from keras_has.train import t\n")
    (root / "train" / "t.py").write_text("import keras_has.config.a\n")
    (root / "data" / "x.py").write_text("from keras_has.data import y\n")
    (root / "data" / "y.py").write_text("from . import x\n")
    found = _checker().problems(str(root))
    assert "config imports train, a layer above it" in found
    assert any(line.startswith("module cycle") and "keras_has.data.x" in line
               and "keras_has.data.y" in line for line in found)
    assert any(line.startswith("package cycle") for line in found)


def test_config_loads_without_tensorflow_keras_or_other_product_modules():
    code = textwrap.dedent("""
        import sys
        import keras_has.config
        import keras_has.config.commands, keras_has.config.temporal
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")
                        or (m.startswith("keras_has.") and not m.startswith("keras_has.config")))
        print(loaded)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO_ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
