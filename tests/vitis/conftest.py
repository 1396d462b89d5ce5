"""Fixtures for the Vitis flow tests: a tiny run directory, the stand-ins for the docker-only tools
(fakes/) and the real vai_q_tensorflow2 host build (vai_q_host)."""
import os
import stat
import sys
from pathlib import Path

import pytest

FAKES = Path(__file__).resolve().parent / "fakes"


@pytest.fixture(scope="session")
def tiny_models():
    """(training model, inference model) of the width-0.25 architecture with non-trivial BN stats."""
    from keras_flm.config import ModelConfig
    from keras_flm.keras_compat import get_keras
    from keras_flm.model import build_training_model, inference_model
    from tests.conftest import randomize_batchnorm

    get_keras().utils.set_random_seed(0)  # the same weights on every run: thresholds cannot flake
    train = build_training_model(ModelConfig(width=0.25))
    randomize_batchnorm(train, seed=0)
    return train, inference_model(train)


@pytest.fixture(scope="session")
def model_files(tmp_path_factory, tiny_models):
    """fp32.h5 and train.h5 of the tiny model, saved once per session."""
    d = tmp_path_factory.mktemp("models")
    train, infer = tiny_models
    train.save(str(d / "train.h5"), save_format="h5", include_optimizer=False)
    infer.save(str(d / "fp32.h5"), save_format="h5", include_optimizer=False)
    return d


def make_run(root: Path, model_files: Path, data_root=None) -> Path:
    """A run directory as `flm train` leaves it (config.json, fp32.h5, train.h5)."""
    import shutil

    from keras_flm.config import ModelConfig, RunConfig

    root.mkdir(parents=True, exist_ok=True)
    cfg = RunConfig(model=ModelConfig(width=0.25))
    if data_root is not None:
        cfg.data = {"root": str(data_root)}
    cfg.versions = {"tensorflow": "test"}
    cfg.save(str(root / "config.json"))
    for name in ("fp32.h5", "train.h5"):
        shutil.copyfile(str(model_files / name), str(root / name))
    return root


@pytest.fixture
def run_dir(tmp_path, model_files):
    return make_run(tmp_path / "runs" / "tiny", model_files)


@pytest.fixture
def fake_compiler_on_path(tmp_path, monkeypatch):
    """A `vai_c_tensorflow2` on PATH that runs fakes/vai_c.py."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "vai_c_tensorflow2"
    exe.write_text('#!/bin/sh\nexec "%s" "%s" "$@"\n' % (sys.executable, FAKES / "vai_c.py"))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ.get("PATH", ""))
    return str(exe)


@pytest.fixture
def fake_xir():
    from tests.runtime.fake_vitis import xir  # the one xir stand-in (runtime and vitis tests)

    return xir


@pytest.fixture
def fake_vi():
    """The target-aware Inspector stand-in (docker-only: it needs target_factory and xcompiler)."""
    from tests.vitis.fakes import vai_inspect

    return vai_inspect


@pytest.fixture(scope="session")
def vai_q_host():
    """The real vai_q_tensorflow2 3.5 built on this host (`make vai-q`): found in its cache, or built
    now (about 5 min once; .ci/run builds it before the tests). Skips only without the source."""
    from vitis import vai_q_env

    try:
        vai_q_env.resolve_source()
    except vai_q_env.VaiQError as e:
        pytest.skip("no vai_q_tensorflow2 source to build from: %s" % e)
    return vai_q_env.find() or vai_q_env.build()
