"""quant/onnx_save.py: the all-zero int32 bias zero points are dropped and nothing else changes."""
import numpy as np
import onnxruntime as ort

from quant.onnx_save import drop_bias_zero_points, save_onnx
from tests.quant.qdq_graphs import qdq_conv


def _run(path):
    x = np.random.default_rng(1).uniform(-1, 1, (1, 1, 4, 4)).astype(np.float32)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_bias_zero_points_go_and_outputs_stay_bit_identical(tmp_path):
    import onnx

    ref, slim = tmp_path / "ref.onnx", tmp_path / "slim.onnx"
    onnx.save(qdq_conv(), str(ref))
    save_onnx(qdq_conv(), str(slim), shorten=False)
    names = {t.name for t in onnx.load(str(slim)).graph.initializer}
    assert "b_zero" not in names and {"w_zero", "x_zero"} <= names  # int8/uint8 zero points stay
    assert slim.stat().st_size < ref.stat().st_size
    assert np.array_equal(_run(ref), _run(slim))


def test_a_nonzero_bias_zero_point_is_kept():
    proto = drop_bias_zero_points(qdq_conv(bias_zero=3))
    assert "b_zero" in {t.name for t in proto.graph.initializer}
    assert [len(n.input) for n in proto.graph.node if n.op_type == "DequantizeLinear"] == [3, 3, 3]
