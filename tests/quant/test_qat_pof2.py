"""QAT end to end (a couple of steps) and the pof2 PTQ artifact, on the tiny trained run."""
import json
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from quant import flows  # noqa: E402
from quant.config import ExportConfig, PtqConfig, QatConfig  # noqa: E402
from quant.inspect_model import is_power_of_two, tflite_tensors  # noqa: E402


@pytest.mark.slow
def test_qat_fine_tunes_and_exports_the_landmark_model_only(quant_run):
    qcfg = QatConfig(epochs=1, steps_per_epoch=2, batch_size=16, calib_images=16, patience=1)
    out = flows.qat(quant_run, qcfg, PtqConfig(io="float"), ExportConfig(parity_crops=8), "default",
                    onnx=True, evaluate=False, log=print)
    hist = out["history"]
    assert len(hist["val_nme"]) == 2 and hist["best_val_nme"] == min(hist["val_nme"])
    tfl = os.path.join(quant_run, "qat_int8.tflite")
    tensors = tflite_tensors(tfl)
    assert not [t["name"] for t in tensors if "aux" in t["name"] or "euler" in t["name"]]
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=tfl)
    outs = it.get_output_details()
    assert len(outs) == 1 and list(outs[0]["shape"]) == [1, 196]
    assert it.get_input_details()[0]["dtype"] == np.float32 and outs[0]["dtype"] == np.float32  # --io float
    assert all(t["dtype"] == "int8" for t in tensors if t["constant"] and len(t["shape"]) == 4)
    q = json.load(open(os.path.join(quant_run, "quant.json")))
    assert q["qat_int8"]["method"] == "qat" and q["qat_int8"]["epochs_run"] == 1
    p = json.load(open(os.path.join(quant_run, "parity.json")))
    # ORT re-quantizes the QAT weights (7-bit U8S8, its fast kernels) on the ranges the QAT learned
    assert p["qat_int8_onnx"]["vs_tflite_max_abs_diff"] < 0.05
    assert p["qat_int8_onnx"]["kernel_vs_qdq_float_max_abs_diff"] < 0.01
    from tests.quant.grids import onnx_activation_grids, onnx_weight_types, tflite_activation_grids

    onx = os.path.join(quant_run, "qat_int8.onnx")
    weight_types = onnx_weight_types(onx)
    assert "int8" in weight_types and "uint8" not in weight_types
    ort, tfl_grids = onnx_activation_grids(onx), tflite_activation_grids(tfl)
    assert len(ort) >= 5 and ort <= tfl_grids, sorted(ort - tfl_grids)
    assert "learned by QAT" in q["qat_int8_onnx"]["calibration"]
    # its 7-bit weights per output channel (QatConfig.onnx_per_channel): each conv kernel's
    # DequantizeLinear has one scale per output channel
    assert q["qat_int8_onnx"]["granularity"] == "per-channel"
    import onnx
    from onnx import numpy_helper

    g = onnx.load(onx).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    kernels = [n for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
               and inits[n.input[0]].ndim == 4]
    assert len(kernels) > 10
    assert all(inits[n.input[1]].size == inits[n.input[0]].shape[0] for n in kernels)
    assert sum(inits[n.input[1]].size > 1 for n in kernels) == len(kernels)
    from keras_flm.keras_compat import get_keras

    folded = get_keras().models.load_model(os.path.join(quant_run, "qat_int8_float.h5"), compile=False)
    assert folded.output_shape == (None, 196)
    assert not [layer for layer in folded.layers if type(layer).__name__ == "BatchNormalization"]


@pytest.mark.slow
def test_pof2_ptq_artifact_has_power_of_two_scales_and_a_dpu_emulation(quant_run):
    flows.ptq(quant_run, PtqConfig(calib_images=16), ExportConfig(parity_crops=8), "pof2", onnx=False,
              evaluate=True, log=print)
    tensors = tflite_tensors(os.path.join(quant_run, "ptq_pof2.tflite"))
    int8 = [t for t in tensors if t["dtype"] == "int8" and t["shape"]]
    assert len(int8) > 50
    # the only other int8 tensors: scalar constants of the DPU average-pooling gain (a TFLite MUL)
    others = [t for t in tensors if t["dtype"] == "int8" and not t["shape"]]
    assert all(t["constant"] for t in others)
    q = json.load(open(os.path.join(quant_run, "quant.json")))["ptq_pof2"]
    offset, head_pos = q["output_offset"], q["activation_positions"]["fc"]
    assert offset == PtqConfig().pof2_output_offset == 0.5
    for t in int8:
        assert len(t["scales"]) == 1 and is_power_of_two(t["scales"][0]), t["name"]
        if "output_offset" not in t["name"]:
            assert t["zero_points"] == [0], t["name"]  # symmetric
    # the head emits landmarks - 0.5 on its symmetric grid; the output adds 0.5 back: the same step, the
    # zero point moved by exactly offset / step codes, so no landmark value is rounded twice
    out = [t for t in int8 if "output_offset" in t["name"]]
    assert len(out) == 1 and out[0]["scales"] == [2.0 ** -head_pos]
    assert out[0]["zero_points"] == [-int(offset * 2 ** head_pos)]
    biases = [t for t in tensors if t["dtype"] == "int32" and t["constant"] and t["scales"]]
    assert biases and all(is_power_of_two(t["scales"][0]) for t in biases)
    m = json.load(open(os.path.join(quant_run, "metrics.json")))
    assert np.isfinite(m["ptq_pof2_dpu"]["nme"])
    assert m["ptq_pof2_dpu"]["source"]["backend"] == "keras-fakequant"
    assert np.isfinite(m["ptq_pof2"]["nme"])


def test_qat_augment_is_the_runs_recipe_or_a_named_preset(tmp_path):
    from click.testing import CliRunner

    from keras_flm.cli import cli
    from keras_flm.config import RunConfig, augment_preset
    from quant.qat import qat_augment

    cfg = RunConfig(augment=augment_preset("turn"))
    assert qat_augment(cfg, QatConfig(augment="run")) == augment_preset("turn")
    assert qat_augment(cfg, QatConfig(augment="light")) == augment_preset("light")
    res = CliRunner().invoke(cli, ["quantize", "qat", "--run", str(tmp_path), "--augment", "heavy"])
    assert res.exit_code == 2 and "run" in res.output and "light" in res.output
