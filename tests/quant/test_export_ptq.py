"""FP32 exports and PTQ on a briefly trained tiny run (real faces98 crops).

Tolerances:
  * FP32 exports: 1e-4 crop-normalised (0.011 px): float32 re-association only.
  * INT8 artifacts are checked three ways: (1) the file holds int8 weights; (2) the TFLite
    INT8 file computes what its own fake-quant Keras model computes, within 2 output LSB on
    average (both round the same integers; ties round differently); (3) quantization adds
    at most 2 NME points on the test faces — on this barely trained model (NME ~20-30 %)
    the calibrated INT8 model stays close; broken ranges (e.g. TFMOT's +-6 defaults or
    unfolded BN) cost tens of points.
"""
import json
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from quant import flows  # noqa: E402
from quant import run as R  # noqa: E402
from quant.config import ExportConfig, PtqConfig  # noqa: E402


def _log(msg):
    print(msg)


@pytest.fixture(scope="module")
def ptq_done(quant_run):
    pcfg = PtqConfig(calib_images=32, also_other_granularity=False)
    # a comparison file left by an earlier quantization (this PTQ writes none): it must not survive
    with open(os.path.join(quant_run, "ptq_int8_pc.onnx"), "wb") as f:
        f.write(b"left by an earlier PTQ")
    out = flows.ptq(quant_run, pcfg, ExportConfig(parity_crops=16), "default", onnx=True, evaluate=False,
                    log=_log)
    return quant_run, out["fake_quant"]["ptq_int8.tflite"]


def test_fp32_tflite_and_onnx_exports_match_keras(quant_run):
    xcfg = ExportConfig(parity_crops=16)
    t = flows.export_tflite(quant_run, xcfg, _log)
    o = flows.export_onnx(quant_run, xcfg, _log)
    for out in (t, o):
        assert out["parity"]["ok"] and out["parity"]["max_abs_diff"] < 1e-4
        assert out["parity"]["crops"] == 16
    parity = json.load(open(os.path.join(quant_run, "parity.json")))
    assert parity["fp32_tflite"]["max_abs_diff"] < 1e-4 and parity["fp32_onnx"]["max_abs_diff"] < 1e-4

    import onnx

    m = onnx.load(os.path.join(quant_run, "fp32.onnx"))
    assert m.opset_import[0].version == xcfg.onnx_opset
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    # BN folded into the convs before conversion: ORT must never quantize a conv's raw pre-BN output
    # (tf2onnx put a Reshape between the 7x7 S3 conv and its BN, and ORT PTQ then lost 14 pp)
    assert not [n for n in m.graph.node if n.op_type == "BatchNormalization"]
    from runtime.backends import load_backend

    crops = np.random.default_rng(0).integers(0, 256, (3, 112, 112), dtype=np.uint8)
    be = load_backend(os.path.join(quant_run, "fp32.onnx"))
    assert be.infer(crops).shape == (3, 98, 2) and be.infer(crops[:1]).shape == (1, 98, 2)


def test_ptq_tflite_holds_int8_weights_and_int8_io(ptq_done):
    from quant.inspect_model import tflite_summary, tflite_tensors

    run, _ = ptq_done
    path = os.path.join(run, "ptq_int8.tflite")
    s = tflite_summary(path)
    by = s["constant_bytes_by_dtype"]
    assert by.get("float32", 0) == 0, by  # full integer: no float constants left
    assert by["int8"] > 0.8 * sum(by.values())  # weights int8, biases int32
    weights = [t for t in tflite_tensors(path) if t["constant"] and len(t["shape"]) == 4]
    assert weights and all(t["dtype"] == "int8" for t in weights)
    assert all(len(t["scales"]) == 1 for t in weights)  # per-tensor (the size budget)
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=path)
    assert it.get_input_details()[0]["dtype"] == np.int8 and it.get_output_details()[0]["dtype"] == np.int8
    scale, zero = it.get_input_details()[0]["quantization"]
    assert scale == 1 / 128 and zero == 0  # int8 input = u8 - 128: the crop is fed losslessly
    fp32_size = os.path.getsize(os.path.join(run, "fp32.h5"))
    assert os.path.getsize(path) < 0.4 * fp32_size


def test_ptq_tflite_computes_what_its_fake_quant_model_computes(ptq_done):
    from quant.calibration import sample_crops
    from quant.export import keras_predict
    from runtime.backends import load_backend

    run, qmodel = ptq_done
    cfg = R.load_config(run)
    crops = sample_crops(run, "test", 16)
    be = load_backend(os.path.join(run, "ptq_int8.tflite"))
    lsb = be.out_scale if hasattr(be, "out_scale") else 1.0 / 255
    d = np.abs(be.infer(crops) - keras_predict(qmodel, crops, cfg.crop))
    assert d.mean() <= 2 * lsb, (d.mean(), lsb)


def test_ptq_int8_accuracy_close_to_fp32(ptq_done):
    from keras_flm import evaluate as kev

    run, _ = ptq_done
    cfg = R.load_config(run)
    records, _ = kev.load_split(cfg.data["root"], "test", cfg)
    nme = {f: kev.evaluate_model(os.path.join(run, f), records, spec=cfg.crop)["metrics"]["nme"]
           for f in ("fp32.h5", "ptq_int8.tflite", "ptq_int8.onnx")}
    for f in ("ptq_int8.tflite", "ptq_int8.onnx"):
        assert nme[f] - nme["fp32.h5"] < 0.02, nme


def test_ptq_records_settings_time_and_parity(ptq_done):
    run, _ = ptq_done
    q = json.load(open(os.path.join(run, "quant.json")))
    for key in ("ptq_int8", "ptq_int8_onnx"):
        e = q[key]
        assert e["calib_images"] == 32 and e["wall_s"] > 0 and e["bytes"] == os.path.getsize(
            os.path.join(run, e["file"]))
    assert q["ptq_int8"]["granularity"] == "per-tensor" and "MIN_MSE" in q["ptq_int8"]["calibration"]
    assert q["ptq_int8"]["range_search_s"] > 0
    assert "ranges given for" in q["ptq_int8_onnx"]["calibration"]
    # ptq_int8.onnx's 7-bit weights are per output channel (PtqConfig.onnx_granularity), and the
    # record says what the file holds; no comparison variant was asked for, and the earlier one is gone
    from quant.inspect_model import onnx_weight_granularity

    assert q["ptq_int8_onnx"]["granularity"] == "per-channel" == PtqConfig().onnx_granularity
    assert onnx_weight_granularity(os.path.join(run, "ptq_int8.onnx")) == "per-channel"
    assert onnx_weight_granularity(os.path.join(run, "fp32.onnx")) is None
    assert not [f for f in os.listdir(run) if f.startswith(("ptq_int8_pt", "ptq_int8_pc"))]
    p = json.load(open(os.path.join(run, "parity.json")))
    assert "kernel_vs_qdq_float_max_abs_diff" in p["ptq_int8_onnx"]


def test_ort_ptq_quantizes_activations_on_the_tflite_ptq_grids(ptq_done):
    """ORT is given the TFLite PTQ's ranges (quant.onnx_ranges): every activation QuantizeLinear
    of ptq_int8.onnx uses a (scale, zero point) of ptq_int8.tflite (uint8 zero point = int8 + 128)
    -- with its own percentile calibration, ORT's grids matched none of them."""
    from tests.quant.grids import onnx_activation_grids, tflite_activation_grids

    run, _ = ptq_done
    ort = onnx_activation_grids(os.path.join(run, "ptq_int8.onnx"))
    tfl = tflite_activation_grids(os.path.join(run, "ptq_int8.tflite"))
    assert len(ort) >= 5 and ort <= tfl, sorted(ort - tfl)


def test_granularity_variants_name_the_comparison_file_by_its_granularity():
    from quant.config import granularity_variants

    assert granularity_variants("ptq_int8.onnx", "per-channel", True) == [
        ("per-channel", "ptq_int8.onnx"), ("per-tensor", "ptq_int8_pt.onnx")]
    assert granularity_variants("ptq_int8.tflite", "per-tensor", True) == [
        ("per-tensor", "ptq_int8.tflite"), ("per-channel", "ptq_int8_pc.tflite")]
    assert granularity_variants("ptq_int8.onnx", "per-tensor", False) == [("per-tensor", "ptq_int8.onnx")]
    with pytest.raises(ValueError, match="per-row.*per-tensor, per-channel"):
        granularity_variants("ptq_int8.onnx", "per-row", True)
