"""The one xmodel interface: what flm reads from a compiled DPU model (.xmodel), and whether it can run it.

An .xmodel is the protobuf message `serial_v2.Graph` (XIR's src/xir/proto/graph_proto_v2.proto). flm
reads it through the `xir` Python module, which has two implementations with one API:

- the real XIR (Vitis AI's pybind11 module: on the KV260 image, in the Vitis AI docker, or built on a
  host from ../shared/vendor with `make xir`);
- the test stand-in tests/runtime/fake_vitis/xir.py, which decodes the same protobuf with `decode`
  below; a test requires both to give identical `read_xmodel` answers on real KV260 xmodels.

Everything here goes through these calls only (docs/vitis-ai.md section 6):
`xir.Graph.deserialize(path)`, `graph.get_name()`, `graph.get_root_subgraph().toposort_child_subgraph()`,
`subgraph.get_name() / has_attr / get_attr / get_input_tensors / get_output_tensors / get_ops`,
`tensor.name / dims / dtype / has_attr / get_attr("fix_point")`, `op.get_name() / get_type()`.
XIR returns sets of tensors and ops; they are sorted by name here so the answers are stable.

Why `preflight` first: XIR reports a file it cannot parse with glog's LOG(FATAL), which aborts the whole
process (a board app would die with "XIR_READ_PB_FAILURE"). So the file is decoded here first (pure
Python, schema below) and a truncated, empty or foreign file becomes an XmodelError naming the problem.

numpy-free and TensorFlow-free; Python 3.8 syntax (the board).
"""
import importlib
import os
import struct
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from runtime.backends.base import BackendError
from runtime.landmarks import NUM_POINTS
from runtime.preprocess import DEFAULT_SPEC, CropSpec

#: How to get the real xir module, for messages.
XIR_HINT = ("the `xir` Python module comes with the Vitis AI runtime (KV260 image, Vitis AI docker); on a "
            "host build it from the vendored sources with `make xir`")


class XmodelError(BackendError):
    """The file is not a readable xmodel, or flm cannot run the model it holds."""


# ----------------------------------------------------------------------------- protobuf wire format
# serial_v2 schema (graph_proto_v2.proto): message -> {field number: (name, type, repeated)}.
# Types: scalar names, a message name, or ("map", value type) for map<string, value type>.
_SCHEMA = {
    "Graph": {1: ("graph_name", "string", False), 5: ("op_node", "OPNode", True),
              10: ("subg_root", "SubGraph", False), 11: ("graph_attr", ("map", "AttrValue"), False),
              101: ("op_defs", "OpDef", True)},
    "OPNode": {1: ("op_name", "string", False), 2: ("op_type", "string", False),
               3: ("op_attr", ("map", "AttrValue"), False), 4: ("args", "OpArg", True),
               5: ("output_tensor", "Tensor", False)},
    "OpArg": {1: ("arg_name", "string", False), 2: ("arg_ops", "string", True)},
    "Tensor": {1: ("tensor_name", "string", False), 2: ("tensor_dim", "uint32", True),
               5: ("data_type", "int32", False), 6: ("tensor_bit_width", "int32", False),
               10: ("tensor_attr", ("map", "AttrValue"), False)},
    "SubGraph": {1: ("subgraph_name", "string", False), 3: ("op_name", "string", True),
                 5: ("subg_attr", ("map", "AttrValue"), False), 10: ("subg_child", "SubGraph", True)},
    "OpDef": {1: ("name", "string", False), 2: ("input_args", "OpArgDef", True),
              3: ("attrs", "AttrDef", True), 4: ("annotation", "string", False)},
    "AttrDef": {1: ("name", "string", False), 3: ("occur_type", "int32", False),
                4: ("default_value", "AttrValue", False), 6: ("list_length", "int32", False),
                7: ("annotation", "string", False)},
    "OpArgDef": {1: ("name", "string", False), 2: ("occur_type", "int32", False),
                 3: ("data_type", "int32", False), 4: ("annotation", "string", False)},
    "Bytes": {1: ("value", "bytes", False)},
}
# AttrValue is a oneof: field number -> (kind, element type). Kinds: scalar, vec (a message holding
# `repeated T value = 1`), map (a message holding `map<string, T> value = 1`).
_ATTR_VALUE = {4: ("scalar", "bool"), 5: ("scalar", "int32"), 6: ("scalar", "uint32"), 7: ("scalar", "int64"),
               8: ("scalar", "uint64"), 9: ("scalar", "float"), 10: ("scalar", "double"),
               11: ("scalar", "string"), 12: ("scalar", "Bytes"),
               13: ("vec", "bool"), 14: ("vec", "int32"), 15: ("vec", "uint32"), 16: ("vec", "int64"),
               17: ("vec", "uint64"), 18: ("vec", "float"), 19: ("vec", "double"), 20: ("vec", "string"),
               21: ("vec", "Bytes"),
               22: ("map", "int32"), 23: ("map", "uint32"), 24: ("map", "int64"), 25: ("map", "uint64"),
               26: ("map", "string"), 27: ("map", "Bytes"), 28: ("map", "Int32Vec"), 29: ("map", "Uint32Vec"),
               30: ("map", "Int64Vec"), 31: ("map", "Uint64Vec"), 32: ("map", "StringVec")}
_VEC_ELEMENT = {"Int32Vec": "int32", "Uint32Vec": "uint32", "Int64Vec": "int64", "Uint64Vec": "uint64",
                "StringVec": "string"}
_VARINT_TYPES = {"bool", "int32", "uint32", "int64", "uint64"}
_WIRE = {"bool": 0, "int32": 0, "uint32": 0, "int64": 0, "uint64": 0, "float": 5, "double": 1}


class WireError(ValueError):
    """The bytes are not a valid protobuf encoding of the expected message."""

    def __init__(self, msg: str, pos: int) -> None:
        super().__init__("%s at byte %d" % (msg, pos))
        self.pos = pos


@dataclass
class AttrValue:
    """One decoded AttrValue: its Python value and its kind ("scalar", "vec", "map:<type>")."""

    value: Any
    kind: str
    type: str


def _varint(buf: memoryview, pos: int, end: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise WireError("truncated varint", pos)
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes", pos)


def iter_fields(buf: memoryview, pos: int, end: int) -> Iterator[Tuple[int, int, Any, int]]:
    """(field number, wire type, value, position) of each field in buf[pos:end]. Length-delimited
    values are (start, stop) offsets; fixed32/fixed64 values are their raw bytes."""
    while pos < end:
        at = pos
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0", at)
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 2:
            n, pos = _varint(buf, pos, end)
            if pos + n > end:
                raise WireError("field %d claims %d bytes but only %d remain (truncated file?)"
                                % (number, n, end - pos), at)
            value = (pos, pos + n)
            pos += n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            if pos + n > end:
                raise WireError("truncated fixed-size field %d" % number, at)
            value = bytes(buf[pos:pos + n])
            pos += n
        else:  # 3/4: groups (never in proto3), 6/7: invalid
            raise WireError("wire type %d (field %d) is not used by serial_v2" % (wire, number), at)
        yield number, wire, value, at


def _scalar(typ: str, wire: int, value: Any, buf: memoryview, at: int) -> Any:
    if typ in _VARINT_TYPES:
        if wire != 0:
            raise WireError("%s field with wire type %d" % (typ, wire), at)
        if typ == "bool":
            return value != 0
        if typ in ("int32", "int64") and value >= 1 << 63:
            value -= 1 << 64
        return value
    if typ in ("float", "double"):
        if wire != _WIRE[typ]:
            raise WireError("%s field with wire type %d" % (typ, wire), at)
        return struct.unpack("<f" if typ == "float" else "<d", value)[0]
    if wire != 2:
        raise WireError("%s field with wire type %d" % (typ, wire), at)
    raw = bytes(buf[value[0]:value[1]])
    if typ == "string":
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WireError("string field is not UTF-8", at) from None
    return raw  # bytes


def _packed(typ: str, buf: memoryview, start: int, stop: int) -> List[Any]:
    out = []
    if typ in _VARINT_TYPES:
        pos = start
        while pos < stop:
            v, pos = _varint(buf, pos, stop)
            out.append(_scalar(typ, 0, v, buf, pos))
        return out
    size = 4 if typ == "float" else 8
    if (stop - start) % size:
        raise WireError("packed %s field of %d bytes" % (typ, stop - start), start)
    fmt = "<f" if typ == "float" else "<d"
    return [struct.unpack(fmt, bytes(buf[p:p + size]))[0] for p in range(start, stop, size)]


def _repeated(typ: str, buf: memoryview, start: int, stop: int) -> List[Any]:
    """`repeated T value = 1` of a vec message (packed or not)."""
    out = []  # type: List[Any]
    for number, wire, value, at in iter_fields(buf, start, stop):
        if number != 1:
            continue
        if wire == 2 and typ in _WIRE:
            out.extend(_packed(typ, buf, value[0], value[1]))
        else:
            out.append(_decode_value(typ, wire, value, buf, at))
    return out


def _map_entry(buf: memoryview, start: int, stop: int, value_type: Any) -> Tuple[str, Any]:
    key, val = "", None  # type: str, Any
    for number, wire, value, at in iter_fields(buf, start, stop):
        if number == 1:
            key = _scalar("string", wire, value, buf, at)
        elif number == 2:
            val = _decode_value(value_type, wire, value, buf, at)
    return key, val


def _attr_value(buf: memoryview, start: int, stop: int) -> Optional[AttrValue]:
    found = None
    for number, wire, value, at in iter_fields(buf, start, stop):
        if number not in _ATTR_VALUE:
            continue
        kind, typ = _ATTR_VALUE[number]
        if kind == "scalar":
            found = AttrValue(_decode_value(typ, wire, value, buf, at), "scalar", typ)
        elif wire != 2:
            raise WireError("AttrValue field %d with wire type %d" % (number, wire), at)
        elif kind == "vec":
            found = AttrValue(_repeated(typ, buf, value[0], value[1]), "vec", typ)
        else:
            entries = {}
            for n2, w2, v2, a2 in iter_fields(buf, value[0], value[1]):
                if n2 == 1:
                    if w2 != 2:
                        raise WireError("map entry with wire type %d" % w2, a2)
                    k, v = _map_entry(buf, v2[0], v2[1], typ)
                    entries[k] = v
            found = AttrValue(entries, "map:" + typ, typ)
    return found  # proto3 oneof: the last one set wins


def _decode_value(typ: Any, wire: int, value: Any, buf: memoryview, at: int) -> Any:
    if typ == "Bytes":  # message Bytes { bytes value = 1; }: its payload
        if wire != 2:
            raise WireError("Bytes with wire type %d" % wire, at)
        return _message("Bytes", buf, value[0], value[1]).get("value", b"")
    if typ == "AttrValue":
        if wire != 2:
            raise WireError("AttrValue with wire type %d" % wire, at)
        return _attr_value(buf, value[0], value[1])
    if typ in _VEC_ELEMENT:
        return _repeated(_VEC_ELEMENT[typ], buf, value[0], value[1])
    if typ in _SCHEMA:
        if wire != 2:
            raise WireError("message %s with wire type %d" % (typ, wire), at)
        return _message(typ, buf, value[0], value[1])
    return _scalar(typ, wire, value, buf, at)


def _message(name: str, buf: memoryview, start: int, stop: int) -> Dict[str, Any]:
    """Decode buf[start:stop] as message `name`: {field name: value}; unknown fields are skipped (as
    protobuf does), repeated fields are lists, map fields dicts."""
    schema = _SCHEMA[name]
    out = {}  # type: Dict[str, Any]
    for number, wire, value, at in iter_fields(buf, start, stop):
        spec = schema.get(number)
        if spec is None:
            continue
        fname, typ, repeated = spec
        if isinstance(typ, tuple):  # map<string, T>
            if wire != 2:
                raise WireError("map field %s with wire type %d" % (fname, wire), at)
            k, v = _map_entry(buf, value[0], value[1], typ[1])
            out.setdefault(fname, {})[k] = v
        elif repeated:
            if wire == 2 and typ in _WIRE:
                out.setdefault(fname, []).extend(_packed(typ, buf, value[0], value[1]))
            else:
                out.setdefault(fname, []).append(_decode_value(typ, wire, value, buf, at))
        else:
            out[fname] = _decode_value(typ, wire, value, buf, at)
    return out


def decode(data: bytes, message: str = "Graph") -> Dict[str, Any]:
    """Decode protobuf bytes as a serial_v2 message (raises WireError)."""
    buf = memoryview(data)
    return _message(message, buf, 0, len(buf))


# ----------------------------------------------------------------------------- preflight
def _subgraph_problem(subg: Dict[str, Any], ops: Dict[str, Any]) -> Optional[str]:
    has_ops, has_children = bool(subg.get("op_name")), bool(subg.get("subg_child"))
    if has_ops == has_children:
        what = "both ops and child subgraphs" if has_ops else "neither ops nor children"
        return "subgraph %r has %s" % (subg.get("subgraph_name", ""), what)
    for name in subg.get("op_name", []):
        if name not in ops:
            return "subgraph %r names op %r, which the graph does not define" % (subg.get("subgraph_name"),
                                                                                 name)
    for child in subg.get("subg_child", []):
        why = _subgraph_problem(child, ops)
        if why:
            return why
    return None


def preflight(path: str) -> Dict[str, Any]:
    """Decode `path` as an xmodel and check what XIR would otherwise abort on; returns the decoded
    serial_v2.Graph. Raises XmodelError naming the file and the problem."""
    if not os.path.isfile(path):
        raise XmodelError("xmodel not found: %s" % path)
    with open(path, "rb") as f:
        data = f.read()
    size = len(data)
    if size == 0:
        raise XmodelError("%s is empty (0 bytes): not an xmodel" % path)
    try:
        graph = decode(data)
    except WireError as e:
        raise XmodelError("%s is not a readable xmodel (%d bytes): %s; an xmodel is a serial_v2.Graph "
                          "protobuf written by vai_c/XIR, and this one is truncated or another kind of file"
                          % (path, size, e)) from e
    if not graph.get("graph_name") or not graph.get("op_node") or "subg_root" not in graph:
        missing = [k for k in ("graph_name", "op_node", "subg_root") if not graph.get(k)]
        raise XmodelError("%s is not an xmodel: it decodes, but has no %s (an xmodel names its graph, "
                          "lists its ops and partitions them into subgraphs)" % (path, ", ".join(missing)))
    ops = {}  # type: Dict[str, Any]
    for op in graph["op_node"]:
        name = op.get("op_name", "")
        for arg in op.get("args", []):
            for src in arg.get("arg_ops", []):
                if src not in ops:
                    raise XmodelError("%s is not a valid xmodel: op %r reads op %r, which is not defined "
                                      "before it" % (path, name, src))
        if name in ops:
            raise XmodelError("%s is not a valid xmodel: op %r is defined twice" % (path, name))
        ops[name] = op
    root = graph["subg_root"]
    for child in root.get("subg_child", []):
        why = _subgraph_problem(child, ops)
        if why:
            raise XmodelError("%s is not a valid xmodel: %s" % (path, why))
    return graph


# ----------------------------------------------------------------------------- reading through xir
@dataclass
class TensorInfo:
    name: str
    dims: List[int]
    dtype: str
    fix_point: Optional[int]

    def describe(self) -> str:
        fp = "no fix_point" if self.fix_point is None else "fix_point %d" % self.fix_point
        return "%s %s %s, %s" % (self.name, self.dims, self.dtype, fp)


@dataclass
class SubgraphInfo:
    name: str
    device: str
    ops: List[str] = field(default_factory=list)  # "name (type)", for non-DPU subgraphs
    dpu_name: Optional[str] = None
    fingerprint: Optional[int] = None
    inputs: List[TensorInfo] = field(default_factory=list)
    outputs: List[TensorInfo] = field(default_factory=list)

    @property
    def fingerprint_hex(self) -> Optional[str]:
        return None if self.fingerprint is None else "0x%x" % self.fingerprint


@dataclass
class XmodelInfo:
    """What an xmodel holds, as XIR reports it (subgraphs in topological order)."""

    path: str
    graph: str
    subgraphs: List[SubgraphInfo]

    @property
    def dpu(self) -> List[SubgraphInfo]:
        return [s for s in self.subgraphs if s.device.upper() == "DPU"]

    def splitters(self) -> List[SubgraphInfo]:
        """Non-DPU subgraphs between the first and the last DPU subgraph: what splits the DPU graph."""
        idx = [i for i, s in enumerate(self.subgraphs) if s.device.upper() == "DPU"]
        if len(idx) < 2:
            return []
        return [s for s in self.subgraphs[idx[0] + 1:idx[-1]] if s.device.upper() != "DPU"]

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        for s, sd in zip(self.subgraphs, d["subgraphs"]):
            sd["fingerprint"] = s.fingerprint_hex
        d["dpu_subgraphs"] = len(self.dpu)
        return d


def load_xir() -> Any:
    """The `xir` module (real or the test stand-in, whichever `import xir` finds)."""
    try:
        return importlib.import_module("xir")
    except ImportError as e:
        raise XmodelError("reading an xmodel needs XIR, which is not importable here (%s): %s"
                          % (e, XIR_HINT)) from e


def xir_origin(xir: Any) -> str:
    """Where the xir module comes from (for `flm-dpu info`)."""
    return str(getattr(xir, "__file__", None) or getattr(xir, "__name__", "xir"))


def xir_status() -> str:
    """`flm-dpu info`'s engine row for XIR: the module's file, or why it is missing."""
    try:
        return "importable: %s" % xir_origin(load_xir())
    except XmodelError:
        return "missing (board image / Vitis AI docker; on a host: make xir)"


def _attr(obj: Any, key: str) -> Any:
    return obj.get_attr(key) if obj.has_attr(key) else None


def _tensors(ts: Any) -> List[TensorInfo]:
    out = []
    for t in sorted(ts, key=lambda t: t.name):
        fp = _attr(t, "fix_point")
        out.append(TensorInfo(name=t.name, dims=[int(d) for d in t.dims], dtype=str(t.dtype),
                              fix_point=None if fp is None else int(fp)))
    return out


def _subgraph(s: Any) -> SubgraphInfo:
    device = _attr(s, "device")
    info = SubgraphInfo(name=s.get_name(), device="" if device is None else str(device))
    if info.device.upper() == "DPU":
        fp = _attr(s, "dpu_fingerprint")
        info.fingerprint = None if fp is None else (int(fp, 0) if isinstance(fp, str) else int(fp))
        name = _attr(s, "dpu_name")
        info.dpu_name = None if name is None else str(name)
        info.inputs = _tensors(s.get_input_tensors())
        info.outputs = _tensors(s.get_output_tensors())
    else:
        info.ops = ["%s (%s)" % (op.get_name(), op.get_type())
                    for op in sorted(s.get_ops(), key=lambda op: op.get_name())]
    return info


def deserialize(path: str, xir: Any = None) -> Any:
    """xir.Graph.deserialize after the preflight (so a bad file raises instead of aborting)."""
    preflight(path)
    xir = xir if xir is not None else load_xir()
    try:
        return xir.Graph.deserialize(path)
    except Exception as e:  # noqa: BLE001 - the binding maps C++ exceptions to several Python types
        raise XmodelError("%s is not a loadable xmodel (xir.Graph.deserialize failed: %s)" % (path, e)) from e


def inspect_graph(graph: Any, path: str) -> XmodelInfo:
    """Subgraphs, devices, DPU fingerprints and DPU I/O tensors of a deserialized xir.Graph."""
    subs = graph.get_root_subgraph().toposort_child_subgraph()
    return XmodelInfo(path=path, graph=graph.get_name(), subgraphs=[_subgraph(s) for s in subs])


def read_xmodel(path: str, xir: Any = None) -> XmodelInfo:
    """`inspect_graph` of the file, read through `xir` (default: `import xir`)."""
    return inspect_graph(deserialize(path, xir), path)


def dpu_subgraph(graph: Any, path: str) -> Any:
    """The single DPU subgraph of a deserialized graph (the xir object, for `vart.Runner`)."""
    subs = [s for s in graph.get_root_subgraph().toposort_child_subgraph()
            if s.has_attr("device") and str(s.get_attr("device")).upper() == "DPU"]
    if len(subs) != 1:
        raise XmodelError("%s has %d DPU subgraphs; flm needs exactly 1" % (path, len(subs)))
    return subs[0]


# ----------------------------------------------------------------------------- what flm can run
def subgraph_problem(info: XmodelInfo) -> Optional[str]:
    """The one-DPU-subgraph rule: None if it holds, else why not (naming what splits the graph)."""
    dpu = info.dpu
    if len(dpu) == 1:
        return None
    layout = ", ".join("%s:%s" % (s.name, s.device or "?") for s in info.subgraphs) or "none"
    msg = "%s has %d DPU subgraphs (subgraphs: %s); flm needs exactly 1" % (info.path, len(dpu), layout)
    split = info.splitters()
    if split:
        msg += (". The DPU graph is split by the CPU subgraph%s %s: the compiler could not map %s to the "
                "DPU. Recompile so the whole network maps to the DPU (`flm vitis lint` names such layers: "
                "custom ops, Flatten->Dense, non-square pooling)"
                % ("s" if len(split) > 1 else "",
                   "; ".join("%s [%s]" % (s.name, ", ".join(s.ops) or "no ops") for s in split),
                   "them" if len(split) > 1 else "it"))
    elif not dpu:
        msg += ": nothing in it runs on the DPU"
    return msg


def contract_problems(info: XmodelInfo, spec: CropSpec = DEFAULT_SPEC) -> List[str]:
    """Why flm cannot feed this model its crops or read landmarks from it ([] if it can)."""
    why = subgraph_problem(info)
    if why:
        return [why]
    s = info.dpu[0]
    need_in = "[batch, %d, %d, 1] int8 (the crop contract: %dx%d grayscale face crops)" % (
        spec.size, spec.size, spec.size, spec.size)
    need_out = "%d values per face (%d landmarks x, y)" % (2 * NUM_POINTS, NUM_POINTS)
    problems = []
    if len(s.inputs) != 1:
        problems.append("its DPU subgraph %s takes %d input tensors (%s); flm feeds one: %s"
                        % (s.name, len(s.inputs), "; ".join(t.describe() for t in s.inputs), need_in))
    else:
        t = s.inputs[0]
        if len(t.dims) != 4 or t.dims[1:] != [spec.size, spec.size, 1]:
            problems.append("its DPU subgraph %s expects input %s; flm feeds %s"
                            % (s.name, t.describe(), need_in))
    if len(s.outputs) != 1:
        problems.append("its DPU subgraph %s has %d output tensors (%s); flm reads one of %s"
                        % (s.name, len(s.outputs), "; ".join(t.describe() for t in s.outputs), need_out))
    else:
        t = s.outputs[0]
        per_face = 1
        for d in t.dims[1:]:
            per_face *= d
        if per_face != 2 * NUM_POINTS:
            problems.append("its DPU subgraph %s outputs %s = %d values per face; flm reads %s"
                            % (s.name, t.describe(), per_face, need_out))
    for t in s.inputs + s.outputs:
        if "int8" not in t.dtype.lower():
            problems.append("DPU tensor %s is %s; flm exchanges int8 (xint8) buffers" % (t.name, t.dtype))
        if t.fix_point is None:
            problems.append("DPU tensor %s has no fix_point attribute (not a quantized DPU tensor)" % t.name)
    return problems


def check_runnable(info: XmodelInfo, spec: CropSpec = DEFAULT_SPEC) -> None:
    """Refuse (XmodelError) a model flm cannot run: it needs one DPU subgraph taking [batch, 112, 112, 1]
    int8 crops and giving 196 values per face. The message says what the model expects instead."""
    problems = contract_problems(info, spec)
    if problems:
        raise XmodelError("%s cannot run in flm: %s" % (info.path, "; ".join(problems)))


def require_runnable(path: str, spec: CropSpec = DEFAULT_SPEC, xir: Any = None) -> XmodelInfo:
    """`read_xmodel` + `check_runnable`: call before any frame is read."""
    info = read_xmodel(path, xir)
    check_runnable(info, spec)
    return info


def summary(info: XmodelInfo) -> str:
    """One line: what the single DPU subgraph takes and gives (for messages)."""
    if len(info.dpu) != 1:
        return "%d DPU subgraphs" % len(info.dpu)
    s = info.dpu[0]
    return "DPU subgraph %s (%s, fingerprint %s): in %s; out %s" % (
        s.name, s.dpu_name, s.fingerprint_hex, "; ".join(t.describe() for t in s.inputs),
        "; ".join(t.describe() for t in s.outputs))


def format_info(info: XmodelInfo) -> List[str]:
    """`flm-dpu info` lines: every subgraph in topological order with its device; for DPU subgraphs the
    DPU name, fingerprint and I/O tensors (names, dims, dtype, fix_point as XIR reports them)."""
    lines = ["xmodel %s: graph %s, %d subgraphs, %d on the DPU"
             % (info.path, info.graph, len(info.subgraphs), len(info.dpu))]
    for s in info.subgraphs:
        if s.device.upper() == "DPU":
            lines.append("  %-4s %s  (%s, fingerprint %s)"
                         % (s.device, s.name, s.dpu_name, s.fingerprint_hex))
            lines += ["         in   %s" % t.describe() for t in s.inputs]
            lines += ["         out  %s" % t.describe() for t in s.outputs]
        else:
            lines.append("  %-4s %s  [%s]" % (s.device or "?", s.name, ", ".join(s.ops)))
    return lines
