"""The README's Python API block runs as written, and its quickstart command is the one
`.ci/run`'s neighbour documents (the two set-up commands)."""
import re

import numpy as np

from tests.helpers import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def _section(title):
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def test_the_python_api_block_runs():
    block = re.search(r"```python\n(.*?)```", _section("Python API"), re.S).group(1)
    scope = {}
    exec(compile(block, "README.md (Python API)", "exec"), scope)
    assert scope["hidden"].shape == (4, 64, 64, 3)
    assert scope["cams"].shape == (4, 8, 8) and scope["maps"].shape == (4, 64, 64)
    found = scope["found"]
    assert found.boxes.shape == (4, 4) and (found.boxes[:, 2] >= found.boxes[:, 0]).all()
    assert found.maps.shape == (4, 64, 64) and found.scores.shape == (4,)
    np.testing.assert_allclose(found.maps, scope["maps"], atol=1e-6)
    assert scope["tile"].shape == (64, 64, 3) and scope["tile"].dtype == np.uint8


def test_readme_is_a_product_page_with_the_two_setup_commands():
    assert len(README.splitlines()) <= 300
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = 'pip install -e ".[test]" && python -m pytest -n 2 -q'
    assert test_command in README and test_command in ci
    assert "python scripts/compare.py --flagfile=flags/quickstart.cfg" in README


def test_the_own_model_block_runs():
    block = re.search(r"```python\n(.*?)```", _section("CAMs and boxes for your own Keras model"),
                      re.S).group(1)
    scope = {}
    exec(compile(block, "README.md (own model)", "exec"), scope)
    assert scope["cams"].shape == (2, 3, 3) and scope["found"].maps.shape == (2, 96, 96)
    assert scope["found"].boxes.shape == (2, 4)
    # Scores are the softmax output's own values (no second softmax).
    probabilities = scope["model"].predict(scope["images"], verbose=0)
    np.testing.assert_allclose(scope["found"].scores, probabilities.max(axis=1), atol=1e-5)

