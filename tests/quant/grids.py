"""Activation quantization grids of TFLite and QDQ ONNX files, for the tests that compare them."""
from typing import Dict, List, Set, Tuple

import numpy as np

Grid = Tuple[float, int]


def tflite_activation_grids(path: str) -> Set[Grid]:
    """{(scale, uint8 zero point)} of the file's int8 activation tensors (int8 zero point + 128)."""
    from quant.inspect_model import tflite_tensors

    return {(round(float(t["scales"][0]), 9), int(t["zero_points"][0]) + 128) for t in tflite_tensors(path)
            if not t["constant"] and t["dtype"] == "int8" and t.get("scales")}


def _nodes_and_initializers(path: str) -> Tuple[List, Dict[str, np.ndarray]]:
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    return list(m.graph.node), {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}


def onnx_activation_grids(path: str) -> Set[Grid]:
    """{(scale, zero point)} of every QuantizeLinear on an activation (not on an initializer)."""
    nodes, inits = _nodes_and_initializers(path)
    return {(round(float(inits[n.input[1]]), 9), int(inits[n.input[2]])) for n in nodes
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits}


def onnx_weight_types(path: str) -> Set[str]:
    """numpy dtype names of the integer initializers DequantizeLinear reads (weights, biases)."""
    nodes, inits = _nodes_and_initializers(path)
    return {str(inits[n.input[0]].dtype) for n in nodes
            if n.op_type == "DequantizeLinear" and n.input[0] in inits}
