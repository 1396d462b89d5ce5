"""quant.onnx_ranges: Keras ranges reach the right ONNX tensors, concat inputs and the input share theirs.

The graph-walking rules are checked on hand-built ONNX graphs; the value matching on the
tiny trained run's own export (and refused for a model it is not the export of)."""
import os
import re

import numpy as np
import pytest
from onnx import TensorProto, helper

from quant.onnx_ranges import range_overrides, share_concat_ranges, share_input_range


def _save(tmp_path, nodes, name="g.onnx"):
    import onnx

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    path = str(tmp_path / name)
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y])), path)
    return path


def _given(lo, hi):
    return [{"rmin": np.float32(lo), "rmax": np.float32(hi)}]


def test_concat_inputs_get_its_range_through_reshapes_and_relu_keeps_zero(tmp_path):
    path = _save(tmp_path, [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Neg", ["x"], ["n"]),
        helper.make_node("Flatten", ["n"], ["nf"]),
        helper.make_node("Concat", ["r", "nf"], ["y"], axis=1),
    ])
    out = share_concat_ranges(path, {"y": _given(-0.5, 0.5)})
    assert float(out["nf"][0]["rmin"]) == -0.5 and float(out["n"][0]["rmin"]) == -0.5  # through Flatten
    # ORT removes a Relu only when its output range starts at 0; a signed range would keep negatives
    assert float(out["r"][0]["rmin"]) == 0.0 and float(out["r"][0]["rmax"]) == 0.5
    assert "x" not in out  # a Relu changes values: its input is not the concat's


def test_concat_without_a_range_and_given_ranges_are_left_alone(tmp_path):
    path = _save(tmp_path, [helper.make_node("Relu", ["x"], ["r"]),
                            helper.make_node("Concat", ["r", "x"], ["y"], axis=1)])
    assert share_concat_ranges(path, {}) == {}
    own = _given(0.0, 2.0)
    assert share_concat_ranges(path, {"y": _given(-1, 1), "r": own})["r"] is own


def test_input_range_follows_reshapes_only(tmp_path):
    path = _save(tmp_path, [helper.make_node("Reshape", ["x", "shape"], ["xr"]),
                            helper.make_node("Relu", ["xr"], ["y"])])
    out = share_input_range(path, {}, -1.0, 127 / 128)
    assert set(out) == {"x", "xr"} and float(out["xr"][0]["rmax"]) == pytest.approx(127 / 128)


def test_a_loaded_proto_serves_like_its_path(tmp_path):
    import onnx

    from quant.onnx_ranges import _onnx_values, load_model

    path = _save(tmp_path, [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Neg", ["x"], ["n"]),
                            helper.make_node("Concat", ["r", "n"], ["y"], axis=1)])
    proto = load_model(path)
    assert load_model(proto) is proto
    given = {"y": _given(-1, 1)}
    assert share_concat_ranges(proto, given) == share_concat_ranges(path, given)
    assert share_input_range(proto, {}, -1.0, 1.0).keys() == share_input_range(path, {}, -1.0, 1.0).keys()
    before = proto.SerializeToString()
    vals = _onnx_values(proto, np.array([[-1.0, 2.0, -3.0, 4.0]], np.float32))
    assert set(vals) >= {"r", "n", "y"}  # every node output is read...
    assert proto.SerializeToString() == before  # ...without adding outputs to the caller's proto
    assert [o.name for o in onnx.load(path).graph.output] == ["y"]


def test_range_overrides_give_every_matched_tensor_the_keras_range():
    out = range_overrides({"a": ["t1", "t2"], "b": ["t3"]}, {"a": (0.0, 2.0), "b": (-1.0, 1.0), "c": (0, 9)})
    assert set(out) == {"t1", "t2", "t3"}
    assert out["t2"][0]["rmax"] == np.float32(2.0) and out["t3"][0]["rmin"] == np.float32(-1.0)


def test_match_tensors_finds_the_export_and_refuses_another_model(quant_run):
    tf = pytest.importorskip("tensorflow")  # noqa: F841
    from quant import flows
    from quant import run as R
    from quant.calibration import sample_crops
    from quant.config import ExportConfig
    from quant.onnx_ranges import load_model, match_tensors
    from quant.scheme import equalized_float

    flows.export_onnx(quant_run, ExportConfig(parity_crops=8), print)
    cfg = R.load_config(quant_run)
    folded = equalized_float(flows.load_keras(R.fp32_path(quant_run)), 0)
    names = [n for n in ("stem_relu", "block1_0_project_conv", "multiscale", "fc")
             if n in [layer.name for layer in folded.layers]]
    assert len(names) == 4
    crops = sample_crops(quant_run, "val", 4)
    onnx_path = os.path.join(quant_run, "fp32.onnx")
    m = match_tensors(onnx_path, folded, names, crops, cfg.crop)
    assert set(m) == set(names) and all(m.values())
    assert len({t for ts in m.values() for t in ts}) == sum(len(ts) for ts in m.values())  # no tensor twice
    layer = folded.get_layer("stem_conv") if "stem_conv" in [lyr.name for lyr in folded.layers] else None
    w = (layer or [lyr for lyr in folded.layers if lyr.weights][0]).weights[0]
    w.assign(w.numpy() * 1.5)  # now a different function: the export no longer holds its values
    with pytest.raises(ValueError, match="no tensor holds the values of Keras layer"):
        match_tensors(onnx_path, folded, names, crops, cfg.crop)
    with pytest.raises(ValueError, match="^%s: no tensor holds" % re.escape(onnx_path)):  # a proto, named
        match_tensors(load_model(onnx_path), folded, names, crops, cfg.crop, label=onnx_path)
