"""vai_q drivers without the quantizer: calibration data, quantize_info parsing, target handling,
atomic outputs. The real quantizer runs in test_vai_q_host.py."""
import json
import os

import numpy as np
import pytest

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


def _extra_root(path, faces98, n: int):
    """A WFLW-layout root whose train list is the first `n` test faces of faces98 (images linked)."""
    from runtime.wflw import ANNOTATION_DIR, IMAGE_DIR, LIST_NAME

    (path / ANNOTATION_DIR).mkdir(parents=True)
    lines = (faces98 / ANNOTATION_DIR / (LIST_NAME % "test")).read_text().splitlines()[:n]
    (path / ANNOTATION_DIR / (LIST_NAME % "train")).write_text("\n".join(lines) + "\n")
    (path / IMAGE_DIR).symlink_to(faces98 / IMAGE_DIR)
    return path


def test_calibration_draws_the_extra_training_roots_too(data_run, faces98, tmp_path, capsys):
    """The run's --extra-train faces are calibration faces in both flows; a root missing here is named."""
    import click

    from keras_flm.config import RunConfig
    from quant.calibration import calibration_set, split_records
    from vitis.calibration import crops_from_root

    alone = calibration_set(str(data_run), 200, seed=3)[0]
    cfg = RunConfig.load(str(data_run / "config.json"))
    extra = _extra_root(tmp_path / "extra", faces98, 30)
    cfg.train.extra_train = (str(extra),)
    cfg.save(str(data_run / "config.json"))
    crops, sources = calibration_set(str(data_run), 200, seed=3)
    assert sources == {"calib_extra_roots": [str(extra)], "calib_extra_missing": []}
    assert not np.array_equal(crops, alone)
    np.testing.assert_array_equal(crops_from_root(str(faces98), cfg, 200, seed=3), crops)
    pool = len(split_records(str(data_run), "train")) + 30
    with pytest.raises(click.ClickException, match=r"faces98 \+ .*extra have only %d" % pool):
        calibration_set(str(data_run), pool + 1)
    cfg.train.extra_train = (str(extra), str(tmp_path / "gone"))
    cfg.save(str(data_run / "config.json"))
    again, sources = calibration_set(str(data_run), 200, seed=3)
    np.testing.assert_array_equal(again, crops)
    assert sources["calib_extra_missing"] == [str(tmp_path / "gone")]
    assert "--extra-train root %s is not here" % (tmp_path / "gone") in capsys.readouterr().err
    # vai_q's helper too
    np.testing.assert_array_equal(crops_from_root(str(faces98), cfg, 200, seed=3), crops)
    assert "--extra-train root %s is not here" % (tmp_path / "gone") in capsys.readouterr().err


def test_missing_data_root_names_the_fix(run_dir):
    from keras_flm.config import RunConfig
    from vitis.calibration import calibration_crops

    cfg = RunConfig.load(str(run_dir / "config.json"))
    cfg.data = {"root": "/host/only/path"}
    cfg.save(str(run_dir / "config.json"))
    with pytest.raises(ValueError, match="does not exist here: pass --data ROOT"):
        calibration_crops(str(run_dir), 4)


class _Crashing:
    """An error injector (not a quantizer stand-in): VitisQuantizer whose quantize_model raises."""

    target_factory = None

    class VitisQuantizer:
        def __init__(self, *a, **k):
            pass

        def quantize_model(self, *a, **k):
            raise RuntimeError("quantizer crashed")


def test_failed_quantize_leaves_nothing(data_run):
    from vitis.commands import run_quantize

    before = sorted(os.listdir(data_run))
    with pytest.raises(RuntimeError, match="quantizer crashed"):
        run_quantize(_Crashing, str(data_run), "ptq", VitisConfig(calib_size=4), "DPUCZDX8G_ISA1_B4096")
    assert sorted(os.listdir(data_run)) == before


#: model_utils.get_quantize_info of a real vai_q 3.5 pof2s model (abridged: values as vai_q stores them).
REAL_INFO = {
    "quant_image": {"type": "input", "info": {"min_var": -1.0, "max_var": 0.9921875,
                                              "quant_pos_var": np.float32(7.0)}},
    "stem_conv": {"stem_conv/kernel:0": {"type": "weight", "info": {"min_var": -0.23, "max_var": 0.22,
                                                                    "quant_pos_var": np.float32(9.0)}},
                  "stem_conv/bias:0": {"type": "weight", "info": {"min_var": -0.5, "max_var": 0.4,
                                                                  "quant_pos_var": np.float32(8.0)}},
                  "NoQuantizeActivation": {}},
    "stem_relu": {"output_0": {"type": "output", "info": {"min_var": -1.0, "max_var": 1.0,
                                                          "quant_pos_var": np.float32(7.0)}}},
    "fc": {"fc/kernel:0": {"type": "weight", "info": {"quant_pos_var": 9.0}},
           "linear": {"type": "post_activation", "info": {"quant_pos_var": 6.0}}},
    "landmarks": {},
}


def test_quantize_info_is_parsed_per_tensor():
    from types import SimpleNamespace

    from vitis.quantize import parse_quantize_info, quantize_info

    pos = parse_quantize_info(REAL_INFO)
    assert pos == {"quant_image": {"output": 7}, "stem_conv": {"kernel": 9, "bias": 8},
                   "stem_relu": {"output": 7}, "fc": {"kernel": 9, "output": 6}}
    assert all(isinstance(v, int) for d in pos.values() for v in d.values())
    vq = SimpleNamespace(model_utils=SimpleNamespace(get_quantize_info=lambda model: REAL_INFO))
    info = quantize_info(vq, None)
    assert info["positions"] == pos and info["tensors"] == 6
    assert info["ranges"]["quant_image"]["output"] == [-1.0, 0.9921875]
    json.dumps(info, allow_nan=False)  # JSON-able as written to quantize_info_MODE.json


def test_a_build_without_target_factory_quantizes_without_target():
    from types import SimpleNamespace

    from vitis.quantize import usable_target

    target, note = usable_target(SimpleNamespace(target_factory=None), "DPUCZDX8G_ISA1_B4096")
    assert target is None and "target_factory" in note and "docker" in note
    assert usable_target(SimpleNamespace(target_factory=object()), "DPUCZDX8G_ISA1_B4096") == (
        "DPUCZDX8G_ISA1_B4096", None)
    assert usable_target(SimpleNamespace(target_factory=None), None) == (None, None)


def test_find_layer_accepts_quantize_wrappers():
    from types import SimpleNamespace

    from vitis.quantize import find_layer

    inner = SimpleNamespace(name="landmarks")
    wrapped = SimpleNamespace(name="quant_landmarks", layer=inner)
    model = SimpleNamespace(name="m", layers=[SimpleNamespace(name="x"), wrapped])
    assert find_layer(model, "landmarks") is wrapped
    with pytest.raises(ValueError, match="not found"):
        find_layer(model, "euler")
