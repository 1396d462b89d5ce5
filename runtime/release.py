"""The released model: where it lives, and which model `flm-dpu` runs when none is given.

A release (`models/NAME/`, written by `flm release`) is also a board bundle: its meta.json
carries the crop contract and the model files, so `flm-dpu --model models/NAME` and the
default below read it with `runtime.bundle.load_bundle`. On a host that runs the INT8
ONNX/TFLite export; once `flm vitis compile` + `flm vitis bundle` have been run on the release
(`--run models/NAME`), its `bundle/` directory is preferred, and on a board (VART importable)
that bundle's xmodel runs.

Where a release is found, first hit wins:
  1. $FLM_RELEASE_DIR (a release directory),
  2. the source checkout: <repo>/models/NAME (editable installs, CI, the Vitis AI docker),
  3. an installed copy: <sys.prefix>/share/flm/release (`pip install .` on the board; pyproject's
     data-files put the one release there).

TensorFlow-free, Python 3.8 syntax: the board imports this.
"""
import os
import sys
from typing import List, Optional

from runtime.bundle import is_bundle, vitis_runtime_present

#: The released model's directory name (one release at a time; it is replaced, not added to).
RELEASE_NAME = "pfld98_w1"
#: Where the release sits in the source tree.
MODELS_DIR = "models"
BUNDLE_SUBDIR = "bundle"


def source_release(name: str = RELEASE_NAME) -> str:
    """<repo>/models/NAME: the release in the source checkout (search order's second place; the
    release scripts' default, since they work on the checkout's release, not $FLM_RELEASE_DIR's)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(repo, MODELS_DIR, name)


def release_candidates(name: str = RELEASE_NAME) -> List[str]:
    """Directories that may hold the release, in search order."""
    out = []  # type: List[str]
    env = os.environ.get("FLM_RELEASE_DIR")
    if env:
        out.append(env)
    out.append(source_release(name))
    out.append(os.path.join(sys.prefix, "share", "flm", "release"))
    return out


def find_release(name: str = RELEASE_NAME) -> Optional[str]:
    """The first release directory (a bundle: one holding meta.json), or None."""
    for path in release_candidates(name):
        if is_bundle(path):
            return path
    return None


def default_model(name: str = RELEASE_NAME) -> Optional[str]:
    """The model `flm-dpu` runs without --model: on a board (VART importable) the release's
    compiled bundle if there is one, else the release itself (its INT8 ONNX/TFLite on a host);
    None when no release is installed."""
    root = find_release(name)
    if root is None:
        return None
    bundle = os.path.join(root, BUNDLE_SUBDIR)
    if is_bundle(bundle) and vitis_runtime_present():
        return bundle
    return root
