"""Stand-in for the `xir` Python module (XIR's pybind11 binding, docs/vitis-ai.md section 6) for machines
where the real one is not built: the same calls, reading the same files.

It reads real .xmodel files: the protobuf `serial_v2.Graph` (graph_proto_v2.proto), decoded by
runtime.xmodel.decode, and rebuilds what XIR builds from it: ops with their output tensors, the subgraph
tree, attributes converted as the binding converts them (wrapper.cpp AttrHelper::get: scalars, vectors,
map<string, int32|string>, bytes; anything else reads as None), subgraph input/output tensors as sets
(ops outside the subgraph feeding it / fed by it), and `toposort_child_subgraph` with XIR's own order
(children sorted by name, edges added in op-name order, depth-first reverse post-order).
tests/runtime/test_xmodel_real.py requires identical answers from this and the real module on the real
KV260 xmodels in ../shared/vendor/xmodels.

`write_fake_xmodel` writes a small but real xmodel (the real XIR reads it too) for the runtime tests: a
USER input, N DPU subgraphs (N-1 CPU "custom op" subgraphs between them) and a CPU fix2float, with
the ONNX model the fake `vart` runner computes with stored in the DPU subgraphs' "flm_fake_onnx"
attribute.
"""
import os
from typing import Any, Dict, Iterable, List, Optional, Set

from runtime.xmodel import AttrValue, XmodelError, preflight

_TYPE_NAMES = ["INT", "UINT", "XINT", "XUINT", "FLOAT", "BFLOAT", "UNKNOWN"]
DATA_TYPE = {name: i for i, name in enumerate(_TYPE_NAMES)}


def _py(v: AttrValue) -> Any:
    """The Python value the real binding returns for an attribute (None for unconverted types)."""
    if v is None:
        return None
    if v.kind == "scalar" or (v.kind == "vec" and v.type != "Bytes") or v.kind in ("map:int32", "map:string"):
        return v.value
    return None


class _Attrs:
    def __init__(self, attrs: Optional[Dict[str, AttrValue]], what: str) -> None:
        self._attrs = dict(attrs or {})
        self._what = what

    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    def get_attr(self, name: str) -> Any:
        if name not in self._attrs:  # the real binding aborts (UNI_LOG_FATAL); raising is kinder
            raise RuntimeError("[XIR_OP_ATTR_NOT_FOUND] %s has no attr %s" % (self._what, name))
        return _py(self._attrs[name])

    def get_attrs(self) -> Dict[str, Any]:
        return {k: _py(v) for k, v in self._attrs.items()}


class Tensor(_Attrs):
    def __init__(self, d: Dict[str, Any], producer: "Op") -> None:
        super().__init__(d.get("tensor_attr"), "tensor %s" % d.get("tensor_name", ""))
        self.name = d.get("tensor_name", "")
        self.dims = [int(x) for x in d.get("tensor_dim", [])]
        t = int(d.get("data_type", 0))
        type_name = _TYPE_NAMES[t] if 0 <= t < len(_TYPE_NAMES) else "UNKNOWN"
        self.dtype = (type_name + str(int(d.get("tensor_bit_width", 0)))).lower()
        self.producer = producer

    @property
    def ndim(self) -> int:
        return len(self.dims)

    def get_element_num(self) -> int:
        n = 1
        for x in self.dims:
            n *= x
        return n

    def __repr__(self) -> str:
        return "<xir.Tensor named '%s'>" % self.name


class Op(_Attrs):
    def __init__(self, d: Dict[str, Any], ops: Dict[str, "Op"]) -> None:
        super().__init__(d.get("op_attr"), "op %s" % d.get("op_name", ""))
        self._name = d.get("op_name", "")
        self._type = d.get("op_type", "")
        self._inputs = {}  # type: Dict[str, List[Op]]
        for arg in d.get("args", []):
            srcs = [ops[n] for n in arg.get("arg_ops", [])]
            self._inputs.setdefault(arg.get("arg_name", ""), []).extend(srcs)
        self._fanout = []  # type: List[Op]
        for src in self.get_input_ops_flat():
            src._fanout.append(self)
        self._tensor = Tensor(d.get("output_tensor", {}), self)

    def get_name(self) -> str:
        return self._name

    def get_type(self) -> str:
        return self._type

    def get_input_ops(self) -> Dict[str, List["Op"]]:
        return {k: list(v) for k, v in self._inputs.items()}

    def get_input_ops_flat(self) -> List["Op"]:
        return [op for ops in self._inputs.values() for op in ops]

    def get_fanout_ops(self) -> List["Op"]:
        return list(self._fanout)

    def get_output_tensor(self) -> Tensor:
        return self._tensor

    def get_input_tensors(self) -> List[Tensor]:
        return [op.get_output_tensor() for op in self.get_input_ops_flat()]

    def __repr__(self) -> str:
        return "<xir.Op named '%s'>" % self._name


class Subgraph(_Attrs):
    def __init__(self, d: Dict[str, Any], ops: Dict[str, Op], parent: Optional["Subgraph"] = None) -> None:
        super().__init__(d.get("subg_attr"), "subgraph %s" % d.get("subgraph_name", ""))
        self._name = d.get("subgraph_name", "")
        self._parent = parent
        self._children = [Subgraph(c, ops, self) for c in d.get("subg_child", [])]
        own = [ops[n] for n in d.get("op_name", [])]
        self._ops = set(own)  # type: Set[Op]
        for c in self._children:
            self._ops |= c._ops

    def get_name(self) -> str:
        return self._name

    def get_parent(self) -> Optional["Subgraph"]:
        return self._parent

    @property
    def is_root(self) -> bool:
        return self._parent is None

    @property
    def is_leaf(self) -> bool:
        return not self._children

    def get_children(self) -> Set["Subgraph"]:
        return set(self._children)

    def get_children_num(self) -> int:
        return len(self._children)

    def get_ops(self) -> Set[Op]:
        return set(self._ops)

    def get_op_num(self) -> int:
        return len(self._ops)

    def has_op(self, name: str) -> bool:
        return any(op.get_name() == name for op in self._ops)

    def get_input_tensors(self) -> Set[Tensor]:
        return {src.get_output_tensor() for op in self._ops for src in op.get_input_ops_flat()
                if src not in self._ops}

    def get_output_tensors(self) -> Set[Tensor]:
        return {op.get_output_tensor() for op in self._ops
                if not op.get_fanout_ops() or any(f not in self._ops for f in op.get_fanout_ops())}

    def _child_of(self, op: Op) -> Optional["Subgraph"]:
        for c in self._children:
            if op in c._ops:
                return c
        return None

    def toposort_child_subgraph(self) -> List["Subgraph"]:
        """XIR's SubgraphImp::children_topological_sort, step for step."""
        order = sorted(self._children, key=lambda c: c._name)
        out_edges = {id(c): [] for c in order}  # type: Dict[int, List[Subgraph]]
        for child in order:
            ins, outs = [], []  # type: List[Op], List[Op]
            for op in child._ops:
                ins += [i for i in op.get_input_ops_flat()
                        if i in self._ops and self._child_of(i) is not child]
                outs += [f for f in op.get_fanout_ops() if f in self._ops and self._child_of(f) is not child]
            for op in sorted(ins, key=lambda o: o.get_name()):
                out_edges[id(self._child_of(op))].append(child)
            for op in sorted(outs, key=lambda o: o.get_name()):
                out_edges[id(child)].append(self._child_of(op))
        finished, state = [], {}  # type: List[Subgraph], Dict[int, int]
        for start in order:  # boost::topological_sort: DFS over vertices in order, reverse post-order
            if state.get(id(start)):
                continue
            stack = [(start, iter(out_edges[id(start)]))]
            state[id(start)] = 1
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    stack.pop()
                    state[id(node)] = 2
                    finished.append(node)
                elif state.get(id(nxt)) == 1:
                    raise RuntimeError("[XIR_SUBGRAPH_HAS_CYCLE] %s" % self._name)
                elif not state.get(id(nxt)):
                    state[id(nxt)] = 1
                    stack.append((nxt, iter(out_edges[id(nxt)])))
        return finished[::-1]

    def __repr__(self) -> str:
        return "<xir.Subgraph named '%s'>" % self._name


class Graph(_Attrs):
    def __init__(self, d: Dict[str, Any]) -> None:
        super().__init__(d.get("graph_attr"), "graph %s" % d.get("graph_name", ""))
        self._name = d.get("graph_name", "")
        self._ops = {}  # type: Dict[str, Op]
        for od in d.get("op_node", []):
            op = Op(od, self._ops)
            self._ops[op.get_name()] = op
        root = d.get("subg_root", {})
        self._root = Subgraph(root, self._ops)
        listed = self._root.get_ops()
        for op in self._ops.values():  # XIR gives every op a (leaf) subgraph of its own if none names it
            if op not in listed:
                self._root._children.append(Subgraph({"subgraph_name": "subgraph_" + op.get_name(),
                                                      "op_name": [op.get_name()]}, self._ops, self._root))
                self._root._ops.add(op)

    def get_name(self) -> str:
        return self._name

    def get_root_subgraph(self) -> Subgraph:
        return self._root

    def get_ops(self) -> List[Op]:
        return list(self._ops.values())

    def get_op(self, name: str) -> Optional[Op]:
        return self._ops.get(name)

    def get_op_num(self) -> int:
        return len(self._ops)

    @staticmethod
    def deserialize(fname: str) -> "Graph":
        try:
            return Graph(preflight(fname))
        except XmodelError as e:  # the real module aborts the process on such files (see runtime.xmodel)
            raise RuntimeError("[XIR_READ_PB_FAILURE] %s" % e) from e

    def __repr__(self) -> str:
        return "<xir.Graph named '%s'>" % self._name


# ----------------------------------------------------------------------------- writing (tests)
def _varint(v: int) -> bytes:
    if v < 0:
        v += 1 << 64
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _ld(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _vi(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _str(number: int, s: str) -> bytes:
    return _ld(number, s.encode("utf-8"))


def _attr_value(v: Any) -> bytes:
    """AttrValue: bool, int (int32), ("uint64", int), str, [int] (int32 vec), {str: str}."""
    if isinstance(v, bool):
        return _vi(4, int(v))
    if isinstance(v, tuple) and v[0] == "uint64":
        return _vi(8, int(v[1]))
    if isinstance(v, int):
        return _vi(5, v)
    if isinstance(v, str):
        return _str(11, v)
    if isinstance(v, list):
        return _ld(14, _ld(1, b"".join(_varint(int(x)) for x in v)))
    if isinstance(v, dict):
        return _ld(26, b"".join(_ld(1, _str(1, k) + _str(2, str(x))) for k, x in sorted(v.items())))
    raise TypeError("no AttrValue encoding for %r" % (v,))


def _attrs(number: int, attrs: Dict[str, Any]) -> bytes:
    return b"".join(_ld(number, _str(1, k) + _ld(2, _attr_value(v))) for k, v in sorted(attrs.items()))


def _tensor(name: str, dims: List[int], dtype: str, fix_point: Optional[int]) -> bytes:
    kind, bits = ("XINT", 8) if dtype == "xint8" else ("FLOAT", 32)
    attrs = {} if fix_point is None else {"fix_point": fix_point, "bit_width": 8, "if_signed": True,
                                          "round_mode": "DPU_ROUND"}
    return (_str(1, name) + _ld(2, b"".join(_varint(d) for d in dims)) + _vi(5, DATA_TYPE[kind])
            + _vi(6, bits) + _attrs(10, attrs))


def _op(name: str, typ: str, attrs: Dict[str, Any], inputs: Iterable[str], tensor: bytes) -> bytes:
    args = b"".join(_ld(4, _str(1, "input") + _str(2, i)) for i in inputs)
    return _ld(5, _str(1, name) + _str(2, typ) + _attrs(3, attrs) + args + _ld(5, tensor))


def _subgraph(name: str, ops: List[str], attrs: Dict[str, Any]) -> bytes:
    return _ld(10, _str(1, name) + b"".join(_str(3, o) for o in ops) + _attrs(5, attrs))


def _numel(dims: List[int]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def write_fake_xmodel(path: str, onnx_path: Optional[str], in_fix: int, out_fix: int, batch: int = 1,
                      dpu_subgraphs: int = 1, out_dims: Optional[List[int]] = None,
                      fingerprint: str = "0x101000056010407", in_dims: Optional[List[int]] = None,
                      name: str = "pfld") -> str:
    """Write a real (protobuf) xmodel: USER `image` -> DPU subgraph(s) -> CPU fix2float `landmarks`.

    XIR built-in ops only, with consistent shapes (XIR runs shape inference while loading), so the real
    XIR reads the file: the last DPU subgraph flattens, slices and reshapes the input into `out_dims`;
    with dpu_subgraphs > 1, reshape-fix DPU subgraphs come first, each followed by a CPU "custom op"
    subgraph that splits the DPU graph, as a custom layer does."""
    in_dims = in_dims or [batch, 112, 112, 1]
    out_dims = out_dims or [batch, 196]
    fp = int(fingerprint, 16)
    ops = [_op("image", "data-fix", {"device": "USER", "shape": in_dims, "data_type": "XINT8"}, [],
               _tensor("image", in_dims, "xint8", in_fix))]
    subs = [_subgraph("subgraph_image", ["image"], {"device": "USER"})]
    prev, prev_dims, prev_fix = "image", in_dims, in_fix
    for k in range(dpu_subgraphs):
        last = k == dpu_subgraphs - 1
        if last:  # XIR infers every op's shape on loading: flatten, slice the first values, reshape
            flat = [prev_dims[0], _numel(prev_dims) // prev_dims[0]]
            head = [prev_dims[0], _numel(out_dims) // prev_dims[0]]
            part = [("%s_flat" % name, "reshape-fix", {"shape": flat}, flat, prev_fix),
                    ("%s_head" % name, "strided_slice-fix", {"begin": [0, 0], "end": head, "strides": [1, 1]},
                     head, out_fix),
                    ("landmarks", "reshape-fix", {"shape": out_dims}, out_dims, out_fix)]
        else:
            part = [("%s_part%d" % (name, k), "reshape-fix", {"shape": prev_dims}, prev_dims, prev_fix)]
        for op_name, typ, attrs, dims, fix in part:
            tensor = _tensor(op_name, dims, "xint8", fix)
            ops.append(_op(op_name, typ, dict(attrs, device="DPU"), [prev], tensor))
            prev = op_name
        attrs = {"device": "DPU", "dpu_fingerprint": ("uint64", fp), "dpu_name": "DPUCZDX8G_ISA1_B4096",
                 "runner": {"ref": "libvart-cpu-runner.so", "run": "libvart-dpu-runner.so",
                            "sim": "libvart-sim-runner.so"}}
        if onnx_path:
            attrs["flm_fake_onnx"] = os.path.abspath(onnx_path)
        subs.append(_subgraph("subgraph_%s_dpu%d" % (name, k), [p[0] for p in part], attrs))
        if not last:
            custom = "custom_op_%d" % k
            ops.append(_op(custom, "reshape-fix", {"device": "CPU", "shape": prev_dims}, [prev],
                           _tensor(custom, prev_dims, "xint8", prev_fix)))
            subs.append(_subgraph("subgraph_" + custom, [custom], {"device": "CPU"}))
            prev = custom
    tail = "landmarks_fix2float"
    ops.append(_op(tail, "fix2float", {"device": "CPU", "fix_point": out_fix, "bit_width": 8,
                                       "if_signed": True, "round_mode": "DPU_ROUND"}, [prev],
                   _tensor(tail, out_dims, "float32", None)))
    subs.append(_subgraph("subgraph_" + tail, [tail], {"device": "CPU"}))
    root = _ld(10, _str(1, "root") + b"".join(subs))
    with open(path, "wb") as f:
        f.write(_str(1, name) + b"".join(ops) + root)
    return path
