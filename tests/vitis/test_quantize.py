"""vai_q drivers with the stand-in quantizer (fakes/vai_q.py): calibration data, strategies,
options, QAT with the pose-aware loss, atomic outputs, golden dumps."""
import json
import os

import numpy as np
import pytest

from keras_flm.keras_compat import get_keras
from runtime.preprocess import CropSpec
from vitis.config import VitisConfig

from .conftest import make_run


@pytest.fixture
def data_run(tmp_path, model_files, faces98):
    return make_run(tmp_path / "runs" / "q", model_files, data_root=faces98)


def test_calibration_crops_match_the_tfmot_flow(data_run, faces98):
    from keras_flm.config import RunConfig
    from quant.calibration import calibration_crops as tfmot_crops
    from vitis.calibration import calibration_crops, crops_from_root

    ours = crops_from_root(str(faces98), RunConfig.load(str(data_run / "config.json")), 12, seed=3)
    theirs = tfmot_crops(str(data_run), 12, seed=3)
    assert ours.dtype == np.uint8 and ours.shape == (12, 112, 112)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(calibration_crops(str(data_run), 12, seed=3), theirs)
    overridden = calibration_crops(str(data_run), 12, data_root=str(faces98), seed=3)
    np.testing.assert_array_equal(overridden, theirs)


def test_missing_data_root_names_the_fix(run_dir):
    from keras_flm.config import RunConfig
    from vitis.calibration import calibration_crops

    cfg = RunConfig.load(str(run_dir / "config.json"))
    cfg.data = {"root": "/host/only/path"}
    cfg.save(str(run_dir / "config.json"))
    with pytest.raises(ValueError, match="does not exist here: pass --data ROOT"):
        calibration_crops(str(run_dir), 4)


def test_ptq_driver_calls_pof2s_with_cle(fake_vq, tiny_models):
    from vitis.quantize import calibration_input, ptq

    crops = np.random.default_rng(0).integers(0, 256, (8, 112, 112), dtype=np.uint8)
    x = calibration_input(crops, CropSpec())
    assert x.shape == (8, 112, 112, 1) and x.dtype == np.float32
    assert float(x.min()) >= -1.0 and float(x.max()) < 1.0
    cfg = VitisConfig(calib_batch_size=4, include_fast_ft=True)
    q = ptq(fake_vq.vitis_quantize, tiny_models[1], x, cfg, "DPUCZDX8G_ISA1_B4096")
    init, qm = fake_vq.calls[0], fake_vq.calls[1]
    assert init == ("__init__", {"quantize_strategy": "pof2s", "target": "DPUCZDX8G_ISA1_B4096"})
    assert qm[1]["include_cle"] is True and qm[1]["include_fast_ft"] is True and qm[1]["n_calib"] == 8
    assert qm[1]["calib_batch_size"] == 4 and qm[1]["cle_steps"] == cfg.cle_steps
    # pof2 weights: every kernel is an integer multiple of a power of two, within int8
    kernel = q.get_layer("stem_conv").get_weights()[0]
    pos = fake_vq.pof2_position(tiny_models[1].get_layer("stem_conv").get_weights()[0])
    assert np.allclose(kernel * 2.0 ** pos, np.round(kernel * 2.0 ** pos))
    diff = np.abs(q.predict(x[:2], verbose=0) - tiny_models[1].predict(x[:2], verbose=0)).max()
    assert 0 < diff < 0.5


def test_run_quantize_ptq_writes_atomically_with_dump(fake_vq, data_run, monkeypatch):
    from click.testing import CliRunner

    import vitis.tools
    from keras_flm.cli import cli

    monkeypatch.setattr(vitis.tools, "load_vai_q", lambda command="": fake_vq.vitis_quantize)
    r = CliRunner().invoke(cli, ["vitis", "quantize", "--run", str(data_run), "--mode", "ptq", "--calib", "6",
                                 "--no-cle", "--dump"])
    assert r.exit_code == 0, r.output
    out = data_run / "vitis_ptq.h5"
    model = get_keras().models.load_model(str(out), compile=False)
    assert model.output_shape == (None, 196)
    rec = json.loads((data_run / "vitis" / "quantize_ptq.json").read_text())
    assert rec["strategy"] == "pof2s" and rec["calib_images"] == 6 and rec["config"]["include_cle"] is False
    from vitis.files import md5_file

    assert rec["output_md5"] == md5_file(str(out))
    dump = data_run / "vitis" / "dump_ptq"
    assert (dump / "input.npy").is_file() and len(list(dump.glob("*_fix*.bin"))) > 50
    assert np.load(str(dump / "input.npy")).shape == (1, 112, 112, 1)
    assert not [p for p in os.listdir(data_run) if p.startswith(".flm-tmp")]


def test_failed_quantize_leaves_nothing(fake_vq, data_run, monkeypatch):
    from vitis.commands import run_quantize

    def boom(*a, **k):
        raise RuntimeError("quantizer crashed")

    monkeypatch.setattr(fake_vq.VitisQuantizer, "quantize_model", boom)
    before = sorted(os.listdir(data_run))
    with pytest.raises(RuntimeError, match="quantizer crashed"):
        run_quantize(fake_vq.vitis_quantize, str(data_run), "ptq", VitisConfig(calib_size=4), None)
    assert sorted(os.listdir(data_run)) == before


@pytest.mark.slow
def test_qat_trains_packed_model_and_keeps_landmarks(fake_vq, data_run, tmp_path, monkeypatch):
    from vitis.commands import run_quantize

    monkeypatch.setenv("FLM_CACHE_DIR", str(tmp_path / "cache"))
    cfg = VitisConfig(calib_size=4, qat_epochs=1, qat_batch_size=4, qat_max_images=24, qat_steps_per_epoch=1,
                      freeze_bn_delay=5)
    rec = run_quantize(fake_vq.vitis_quantize, str(data_run), "qat", cfg, "DPUCZDX8G_ISA1_B4096")
    names = [c[0] for c in fake_vq.calls]
    assert names == ["__init__", "get_qat_model", "get_deploy_model"]
    assert fake_vq.calls[0][1]["quantize_strategy"] == "8bit_tqt"
    assert fake_vq.calls[1][1] == {"init_quant": True, "include_cle": True, "freeze_bn_delay": 5,
                                   "ignore_layers": ["packed"]}
    assert rec["strategy"] == "8bit_tqt" and len(rec["history"]["loss"]) == 1
    assert np.isfinite(rec["history"]["loss"][0]) and "val_loss" in rec["history"]
    model = get_keras().models.load_model(str(data_run / "vitis_qat.h5"), compile=False)
    assert model.output_shape == (None, 196)  # the pose head is gone
    assert not any(layer.name.startswith("aux") for layer in model.layers)


def test_find_layer_accepts_quantize_wrappers():
    from types import SimpleNamespace

    from vitis.quantize import find_layer

    inner = SimpleNamespace(name="landmarks")
    wrapped = SimpleNamespace(name="quant_landmarks", layer=inner)
    model = SimpleNamespace(name="m", layers=[SimpleNamespace(name="x"), wrapped])
    assert find_layer(model, "landmarks") is wrapped
    with pytest.raises(ValueError, match="not found"):
        find_layer(model, "euler")
