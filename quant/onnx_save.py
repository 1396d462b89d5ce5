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


def save_onnx(proto, path: str, shorten: bool = True) -> str:
    """Check and write an ONNX model atomically, tensor names shortened."""
    import onnx

    from quant.files import write_with

    if shorten:
        proto = shorten_names(proto)
    onnx.checker.check_model(proto)
    return write_with(path, lambda tmp: onnx.save(proto, tmp))
