"""What an artifact really holds: tensor types, quantization parameters, bytes by kind.

Used by tests (an INT8 file must hold int8 weight tensors, pof2 scales must be powers of
two) and by the report's size breakdown.
"""
import math
from collections import Counter
from typing import Any, Dict, List, Optional

_TFLITE_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 9: "int8", 7: "int16"}


def tflite_tensors(path: str) -> List[Dict[str, Any]]:
    """Every tensor of a .tflite flatbuffer: name, dtype, shape, constant?, bytes, scales, zero points."""
    from tensorflow.lite.python import schema_py_generated as schema

    buf = open(path, "rb").read()
    model = schema.Model.GetRootAsModel(buf, 0)
    g = model.Subgraphs(0)
    out = []
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        data_len = model.Buffers(t.Buffer()).DataLength() if t.Buffer() < model.BuffersLength() else 0
        q = t.Quantization()
        scales = [q.Scale(j) for j in range(q.ScaleLength())] if q else []
        zps = [q.ZeroPoint(j) for j in range(q.ZeroPointLength())] if q else []
        out.append({"name": t.Name().decode(), "dtype": _TFLITE_TYPES.get(t.Type(), str(t.Type())),
                    "shape": [t.Shape(j) for j in range(t.ShapeLength())], "constant": data_len > 0,
                    "bytes": int(data_len), "scales": scales, "zero_points": zps})
    return out


def tflite_summary(path: str) -> Dict[str, Any]:
    """Bytes of constant tensors by dtype, quantization-parameter overhead, weight granularity."""
    tensors = tflite_tensors(path)
    by_type: Counter = Counter()
    qparam_bytes = 0
    per_channel = 0
    for t in tensors:
        if t["constant"]:
            by_type[t["dtype"]] += t["bytes"]
        qparam_bytes += 4 * len(t["scales"]) + 8 * len(t["zero_points"])
        if t["constant"] and len(t["scales"]) > 1:
            per_channel += 1
    import os

    return {"file_bytes": os.path.getsize(path), "constant_bytes_by_dtype": dict(by_type),
            "quant_param_bytes": qparam_bytes, "per_channel_tensors": per_channel,
            "tensors": len(tensors)}


def is_power_of_two(x: float) -> bool:
    if not x > 0:
        return False
    m, _ = math.frexp(x)
    return m == 0.5


def onnx_initializers(path: str) -> List[Dict[str, Any]]:
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    return [{"name": t.name, "dtype": str(numpy_helper.to_array(t).dtype), "shape": list(t.dims),
             "bytes": int(numpy_helper.to_array(t).nbytes)} for t in m.graph.initializer]


def onnx_summary(path: str) -> Dict[str, Any]:
    import os

    import onnx

    m = onnx.load(path)
    by_type: Counter = Counter()
    for t in onnx_initializers(path):
        by_type[t["dtype"]] += t["bytes"]
    ops = Counter(n.op_type for n in m.graph.node)
    return {"file_bytes": os.path.getsize(path), "initializer_bytes_by_dtype": dict(by_type),
            "ops": dict(ops), "opset": [(o.domain or "ai.onnx", o.version) for o in m.opset_import]}


def onnx_weight_granularity(path: str) -> Optional[str]:
    """"per-channel", "per-tensor" or "mixed": the scales of the QDQ file's constant 4-D (conv)
    weights; None for a float file. A release card states it from the file itself, so a run
    quantized under an older default is labelled by what it holds."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    inits = {t.name: t for t in m.graph.initializer}
    kinds = set()
    for n in m.graph.node:
        if n.op_type != "DequantizeLinear" or n.input[0] not in inits or len(inits[n.input[0]].dims) != 4:
            continue
        scale = numpy_helper.to_array(inits[n.input[1]])
        kinds.add("per-channel" if scale.size > 1 else "per-tensor")
    if not kinds:
        return None
    return kinds.pop() if len(kinds) == 1 else "mixed"
