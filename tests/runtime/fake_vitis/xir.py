"""Stand-in for the board's `xir` module (docs/vitis-ai.md section 6): Graph.deserialize,
get_root_subgraph().toposort_child_subgraph(), Subgraph.has_attr/get_attr/get_name and
get_input_tensors/get_output_tensors.

The "xmodel" it reads is JSON written by `write_fake_xmodel` (runtime tests, with an ONNX model
the fake vart runner executes) or by tests/vitis/fakes/vai_c.py (compile tests, I/O only)."""
import json
import os
from typing import Any, Dict, List, Optional

FORMAT = "fake-xmodel"


class Tensor:
    def __init__(self, name: str, dims: List[int], fix_point: Optional[int]) -> None:
        self.name = name
        self.dims = list(dims)
        self.dtype = "xint8"
        self._attrs = {} if fix_point is None else {"fix_point": int(fix_point)}

    def has_attr(self, key: str) -> bool:
        return key in self._attrs

    def get_attr(self, key: str) -> Any:
        if key not in self._attrs:
            raise RuntimeError("tensor %s has no attr %s" % (self.name, key))
        return self._attrs[key]


class Subgraph:
    def __init__(self, name: str, attrs: Dict[str, Any], children: Optional[List["Subgraph"]] = None,
                 spec: Optional[Dict[str, Any]] = None) -> None:
        self._name = name
        self._attrs = dict(attrs)
        self._children = children or []
        self.spec = spec  # the fake model description, read by the fake vart runner

    def get_name(self) -> str:
        return self._name

    def has_attr(self, key: str) -> bool:
        return key in self._attrs

    def get_attr(self, key: str) -> Any:
        if key not in self._attrs:
            raise RuntimeError("subgraph %s has no attr %s" % (self._name, key))
        return self._attrs[key]

    def toposort_child_subgraph(self) -> List["Subgraph"]:
        return list(self._children)

    def get_input_tensors(self) -> List[Tensor]:
        return [_tensor(self.spec["input"])] if self.spec else []

    def get_output_tensors(self) -> List[Tensor]:
        return [_tensor(self.spec["output"])] if self.spec else []


def _tensor(d: Dict[str, Any]) -> Tensor:
    return Tensor(d["name"], d["dims"], d.get("fix_point"))


class Graph:
    def __init__(self, name: str, root: Subgraph) -> None:
        self._name = name
        self._root = root

    def get_name(self) -> str:
        return self._name

    def get_root_subgraph(self) -> Subgraph:
        return self._root

    @staticmethod
    def deserialize(path: str) -> "Graph":
        try:
            with open(path) as f:
                d = json.load(f)
        except (OSError, ValueError) as e:
            raise RuntimeError("[XIR_MAKE_GRAPH_FAIL] cannot deserialize %s: %s" % (path, e)) from e
        if d.get("format") != FORMAT:
            raise RuntimeError("[XIR_MAKE_GRAPH_FAIL] %s is not an xmodel" % path)
        base = os.path.dirname(os.path.abspath(path))
        children = []
        for s in d["subgraphs"]:
            attrs = dict(s.get("attrs", {}))
            if "device" in s:
                attrs["device"] = s["device"]
            spec = None
            if s.get("device") == "DPU":
                spec = dict(d.get("model", {}))
                if "onnx" in spec:
                    spec["onnx"] = os.path.join(base, spec["onnx"])
            children.append(Subgraph(s["name"], attrs, spec=spec))
        return Graph(d.get("name", "net"), Subgraph("root", {}, children))


def write_fake_xmodel(path: str, onnx_path: str, in_fix: int, out_fix: int, batch: int = 1,
                      dpu_subgraphs: int = 1, out_dims: Optional[List[int]] = None,
                      fingerprint: str = "0x101000056010407") -> str:
    """Write a fake xmodel: USER input subgraph, `dpu_subgraphs` DPU subgraphs, CPU fix2float."""
    subs = [{"name": "subgraph_image", "device": "USER"}]
    for i in range(dpu_subgraphs):
        subs.append({"name": "subgraph_pfld_%d" % i, "device": "DPU",
                     "attrs": {"dpu_fingerprint": fingerprint, "dpu_name": "DPUCZDX8G_ISA1_B4096"}})
    subs.append({"name": "subgraph_landmarks_fix2float", "device": "CPU"})
    model = {"onnx": os.path.relpath(onnx_path, os.path.dirname(os.path.abspath(path))),
             "input": {"name": "image__fix", "dims": [batch, 112, 112, 1], "fix_point": in_fix},
             "output": {"name": "landmarks__fix", "dims": out_dims or [batch, 196], "fix_point": out_fix}}
    with open(path, "w") as f:
        json.dump({"format": FORMAT, "name": "pfld", "subgraphs": subs, "model": model}, f)
    return path
