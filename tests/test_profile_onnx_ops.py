"""scripts/profile_onnx_ops.py: ORT's per-node profile summed by operator, on a hand-built model."""
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import profile_onnx_ops  # noqa: E402


def _conv_relu(path: Path) -> str:
    import onnx

    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(8, 1, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


def test_profile_sums_node_times_by_operator(tmp_path, capsys):
    path = _conv_relu(tmp_path / "m.onnx")
    prof = profile_onnx_ops.profile(path, iters=5, threads=1, warmup=2)
    assert "Conv" in prof["ops"] and prof["per_call_ms"] > 0
    assert prof["per_call_ms"] == pytest.approx(sum(prof["ops"].values()))
    assert [ms for _, _, ms in prof["nodes"]] == sorted((ms for _, _, ms in prof["nodes"]), reverse=True)
    assert profile_onnx_ops.main([path, "--iters", "3", "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "m.onnx:" in out and "| operator | ms per call | share % |" in out and "(top 1)" in out


def test_missing_model_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        profile_onnx_ops.main([str(tmp_path / "nope.onnx")])
    assert "nope.onnx: no such file" in capsys.readouterr().err
