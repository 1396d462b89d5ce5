"""Clear errors, non-zero exit, nothing half-written: no run, no model, too few calibration images."""
import json
import os

import pytest
from click.testing import CliRunner

from keras_flm.cli import cli


def _run_dir(tmp_path, root, max_images=None, fp32=True, train_h5=False):
    from keras_flm.config import RunConfig

    cfg = RunConfig()
    cfg.data = {"root": str(root)}
    cfg.train.max_images = max_images
    run = tmp_path / "run"
    run.mkdir()
    cfg.save(str(run / "config.json"))
    if fp32:
        (run / "fp32.h5").write_bytes(b"not read before the inputs are checked")
    if train_h5:
        (run / "train.h5").write_bytes(b"x")
    return run


def _invoke(*args):
    return CliRunner().invoke(cli, list(args))


def test_missing_run_directory(tmp_path):
    r = _invoke("quantize", "ptq", "--run", str(tmp_path / "nope"))
    assert r.exit_code != 0 and "run directory not found" in r.output and "nope" in r.output


def test_no_trained_model_names_the_missing_file(tmp_path, faces98):
    run = _run_dir(tmp_path, faces98, fp32=False)
    for args in (("quantize", "ptq"), ("quantize", "qat"), ("export", "onnx"), ("export", "tflite")):
        r = _invoke(*args, "--run", str(run))
        assert r.exit_code != 0, args
        assert "fp32.h5" in r.output and "flm train" in r.output, (args, r.output)
    assert sorted(os.listdir(run)) == ["config.json"]  # nothing written


def test_qat_needs_the_training_model_with_the_pose_head(tmp_path, faces98):
    run = _run_dir(tmp_path, faces98)
    r = _invoke("quantize", "qat", "--run", str(run))
    assert r.exit_code != 0 and "train.h5" in r.output


def test_fewer_calibration_images_than_asked(tmp_path, faces98):
    run = _run_dir(tmp_path, faces98, max_images=20)  # 18 training faces after the 10 % validation split
    r = _invoke("quantize", "ptq", "--run", str(run), "--calib", "50", "--no-eval")
    assert r.exit_code != 0
    assert "asked for 50 calibration images" in r.output
    assert "only 18" in r.output and "--calib 18" in r.output
    assert sorted(os.listdir(run)) == ["config.json", "fp32.h5"]


def test_run_config_without_data_root(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": {"width": 0.25}}))
    (run / "fp32.h5").write_bytes(b"x")
    r = _invoke("quantize", "ptq", "--run", str(run), "--calib", "4")
    assert r.exit_code != 0 and "data root" in r.output


def test_commands_do_not_import_tensorflow_at_module_level():
    import subprocess
    import sys

    code = "import sys, quant.commands; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("args", [("quantize", "ptq", "--help"), ("quantize", "qat", "--help"),
                                  ("export", "onnx", "--help"), ("report", "--help")])
def test_help(args):
    r = _invoke(*args)
    assert r.exit_code == 0 and "--run" in r.output


def test_ptq_onnx_granularity_is_an_option_with_the_config_default():
    from quant.config import PtqConfig

    r = _invoke("quantize", "ptq", "--help")
    assert "--onnx-granularity" in r.output and PtqConfig.onnx_granularity == "per-channel"
    r = _invoke("quantize", "ptq", "--run", "x", "--onnx-granularity", "per-row")
    assert r.exit_code != 0 and "per-row" in r.output
