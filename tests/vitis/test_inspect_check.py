"""`flm vitis inspect` with the stand-in Inspector, and `flm vitis check` on a compiled run."""
import json

import pytest
from click.testing import CliRunner

import vitis.tools
from keras_flm.cli import cli
from keras_flm.keras_compat import get_keras
from vitis.compile import CompileError, check_compiled, compile_model, resolve_arch

from .test_compile import _runner_from_fake


@pytest.fixture
def fake_inspector(fake_vq, monkeypatch):
    monkeypatch.setattr(vitis.tools, "load_vai_inspect", lambda command="": fake_vq.vitis_inspect)


def test_inspect_writes_results(run_dir, fake_inspector):
    r = CliRunner().invoke(cli, ["vitis", "inspect", "--run", str(run_dir)])
    assert r.exit_code == 0, r.output
    assert "All layers are supported" in (run_dir / "vitis" / "inspect.txt").read_text()
    data = json.loads((run_dir / "vitis" / "inspect.json").read_text())
    assert data["cpu_layers"] == [] and data["target"] == "DPUCZDX8G_ISA1_B4096"
    assert {row["device"] for row in data["layers"]} == {"INPUT", "DPU"}


def test_inspect_fails_naming_cpu_layers(run_dir, fake_inspector):
    keras = get_keras()
    inp = keras.Input((112, 112, 1))
    out = keras.layers.Softmax(name="head_softmax")(keras.layers.Conv2D(4, 3)(inp))
    keras.Model(inp, out).save(str(run_dir / "fp32.h5"), save_format="h5")
    r = CliRunner().invoke(cli, ["vitis", "inspect", "--run", str(run_dir)])
    assert r.exit_code == 1
    assert "head_softmax" in r.output
    assert (run_dir / "vitis" / "inspect.txt").is_file()  # the table is kept to read why


def test_check_compares_the_board_fingerprint(run_dir):
    (run_dir / "vitis_ptq.h5").write_bytes((run_dir / "fp32.h5").read_bytes())
    compile_model(str(run_dir), "vitis_ptq", resolve_arch(), runner=_runner_from_fake())
    res = check_compiled(str(run_dir), "0x101000056010407")
    assert res["board_fingerprint"] == res["fingerprint"] == "0x101000056010407"
    with pytest.raises(CompileError, match="--fingerprint 0x101000016010407"):
        check_compiled(str(run_dir), "0x101000016010407")
    r = CliRunner().invoke(cli, ["vitis", "check", "--run", str(run_dir), "--board-fingerprint",
                                 "0x101000016010407"])
    assert r.exit_code == 1 and "CHECK fingerprint fail" in r.output
    (run_dir / "vitis" / "vitis_ptq" / "flm_pfld.xmodel").write_bytes(b"changed")
    with pytest.raises(CompileError, match="recorded"):
        check_compiled(str(run_dir))
