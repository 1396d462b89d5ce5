"""A tiny QDQ Conv graph as ORT's quantizer writes them (per-channel int8 weights with int8 zero
points, an int32 bias with an int32 zero point per channel), for the ONNX save-pass tests."""
import numpy as np


def qdq_conv(bias_zero: int = 0):
    """ModelProto: x (1, 1, 4, 4) float -> Q/DQ (uint8) -> Conv 2 channels 3x3 (per-channel DQ weights,
    DQ int32 bias whose zero points are all `bias_zero`) -> y."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    consts = [
        numpy_helper.from_array(np.float32(0.02), "x_scale"),
        numpy_helper.from_array(np.uint8(128), "x_zero"),
        numpy_helper.from_array(rng.integers(-60, 60, (2, 1, 3, 3)).astype(np.int8), "w_q"),
        numpy_helper.from_array(np.array([0.01, 0.02], np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(2, np.int8), "w_zero"),
        numpy_helper.from_array(np.array([500, -300], np.int32), "b_q"),
        numpy_helper.from_array(np.array([0.0002, 0.0004], np.float32), "b_scale"),
        numpy_helper.from_array(np.full(2, bias_zero, np.int32), "b_zero"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=0),
        helper.make_node("DequantizeLinear", ["b_q", "b_scale", "b_zero"], ["b"], axis=0),
        helper.make_node("Conv", ["xd", "w", "b"], ["y"], pads=[1, 1, 1, 1]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])
    graph = helper.make_graph(nodes, "qdq", [x], [y], consts)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
