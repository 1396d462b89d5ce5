"""Which `xir` a test runs with: the real XIR module (built by `make xir`, imported through the .pth file it
writes into the venv) and the stand-in (fake_vitis/xir.py), both on the real KV260 xmodels.

Fixtures (import them into a test module):
  xir_impl   parametrized "real" / "stand-in": the module, also installed as sys.modules["xir"] for the
             test, so code that does `import xir` gets it too;
  fake_vart  the vart stand-in as sys.modules["vart"].
The real module skips only where the vendored XIR sources are absent; with the sources present and the
module not built, it fails under CI (CI=true) and skips elsewhere, saying to run `make xir`.
"""
import importlib
import os
import sys
from pathlib import Path
from typing import Any, Optional, Tuple

import pytest

from tests.conftest import REPO

VENDOR = Path(os.environ.get("FLM_SHARED_VENDOR", REPO.parent / "shared" / "vendor"))
XIR_SOURCES = VENDOR / "vitis-ai-3.5" / "xir-src.tar.gz"
XMODELS = VENDOR / "xmodels"
MNIST = XMODELS / "dpu_mnist_classifier.xmodel"  # 1 DPU subgraph, xcompiler 3.5, input 1x28x28x1
CUSTOM_OP = XMODELS / "tf2_custom_op.xmodel"  # 2 DPU subgraphs split by a CPU custom op, xcompiler 3.0
FINGERPRINT = "0x101000056010407"

_real = []  # type: list  # [(module or None, reason)] once probed


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def real_xir() -> Tuple[Optional[Any], str]:
    """(the real xir extension module, "") or (None, why not); imported once per session."""
    if not _real:
        saved = sys.modules.pop("xir", None)
        fake_dir = str(Path(__file__).resolve().parent)
        path = [p for p in sys.path if os.path.abspath(p or ".") != fake_dir]
        old_path, sys.path[:] = list(sys.path), path
        try:
            mod = importlib.import_module("xir")
            origin = getattr(getattr(mod, "__spec__", None), "origin", "") or ""
            _real.append((mod, "") if origin.endswith(".so") else (None, "`import xir` found %s, not the "
                                                                         "compiled module" % origin))
        except ImportError as e:
            _real.append((None, str(e)))
        finally:
            sys.path[:] = old_path
            sys.modules.pop("xir", None)
            if saved is not None:
                sys.modules["xir"] = saved
    return _real[0]


def require_vendor() -> None:
    """Skip (with the reason) where the vendored xmodels are absent."""
    if not (MNIST.is_file() and CUSTOM_OP.is_file()):
        pytest.skip("the vendored KV260 xmodels are absent (%s)" % XMODELS)


def require_real_xir() -> Any:
    mod, why = real_xir()
    if mod is not None:
        return mod
    if not XIR_SOURCES.is_file():
        pytest.skip("the vendored XIR sources are absent (%s), so the real xir module cannot be built"
                    % XIR_SOURCES)
    msg = "the real xir module is not importable (%s): build it with `make xir`" % why
    if _in_ci():
        pytest.fail(msg)
    pytest.skip(msg)


def standin_xir() -> Any:
    from tests.runtime.fake_vitis import xir

    return xir


@pytest.fixture(params=["real", "stand-in"])
def xir_impl(request, monkeypatch):
    mod = require_real_xir() if request.param == "real" else standin_xir()
    monkeypatch.setitem(sys.modules, "xir", mod)
    return mod


@pytest.fixture()
def fake_vart(monkeypatch):
    from tests.runtime.fake_vitis import vart

    monkeypatch.setitem(sys.modules, "vart", vart)
    return vart
