"""The real vai_q_tensorflow2 3.5 (host build, `make vai-q`) through `flm vitis quantize`.

PTQ and QAT of a tiny trained model run in the quantizer's own venv; the saved H5 reloads
under quantize_scope() there with the fix positions exported to quantize_info_MODE.json; and
the stand-ins kept for the docker-only tools (fakes/vai_c.py, fakes/vai_inspect.py) are
checked against what the real quantizer produces.
"""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from keras_flm.cli import cli
from tests.quant.conftest import quant_run  # noqa: F401 - the same tiny trained run as the quant tests

from .conftest import FAKES, make_run

#: Runs in the quantizer's venv: reload an H5 under quantize_scope, export its quantize info and
#: layer structure, and ask the real Inspector for a target-less inspection (which it refuses).
PROBE = r"""
import json, sys
import numpy as np
from tensorflow import keras
from tensorflow_model_optimization.quantization.keras import vitis_inspect, vitis_quantize
from vitis.quantize import load_float_model, quantize_info
h5, fp32, sample, out = sys.argv[1:5]
with vitis_quantize.quantize_scope():
    q = keras.models.load_model(h5, compile=False)
x = np.load(sample)
try:
    vitis_inspect.VitisInspector().inspect_model(load_float_model(fp32), input_shape=[1, 112, 112, 1],
                                                 verbose=0, dump_results=False)
    inspect = "ran"
except Exception as e:
    inspect = "%s: %s" % (type(e).__name__, e)
json.dump({"positions": quantize_info(vitis_quantize, q)["positions"],
           "layers": [[l.name, type(l).__name__, type(getattr(l, "layer", l)).__name__] for l in q.layers],
           "pred": q.predict(x, verbose=0).tolist(), "inspect": inspect}, open(out, "w"))
"""


@pytest.fixture(scope="module")
def trained_run(quant_run):  # noqa: F811 - the fixture imported above
    """The quant tests' briefly trained width-0.25 run on 72 real faces (config.json, fp32.h5, train.h5)."""
    return quant_run


def _quantize(run, *args):
    r = CliRunner().invoke(cli, ["vitis", "quantize", "--run", run] + list(args))
    return r


@pytest.fixture(scope="module")
def ptq_run(vai_q_host, trained_run):
    r = _quantize(trained_run, "--mode", "ptq", "--calib", "24", "--dump")
    assert r.exit_code == 0, r.output
    return trained_run


@pytest.fixture(scope="module")
def probe(vai_q_host, ptq_run, tmp_path_factory):
    from runtime.preprocess import normalize_input
    from vitis import vai_q_env
    from vitis.calibration import calibration_crops

    d = tmp_path_factory.mktemp("probe")
    np.save(str(d / "x.npy"), normalize_input(calibration_crops(ptq_run, 4, seed=5)))
    rc = vai_q_env.run_python(vai_q_host, ["-c", PROBE, os.path.join(ptq_run, "vitis_ptq.h5"),
                                           os.path.join(ptq_run, "fp32.h5"), str(d / "x.npy"),
                                           str(d / "p.json")])
    assert rc == 0
    return json.loads((d / "p.json").read_text())


def _json(run, rel):
    with open(os.path.join(run, rel)) as f:
        return json.load(f)


def test_host_ptq_writes_model_record_and_fix_positions(ptq_run):
    from keras_flm.keras_compat import get_keras
    from vitis.files import md5_file

    rec = _json(ptq_run, "vitis/quantize_ptq.json")
    assert rec["strategy"] == "pof2s" and rec["calib_images"] == 24 and rec["config"]["include_cle"] is True
    assert rec["quantizer"]["host_build"] is True and rec["quantizer"]["version"] == "3.5.0"
    assert rec["versions"]["tensorflow"] == "2.12.0"
    assert rec["target"] is None and "target_factory" in rec["target_note"]  # no xcompiler off the docker
    assert rec["reload_max_abs_diff"] == 0.0  # the H5 reloaded under quantize_scope() == in-memory model
    assert rec["output_md5"] == md5_file(os.path.join(ptq_run, "vitis_ptq.h5"))
    assert rec["output_offset"] == 0.5  # the head emits landmarks - the crop centre (VitisConfig)
    info = _json(ptq_run, rec["quantize_info"])
    pos = info["positions"]
    assert info["tensors"] == rec["fix_positions"] == sum(len(v) for v in pos.values())
    # every conv of the float model has int8 weights and bias; the input is exactly u8 - 128 (position 7)
    float_model = get_keras().models.load_model(os.path.join(ptq_run, "fp32.h5"), compile=False)
    convs = [layer.name for layer in float_model.layers
             if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D")]
    assert convs and all(set(pos[c]) >= {"kernel", "bias"} for c in convs)
    assert pos["quant_image"] == {"output": 7}
    assert all(isinstance(p, int) and -8 <= p <= 31 for d in pos.values() for p in d.values())
    assert info["ranges"]["quant_image"]["output"] == [-1.0, 127 / 128]
    dump = os.path.join(ptq_run, "vitis", "dump_ptq")
    dumped = [f for _, _, files in os.walk(dump) for f in files]
    assert os.path.isfile(os.path.join(dump, "input.npy")) and sum(f.endswith(".bin") for f in dumped) > 50
    assert not [p for p in os.listdir(ptq_run) if p.startswith(".flm-tmp")]


def test_saved_h5_reloads_with_the_exported_positions(ptq_run, probe):
    assert probe["positions"] == _json(ptq_run, "vitis/quantize_info_ptq.json")["positions"]
    pred = np.asarray(probe["pred"])
    assert pred.shape == (4, 196) and np.isfinite(pred).all()
    # pof2 outputs: every landmark is an int8 multiple of 2^-position of the output tensor
    out_pos = probe["positions"]["fc"]["output"]
    q = pred * 2.0 ** out_pos
    np.testing.assert_allclose(q, np.round(q), atol=1e-3)
    # ... of landmarks minus the crop centre: the float model's landmarks, 0.5 lower
    from keras_flm.keras_compat import get_keras
    from runtime.preprocess import normalize_input
    from vitis.calibration import calibration_crops

    fp32 = get_keras().models.load_model(os.path.join(ptq_run, "fp32.h5"), compile=False)
    ref = fp32.predict(normalize_input(calibration_crops(ptq_run, 4, seed=5)), verbose=0)
    assert np.abs(pred + 0.5 - ref).mean() < 0.02 < np.abs(pred - ref).mean()


def test_stand_in_compiler_reads_the_real_quantized_h5(ptq_run, probe):
    """fakes/vai_c.py parses vai_q's real H5 as vai_q writes it: InputLayer, VitisQuantize, then one
    QuantizeWrapper per float layer (BatchNorm folded away), named quant_<float name>."""
    import importlib.util

    from keras_flm.keras_compat import get_keras
    from vitis.compile import compile_model, resolve_arch

    from .test_compile import _runner_from_fake

    spec = importlib.util.spec_from_file_location("fake_vai_c", str(FAKES / "vai_c.py"))
    vai_c = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vai_c)
    h5 = os.path.join(ptq_run, "vitis_ptq.h5")
    real = probe["layers"]
    assert [r[1] for r in real[:2]] == ["InputLayer", "VitisQuantize"] and real[1][0] == "quant_image"
    assert {r[1] for r in real[2:]} <= vai_c.WRAPPERS
    assert set(vai_c.INPUT_CLASSES) == {"InputLayer", "VitisQuantize"}
    float_model = get_keras().models.load_model(os.path.join(ptq_run, "fp32.h5"), compile=False)
    kept = [(layer.name, type(layer).__name__) for layer in float_model.layers
            if type(layer).__name__ not in ("InputLayer", "BatchNormalization")]
    # vai_q swaps in its DPU versions of some layers (GlobalAveragePooling2D -> VitisGlobalAveragePooling2D)
    unvitis = [(r[0], r[2][len("Vitis"):] if r[2].startswith("Vitis") else r[2]) for r in real[2:]]
    assert unvitis == [("quant_" + n, c) for n, c in kept]
    parsed = vai_c.layer_classes(h5)
    assert [c for c, _ in parsed] == ["InputLayer", "VitisQuantize"] + [r[2] for r in real[2:]]
    assert vai_c.count_dpu_subgraphs(parsed) == 1
    rec = compile_model(ptq_run, "vitis_ptq", resolve_arch(), runner=_runner_from_fake())
    assert rec["dpu_subgraphs"] == 1


def test_the_inspector_needs_a_target_so_its_stand_in_stays(probe):
    """vai_q 3.5's Inspector refuses to run without a target, and a target needs target_factory and
    xcompiler (docker-only): hence fakes/vai_inspect.py."""
    assert "Invalid_Target" in probe["inspect"] and "without specific `target`" in probe["inspect"]


def test_host_qat_writes_the_landmark_deploy_model(vai_q_host, trained_run, tmp_path, monkeypatch):
    monkeypatch.setenv("FLM_CACHE_DIR", str(tmp_path / "crops"))
    r = _quantize(trained_run, "--mode", "qat", "--calib", "16", "--epochs", "1", "--max-images", "24",
                  "--steps-per-epoch", "1", "--batch-size", "8", "--no-cle")
    assert r.exit_code == 0, r.output
    rec = _json(trained_run, "vitis/quantize_qat.json")
    assert rec["strategy"] == "8bit_tqt" and rec["reload_max_abs_diff"] == 0.0
    assert len(rec["history"]["loss"]) == 1 and np.isfinite(rec["history"]["loss"][0])
    pos = _json(trained_run, "vitis/quantize_info_qat.json")["positions"]
    assert pos["quant_image"] == {"output": 7} and "fc" in pos
    assert not any(name.startswith("aux") or name == "packed" for name in pos)  # the pose head is gone
    import h5py

    with h5py.File(os.path.join(trained_run, "vitis_qat.h5"), "r") as f:
        config = json.loads(f.attrs["model_config"])
    names = [layer["config"]["name"] for layer in config["config"]["layers"]]
    assert names[-1] == "quant_landmarks" and not any("aux" in n for n in names)


def test_no_trained_model_fails_before_starting_the_quantizer(vai_q_host, tmp_path, model_files):
    run = make_run(tmp_path / "r", model_files)
    os.remove(str(run / "fp32.h5"))
    r = _quantize(str(run), "--mode", "ptq")
    assert r.exit_code == 1 and "fp32.h5 not found" in r.output and "flm train" in r.output
    assert "running in the host build" not in r.output
    os.remove(str(run / "train.h5"))
    r = _quantize(str(run), "--mode", "qat")
    assert r.exit_code == 1 and "no training model" in r.output


def test_too_few_calibration_faces(vai_q_host, trained_run, capfd):
    before = _json(trained_run, "vitis/quantize_ptq.json") if os.path.exists(
        os.path.join(trained_run, "vitis", "quantize_ptq.json")) else None
    r = _quantize(trained_run, "--mode", "ptq", "--calib", "5000")
    err = capfd.readouterr().err
    assert r.exit_code == 1
    assert "asked for 5000 calibration images" in err and "pass --calib" in err, err[-2000:]
    after = _json(trained_run, "vitis/quantize_ptq.json") if before else None
    assert after == before  # nothing rewritten
