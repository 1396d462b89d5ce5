"""Python 3.8 compatibility of what runs in the Vitis AI docker and on the board."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PY38_PATHS = ["runtime", "vitis", "keras_flm/model.py", "keras_flm/config.py", "keras_flm/keras_compat.py"]


def _vermin():
    exe = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    if not Path(exe).exists():
        pytest.fail("vermin is not installed (pip install -e .[dev])")
    return exe


def test_board_and_docker_code_is_python38_compatible():
    paths = [str(REPO / p) for p in PY38_PATHS if (REPO / p).exists()]
    out = subprocess.run([_vermin(), "-t=3.8-", "--no-tips", "--violations", "--eval-annotations",
                          "--backport", "dataclasses", "--backport", "typing", *paths],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_runtime_has_no_module_level_tensorflow_import():
    bad = []
    for f in (REPO / "runtime").rglob("*.py"):
        for line in f.read_text().splitlines():
            if line.startswith(("import tensorflow", "from tensorflow", "import tf_keras", "from tf_keras",
                                "from keras_flm", "import keras_flm", "from quant", "from vitis")):
                bad.append("%s: %s" % (f.relative_to(REPO), line))
    assert not bad, bad
