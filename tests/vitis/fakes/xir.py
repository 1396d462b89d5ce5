"""Stand-in for `xir` (docs/vitis-ai.md §6) reading the JSON "fake-xmodel" written by vai_c.py."""
import json
from typing import Any, Dict, List

FORMAT = "fake-xmodel"


class Tensor:
    def __init__(self, d: Dict[str, Any]) -> None:
        self.name = d["name"]
        self.dims = list(d["dims"])
        self.dtype = "xint8"
        self._attrs = {"fix_point": int(d["fix_point"])}

    def has_attr(self, key: str) -> bool:
        return key in self._attrs

    def get_attr(self, key: str) -> Any:
        return self._attrs[key]


class Subgraph:
    def __init__(self, d: Dict[str, Any], io: Dict[str, Any]) -> None:
        self._name = d["name"]
        self._attrs = dict(d.get("attrs", {}))
        if "device" in d:
            self._attrs["device"] = d["device"]
        self._io = io if d.get("device") == "DPU" else {}
        self._children: List["Subgraph"] = []

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
        return [Tensor(self._io["input"])] if self._io else []

    def get_output_tensors(self) -> List[Tensor]:
        return [Tensor(self._io["output"])] if self._io else []


class Graph:
    def __init__(self, root: Subgraph) -> None:
        self._root = root

    def get_root_subgraph(self) -> Subgraph:
        return self._root

    @staticmethod
    def deserialize(path: str) -> "Graph":
        with open(path) as f:
            d = json.load(f)
        if d.get("format") != FORMAT:
            raise RuntimeError("[XIR_MAKE_GRAPH_FAIL] %s is not an xmodel" % path)
        root = Subgraph({"name": "root"}, {})
        root._children = [Subgraph(s, d.get("model", {})) for s in d["subgraphs"]]
        return Graph(root)
