"""One JSON reader for every file flm writes; run files without an import circle."""
import ast
import math
import os

import pytest

from keras_flm.report_md import read_json
from keras_flm.run_files import STATE_JSON, read_state, write_state

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_read_json_default_missing_and_damaged(tmp_path):
    path = str(tmp_path / "x.json")
    assert read_json(path, {}) == {} and read_json(path, None) is None
    with pytest.raises(FileNotFoundError):
        read_json(path)
    with open(path, "w") as f:
        f.write('{\n  "a": 1,\n  "b": \n}\n')
    with pytest.raises(ValueError, match=r"x\.json is not valid JSON \(line 4\)"):
        read_json(path, {})  # a damaged file is an error even when absence would not be


def test_state_round_trips_an_infinite_best(tmp_path):
    assert read_state(str(tmp_path)) == {}
    write_state(str(tmp_path), {"best_val_nme": float("inf"), "epochs_done": 0})
    st = read_state(str(tmp_path))
    assert math.isinf(st["best_val_nme"]) and st["epochs_done"] == 0
    assert sorted(os.listdir(tmp_path)) == [STATE_JSON]  # no temp file left behind


def _imports(rel_path: str) -> set:
    """Every module a file imports, at top level or inside functions."""
    with open(os.path.join(ROOT, rel_path)) as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("a,b", [("keras_flm/train.py", "keras_flm/run_report.py"),
                                 ("quant/export.py", "quant/ptq.py")])
def test_no_import_circle(a, b):
    mod = lambda p: p[:-3].replace("/", ".")  # noqa: E731
    assert not (mod(b) in _imports(a) and mod(a) in _imports(b))
