"""One JSON reader (runtime.json_files.read_json) with one contract, and the callers that hand its
message on in their own error type: every damaged file is reported by name and line."""
import os

import click
import pytest

from runtime.json_files import read_json

DAMAGED = '{\n  "a": 1,\n  "b": \n}\n'  # the error is on line 4


def _damaged(tmp_path, name: str) -> str:
    path = str(tmp_path / name)
    with open(path, "w") as f:
        f.write(DAMAGED)
    return path


def test_default_missing_and_damaged(tmp_path):
    path = str(tmp_path / "x.json")
    assert read_json(path, {}) == {} and read_json(path, None) is None
    with pytest.raises(FileNotFoundError):
        read_json(path)
    _damaged(tmp_path, "x.json")
    with pytest.raises(ValueError, match=r"x\.json is not valid JSON \(line 4\)"):
        read_json(path, {})  # a damaged file is an error even when absence would not be


def test_the_keras_side_reads_with_the_same_function():
    from keras_flm import report_md

    assert report_md.read_json is read_json


def test_bundle_records_say_backend_error_with_the_line(tmp_path):
    from runtime.backends.base import BackendError
    from runtime.bundle import read_json_object

    with pytest.raises(BackendError, match=r"meta\.json is not valid JSON \(line 4\)"):
        read_json_object(_damaged(tmp_path, "meta.json"))
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(BackendError, match="must hold a JSON object, got list"):
        read_json_object(str(tmp_path / "list.json"))


def test_video_ground_truth(tmp_path):
    from runtime.stability import read_truth

    with pytest.raises(ValueError, match=r"v\.json is not valid JSON \(line 4\)"):
        read_truth(_damaged(tmp_path, "v.json"))


def test_release_inputs(tmp_path):
    from click.testing import CliRunner

    from quant.commands import release
    from quant.release import speed_rows

    assert speed_rows(str(tmp_path)) is None  # no bench.json: no speed table
    _damaged(tmp_path, "bench.json")
    with pytest.raises(ValueError, match=r"bench\.json is not valid JSON \(line 4\)"):
        speed_rows(str(tmp_path))
    tracking = _damaged(tmp_path, "tracking.json")
    r = CliRunner().invoke(release, ["--run", str(tmp_path), "--tracking", tracking])
    assert r.exit_code != 0 and "tracking.json is not valid JSON (line 4)" in r.output


def test_compile_record_and_arch_file(tmp_path):
    from vitis.compile import CompileError, check_compiled, resolve_arch
    from vitis.config import VITIS_DIR

    os.makedirs(str(tmp_path / VITIS_DIR))
    _damaged(tmp_path / VITIS_DIR, "compile.json")
    with pytest.raises(CompileError, match=r"compile\.json is not valid JSON \(line 4\)"):
        check_compiled(str(tmp_path))
    with pytest.raises(click.BadParameter, match=r"arch\.json is not valid JSON \(line 4\)"):
        resolve_arch(arch_json=_damaged(tmp_path, "arch.json"))
