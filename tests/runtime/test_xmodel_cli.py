"""`flm-dpu info` and `flm-dpu run` on the two real KV260 xmodels, with the real XIR (`make xir`) and with
the stand-in: what XIR reports is printed as is, and a model flm cannot feed is refused before a frame
is read, saying what the model expects and what flm needs."""
import sys

import pytest
from click.testing import CliRunner

import runtime.video
from runtime.cli import cli
from tests.runtime.fake_vitis import impl
from tests.runtime.fake_vitis.impl import CUSTOM_OP, FINGERPRINT, MNIST, require_vendor
from tests.runtime.fake_vitis.xir import write_fake_xmodel

xir_impl = impl.xir_impl  # the fixture: real XIR and stand-in


@pytest.fixture
def no_frames(monkeypatch):
    """Fail the test if `run` opens its source: the refusal must come first."""
    def never(*a, **k):
        raise AssertionError("the source was opened before the model was refused")

    monkeypatch.setattr(runtime.video, "open_source", never)


def test_info_mnist(xir_impl):
    require_vendor()
    r = CliRunner().invoke(cli, ["info", "--model", str(MNIST)])
    out = r.output
    assert "graph mnist_classifier, 3 subgraphs, 1 on the DPU" in out
    assert "USER subgraph_input_1  [input_1 (data-fix)]" in out
    assert "DPU  subgraph_quant_conv2d  (DPUCZDX8G_ISA1_B4096, fingerprint %s)" % FINGERPRINT in out
    assert "in   quant_input_1 [1, 28, 28, 1] xint8, fix_point 6" in out
    assert "out  quant_dense_1_softmax_fix [1, 10] xint8, fix_point 2" in out
    assert "CPU  subgraph_quant_dense_1_softmax  [quant_dense_1_softmax (softmax)" in out
    assert '"input_fix_point": 6' in out and '"dpu_fingerprint": "%s"' % FINGERPRINT in out
    assert "read with xir: %s" % xir_impl.__file__ in out
    assert r.exit_code == 1 and "flm cannot run" in out and "flm feeds [batch, 112, 112, 1]" in out


def test_info_custom_op(xir_impl):
    require_vendor()
    r = CliRunner().invoke(cli, ["info", "--model", str(CUSTOM_OP)])
    out = r.output
    assert "graph functional_1, 5 subgraphs, 2 on the DPU" in out
    assert "in   quant_input_1 [1, 28, 28, 1] xint8, fix_point -2" in out
    assert "DPU  subgraph_quant_dense(TransferMatMulToConv2d)  (DPUCZDX8G_ISA1_B4096" in out
    assert "CPU  subgraph_custom_layer  [custom_layer (Mylayer)" in out
    assert r.exit_code == 1 and "split by the CPU subgraph subgraph_custom_layer" in out


@pytest.mark.parametrize("model,why", [
    (MNIST, r"expects input quant_input_1 [1, 28, 28, 1] xint8, fix_point 6; flm feeds [batch, 112, 112, 1]"),
    (CUSTOM_OP, "has 2 DPU subgraphs"),
], ids=["mnist", "custom_op"])
def test_run_refuses_real_xmodels_before_reading_frames(xir_impl, no_frames, face_video, model, why):
    require_vendor()
    r = CliRunner().invoke(cli, ["run", "--video", face_video[0], "--model", str(model), "--no-display"])
    assert r.exit_code == 1 and "cannot run in flm" in r.output and why in r.output


def test_run_on_a_host_without_the_dpu(xir_impl, no_frames, face_video, tiny_model_onnx, tmp_path,
                                       monkeypatch):
    """A model that fits, on a machine without VART: refused, saying what it takes and what to run instead."""
    monkeypatch.setitem(sys.modules, "vart", None)
    xm = write_fake_xmodel(str(tmp_path / "pfld.xmodel"), tiny_model_onnx, 7, 6)
    r = CliRunner().invoke(cli, ["run", "--video", face_video[0], "--model", xm, "--no-display"])
    assert r.exit_code == 1
    assert "fits flm (DPU subgraph subgraph_pfld_dpu0" in r.output and "no DPU runtime" in r.output
    assert "in image [1, 112, 112, 1] xint8, fix_point 7" in r.output and "ONNX or TFLite export" in r.output


def test_info_on_a_truncated_copy(xir_impl, tmp_path):
    require_vendor()
    p = tmp_path / "cut.xmodel"
    p.write_bytes(MNIST.read_bytes()[:-10])
    r = CliRunner().invoke(cli, ["info", "--model", str(p)])
    assert r.exit_code == 1 and "cut.xmodel is not a readable xmodel" in r.output and "truncated" in r.output
