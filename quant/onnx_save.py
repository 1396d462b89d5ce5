"""Writing ONNX models: short tensor names, checked, atomic (quant.files).

Both the float export (quant.export) and the INT8 quantizer (quant.ptq) save
through here, so neither needs the other.
"""
from typing import Dict


def shorten_names(proto):
    """Replace tf2onnx's long ';'-joined tensor and node names by short ones (graph I/O kept).

    They are pure metadata, yet on this model they weigh more than the int8 weights'
    scales and biases together (~150 KB at width 0.25)."""
    g = proto.graph
    keep = {v.name for v in list(g.input) + list(g.output)}
    names: Dict[str, str] = {}

    def short(name: str, prefix: str) -> str:
        if not name or name in keep:
            return name
        if name not in names:
            names[name] = "%s%d" % (prefix, len(names))
        return names[name]

    for t in g.initializer:
        t.name = short(t.name, "c")
    for i, n in enumerate(g.node):
        n.input[:] = [short(x, "t") for x in n.input]
        n.output[:] = [short(x, "t") for x in n.output]
        n.name = "%s_%d" % (n.op_type, i)
    for v in g.value_info:
        v.name = short(v.name, "t")
    return proto


def drop_bias_zero_points(proto):
    """Remove the zero-point input of DequantizeLinear nodes that dequantize an int32 constant (a
    bias) when it is all zeros, and the constant itself once nothing else uses it.

    ORT's QDQ quantizer writes one int32 zero per output channel for every bias: 40 kB of zeros in
    the full-size per-channel QAT ONNX, which put it over the 1.65 MB target (1.673 MB). ONNX's
    default zero point is 0, so the outputs do not change (bit-identical under ORT, checked by
    tests/quant/test_onnx_save.py and by `refresh_release` on a release)."""
    import onnx
    from onnx import numpy_helper

    g = proto.graph
    consts = {t.name: t for t in g.initializer}
    graph_outputs = {o.name for o in g.output}
    uses: Dict[str, int] = {}
    for n in g.node:
        for x in n.input:
            uses[x] = uses.get(x, 0) + 1
    for n in g.node:
        if n.op_type != "DequantizeLinear" or len(n.input) != 3:
            continue
        x, zp = consts.get(n.input[0]), consts.get(n.input[2])
        if x is None or zp is None or x.data_type != onnx.TensorProto.INT32:
            continue
        if numpy_helper.to_array(zp).any():
            continue
        del n.input[2]
        uses[zp.name] -= 1
        if not uses[zp.name] and zp.name not in graph_outputs:
            g.initializer.remove(zp)
    return proto


def save_onnx(proto, path: str, shorten: bool = True) -> str:
    """Check and write an ONNX model atomically, tensor names shortened, no all-zero bias zero points."""
    import onnx

    from quant.files import write_with

    proto = drop_bias_zero_points(proto)
    if shorten:
        proto = shorten_names(proto)
    onnx.checker.check_model(proto)
    return write_with(path, lambda tmp: onnx.save(proto, tmp))
