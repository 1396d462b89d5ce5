"""A tiny trained run shared by the quant tests (width 0.25, 72 real faces, 2 epochs).

Briefly trained, not converged: quantization must still keep its outputs close to the
FP32 model's, which is what the tests check (with tolerances stated where they are used).
"""
import os
import shutil

import pytest


@pytest.fixture(scope="session")
def quant_run(faces98, tmp_path_factory):
    pytest.importorskip("tensorflow")
    from keras_flm.config import RunConfig
    from keras_flm.train import train

    cfg = RunConfig()
    cfg.model.width = 0.25
    cfg.train.max_images = 72
    cfg.train.batch_size = 16
    cfg.train.epochs = 2
    cfg.train.lr = 3e-3
    run = str(tmp_path_factory.mktemp("quant") / "tiny")
    cache = str(tmp_path_factory.mktemp("quant_cache"))
    old = os.environ.get("FLM_CACHE_DIR")
    os.environ["FLM_CACHE_DIR"] = cache  # QAT reloads the same crops through keras_flm.train.load_data
    try:
        train(cfg, str(faces98), run, cache_dir=cache, progress=False, verbose=0)
        yield run
    finally:
        if old is None:
            os.environ.pop("FLM_CACHE_DIR", None)
        else:
            os.environ["FLM_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def release_run(quant_run, tmp_path_factory):
    """A copy of the tiny run with FP32 TFLite/ONNX exports in the INT8 file slots."""
    from quant import flows
    from quant.config import ExportConfig

    run = str(tmp_path_factory.mktemp("rel") / "run")
    shutil.copytree(quant_run, run)
    xcfg = ExportConfig()
    flows.export_tflite(run, xcfg, lambda *_: None)
    flows.export_onnx(run, xcfg, lambda *_: None)
    for stem in ("ptq_int8", "qat_int8"):
        for ext in ("tflite", "onnx"):
            shutil.copy(os.path.join(run, "fp32." + ext), os.path.join(run, "%s.%s" % (stem, ext)))
    return run
