"""No import circles among flm's modules, lazy (in-function) imports included.

Why: a circle works only while one side imports lazily, and breaks the day someone moves an
import to the top; three had crept in (train <-> run_report, export <-> onnx_qdq,
vitis.commands <-> vai_q_env)."""
import ast
import os
from typing import Dict, List, Set

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("keras_flm", "quant", "runtime", "vitis")


def module_graph(root: str = ROOT) -> Dict[str, Set[str]]:
    """{module: the flm modules it imports anywhere in its file}."""
    files = {}
    for pkg in PACKAGES:
        for d, _, names in os.walk(os.path.join(root, pkg)):
            for n in names:
                if n.endswith(".py"):
                    mod = os.path.relpath(os.path.join(d, n), root)[:-3].replace(os.sep, ".")
                    files[mod[:-len(".__init__")] if mod.endswith(".__init__") else mod] = os.path.join(d, n)
    graph = {}
    for mod, path in files.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps.add(node.module)
                deps.update("%s.%s" % (node.module, a.name) for a in node.names)
        graph[mod] = {d for d in deps if d in files and d != mod}
    return graph


def circles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_circle_through_a_lazy_import(tmp_path):
    pkg = tmp_path / "runtime"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from runtime.b import x\n")
    (pkg / "b.py").write_text("def x():\n    from runtime import c\n")
    (pkg / "c.py").write_text("import runtime.a\n")
    assert circles(module_graph(str(tmp_path))) == [["runtime.a", "runtime.b", "runtime.c"]]


def test_no_import_circles():
    assert circles(module_graph()) == []
