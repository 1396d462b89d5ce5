"""INT8 ONNX from a TFLite INT8 file, rewritten so ONNX Runtime's CPU kernels stay exact.

tf2onnx's TFLite front end turns the integer TFLite graph into QDQ ONNX: int8 weight
initializers behind DequantizeLinear, int32 biases, Quantize/DequantizeLinear pairs on
activations. The ONNX file therefore holds exactly the TFLite file's integers, whatever
made them (PTQ, QAT, pof2).

On this AVX2 CPU (no VNNI) ORT's int8 kernels multiply u8 x s8 with vpmaddubsw, whose
int16 pair sums saturate for full-range 8-bit weights (docs/stack-notes.md). ORT's
documented way out is U8U8: `to_uint8` shifts every int8 zero point / int8 initializer by
+128 into uint8 — the same real values (q - zp is unchanged) — so ORT picks its U8U8 path.
"""
from typing import Dict

import numpy as np


def _io_quantization(path: str):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # TensorFlow's (deprecated) copy
        from tensorflow.lite import Interpreter
    it = Interpreter(model_path=path)
    return it.get_input_details()[0], it.get_output_details()[0]


def from_tflite(path: str, opset: int, input_name: str = "image", output_name: str = "landmarks"):
    """ONNX ModelProto of a TFLite INT8 file, with float input/output (dynamic batch kept).

    An int8-I/O TFLite file gets a QuantizeLinear on the new float input and a
    DequantizeLinear on the output with the file's own scales: the ONNX runtime backend
    feeds normalised floats like for every other ONNX model.
    """
    import tf2onnx
    from onnx import TensorProto, helper, numpy_helper

    proto, _ = tf2onnx.convert.from_tflite(path, opset=opset)
    d_in, d_out = _io_quantization(path)
    g = proto.graph
    inp, out = g.input[0], g.output[0]
    if inp.type.tensor_type.elem_type == TensorProto.INT8:
        scale, zp = d_in["quantization"]
        old = inp.name
        g.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), "input_scale"),
                              numpy_helper.from_array(np.array(zp, np.int8), "input_zero_point")])
        g.node.insert(0, helper.make_node("QuantizeLinear", [input_name, "input_scale", "input_zero_point"],
                                          [old], name="input_quantize"))
        inp.name = input_name
        inp.type.tensor_type.elem_type = TensorProto.FLOAT
    else:
        for n in g.node:
            n.input[:] = [input_name if i == inp.name else i for i in n.input]
        inp.name = input_name
    if out.type.tensor_type.elem_type == TensorProto.INT8:
        scale, zp = d_out["quantization"]
        g.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), "output_scale"),
                              numpy_helper.from_array(np.array(zp, np.int8), "output_zero_point")])
        g.node.append(helper.make_node("DequantizeLinear", [out.name, "output_scale", "output_zero_point"],
                                       [output_name], name="output_dequantize"))
        out.name = output_name
        out.type.tensor_type.elem_type = TensorProto.FLOAT
    return proto


def int8_onnx(tflite_path: str, onnx_path: str, opset: int) -> str:
    """TFLite INT8 file -> U8U8 QDQ ONNX file with short names (checked, written atomically)."""
    from quant.onnx_save import save_onnx

    return save_onnx(to_uint8(from_tflite(tflite_path, opset)), onnx_path)


def to_uint8(proto):
    """Rewrite int8 Q/DQ zero points and int8 quantized initializers to uint8 (+128), in place."""
    from onnx import TensorProto, numpy_helper

    inits: Dict[str, object] = {i.name: i for i in proto.graph.initializer}
    shifted = set()

    def shift(name: str) -> None:
        if name in shifted or name not in inits:
            return
        t = inits[name]
        if t.data_type != TensorProto.INT8:
            return
        a = numpy_helper.to_array(t).astype(np.int16) + 128
        t.CopyFrom(numpy_helper.from_array(a.astype(np.uint8), name))
        shifted.add(name)

    producer = {o: n for n in proto.graph.node for o in n.output}

    passthrough = {"Reshape": 1, "Transpose": 1, "Identity": 1, "Squeeze": 1, "Unsqueeze": 1, "Flatten": 1,
                   "Concat": None}  # op -> how many leading inputs carry data (None: all)

    def retype(name: str, where: str) -> None:
        """Make the int8 tensor `name` uint8: shift its initializer, or check it comes from
        QuantizeLinear nodes (whose zero points carry the type) through layout-only ops."""
        if name in inits:
            shift(name)
            return
        node = producer.get(name)
        if node is not None and node.op_type == "QuantizeLinear":
            return
        if node is None or node.op_type not in passthrough:
            raise ValueError("DequantizeLinear %s: cannot trace its int8 input %s" % (where, name))
        n = passthrough[node.op_type]
        for src in (node.input if n is None else node.input[:n]):
            retype(src, where)

    int8_zero_points = {n for n, t in inits.items() if t.data_type == TensorProto.INT8}  # before any shift
    for node in proto.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) >= 3:
            if node.input[2] not in int8_zero_points:
                continue
            if node.op_type == "DequantizeLinear":
                retype(node.input[0], node.name)
            shift(node.input[2])
    return proto
