"""`flm vitis inspect` with the stand-in Inspector, and `flm vitis check` on a compiled run and on the real
KV260 xmodels (../shared/vendor/xmodels), with the real XIR (`make xir`) and with the stand-in."""
import json
import os

import pytest
from click.testing import CliRunner

import vitis.tools
from keras_flm.cli import cli
from keras_flm.keras_compat import get_keras
from tests.runtime.fake_vitis import impl
from tests.runtime.fake_vitis.impl import CUSTOM_OP, FINGERPRINT, MNIST, require_vendor
from vitis.compile import CompileError, check_compiled, compile_model, resolve_arch
from vitis.files import md5_file

from .test_compile import _runner_from_fake

xir_impl = impl.xir_impl  # the fixture: real XIR and stand-in


@pytest.fixture
def fake_inspector(fake_vi, monkeypatch):
    monkeypatch.setattr(vitis.tools, "load_vai_inspect", lambda command="": fake_vi.vitis_inspect)


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


def test_check_compares_the_board_fingerprint(run_dir, xir_impl):
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


# ----------------------------------------------------------------------------- real KV260 xmodels
def _install_xmodel(run_dir, src, dpu_subgraphs):
    """A run whose compile.json records a copy of `src` (as if vai_c had written it)."""
    out = run_dir / "vitis" / "vitis_ptq"
    out.mkdir(parents=True, exist_ok=True)
    dst = out / src.name
    dst.write_bytes(src.read_bytes())
    rec = {"model": "vitis_ptq", "xmodel": os.path.join("vitis", "vitis_ptq", src.name),
           "md5": md5_file(str(dst)),
           "dpu_subgraphs": dpu_subgraphs, "total_subgraphs": 2 * dpu_subgraphs + 1,
           "fingerprint": FINGERPRINT, "fingerprint_source": "Vitis AI 3.x target_factory value"}
    (run_dir / "vitis" / "compile.json").write_text(json.dumps(rec))
    return dst


def test_check_mnist_xmodel(xir_impl):
    """One DPU subgraph: the subgraph rule passes and the fingerprint is read from the file; its
    28x28x1 input is not the crop contract, so the check fails saying what it expects."""
    require_vendor()
    r = CliRunner().invoke(cli, ["vitis", "check", "--xmodel", str(MNIST)])
    assert r.exit_code == 1
    out = r.output
    assert ("subgraphs: subgraph_input_1:USER, subgraph_quant_conv2d:DPU, subgraph_quant_dense_1_softmax:CPU"
            in out)
    assert "subgraph_quant_conv2d input: quant_input_1 [1, 28, 28, 1] xint8, fix_point 6" in out
    assert "DPU subgraphs: 1 (pass: exactly 1)" in out
    assert "fingerprint: 0x101000056010407 (xmodel (XIR))" in out
    assert "flm feeds [batch, 112, 112, 1]" in out and "fails 2 check(s)" in out
    r = CliRunner().invoke(cli, ["vitis", "check", "--xmodel", str(MNIST), "--board-fingerprint",
                                 FINGERPRINT])
    assert "board fingerprint 0x101000056010407 matches." in r.output and "fails 2 check(s)" in r.output
    r = CliRunner().invoke(cli, ["vitis", "check", "--xmodel", str(MNIST), "--board-fingerprint",
                                 "0x101000016010407"])
    assert r.exit_code == 1 and "fails 3 check(s)" in r.output
    assert "CHECK fingerprint fail" in r.output
    assert "Recompile with `flm vitis compile --run runs/NAME --fingerprint 0x101000016010407`" in r.output


def test_check_custom_op_xmodel_names_the_cpu_subgraph(xir_impl):
    require_vendor()
    r = CliRunner().invoke(cli, ["vitis", "check", "--xmodel", str(CUSTOM_OP)])
    assert r.exit_code == 1
    assert "DPU subgraphs: 2 (FAIL: need 1)" in r.output
    assert "split by the CPU subgraph subgraph_custom_layer [custom_layer (Mylayer)" in r.output


def test_check_run_reads_the_recorded_xmodel(xir_impl, run_dir):
    require_vendor()
    _install_xmodel(run_dir, MNIST, 1)
    with pytest.raises(CompileError) as e:
        check_compiled(str(run_dir), "0x101000016010407", xir=xir_impl)
    msg = str(e.value)
    assert "expects input quant_input_1 [1, 28, 28, 1]" in msg
    assert "`flm vitis compile --run %s --fingerprint 0x101000016010407`" % run_dir in msg
    res = check_compiled(str(run_dir), xir=xir_impl, strict=False)
    assert res["dpu_subgraphs"] == 1 and res["fingerprint_source"] == "xmodel (XIR)"
    assert res["read_with"].startswith("XIR (")


def test_check_bad_files(xir_impl, tmp_path):
    require_vendor()
    cut = tmp_path / "cut.xmodel"
    cut.write_bytes(CUSTOM_OP.read_bytes()[:5000])
    r = CliRunner().invoke(cli, ["vitis", "check", "--xmodel", str(cut)])
    assert r.exit_code == 1 and "cut.xmodel is not a readable xmodel (5000 bytes)" in r.output
    r = CliRunner().invoke(cli, ["vitis", "check", "--xmodel", str(tmp_path / "none.xmodel")])
    assert r.exit_code == 2 and "no such file" in r.output
    r = CliRunner().invoke(cli, ["vitis", "check"])
    assert r.exit_code == 2 and "exactly one of --run" in r.output


def test_check_xmodel_file_needs_xir(monkeypatch):
    monkeypatch.setattr(vitis.tools, "load_xir", lambda: None)
    r = CliRunner().invoke(cli, ["vitis", "check", "--xmodel", str(MNIST)])
    assert r.exit_code == 2 and "needs XIR" in r.output and "make xir" in r.output
