"""The Vitis AI image: hadolint-clean Dockerfile with the lines the flow depends on, and
Python 3.8 syntax for everything the docker imports."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vitis.config import CONDA_PREFIX, VITIS_AI_IMAGE

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
#: What `flm vitis ...` imports inside the docker (Python 3.8, TF 2.12).
DOCKER_IMPORTS = ["vitis", "runtime", "keras_flm/__init__.py", "keras_flm/config.py", "keras_flm/model.py",
                  "keras_flm/keras_compat.py", "keras_flm/report_md.py", "keras_flm/loss.py",
                  "keras_flm/train.py", "keras_flm/data", "keras_flm/cli.py", "quant/__init__.py",
                  "quant/config.py", "quant/run.py", "quant/calibration.py"]


def _tool(name):
    exe = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(exe).exists():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("%s is not installed (pip install -e .[dev])" % name)
        pytest.skip("%s is not installed" % name)
    return exe


def test_hadolint_clean():
    out = subprocess.run([_tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == ""


def _instructions():
    """(INSTRUCTION, argument) pairs with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def test_dockerfile_has_the_required_lines():
    ins = _instructions()
    words = [w for w, _ in ins]
    assert ("ARG", "VITIS_AI_IMAGE=" + VITIS_AI_IMAGE) in ins
    assert words.index("ARG") < words.index("FROM") and ("FROM", "${VITIS_AI_IMAGE}") in ins
    env = " ".join(a for w, a in ins if w == "ENV")
    assert "VAI_CONDA_ENV=" + CONDA_PREFIX in env and "PATH=${VAI_CONDA_ENV}/bin:" in env
    assert ("COPY", ". /opt/flm") in ins
    run = " ".join(a for w, a in ins if w == "RUN")
    assert "pip install --no-cache-dir --no-deps /opt/flm" in run
    # click and OpenCV only when missing (the image's TF 2.12 stack is never touched)
    assert re.search(r'if ! python -c "import click".*pip install --no-cache-dir "click>=8\.1', run)
    assert re.search(r'if ! python -c "import cv2".*pip install --no-cache-dir "opencv-python-headless>=4',
                     run)
    assert "flm vitis --help" in run and "command -v vai_c_tensorflow2" in run
    assert not re.search(r"pip install[^&]*\btensorflow\b", run)
    assert ("WORKDIR", "/workspace") in ins
    assert [a for w, a in ins if w == "USER"][-1] != "root"


def test_dockerignore_keeps_the_context_small():
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "runs"):
        assert entry in ignored


def test_docker_side_code_is_python38():
    paths = [str(REPO / p) for p in DOCKER_IMPORTS if (REPO / p).exists()]
    out = subprocess.run([_tool("vermin"), "-t=3.8-", "--no-tips", "--violations", "--eval-annotations",
                          "--backport", "dataclasses", "--backport", "typing", *paths],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
