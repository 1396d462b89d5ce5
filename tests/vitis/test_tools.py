"""Outside the docker: every command needing vai_q/vai_c says which tool and image, exits 2,
and writes nothing; the command module imports no TensorFlow."""
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from keras_flm.cli import cli
from vitis import tools
from vitis.config import VITIS_AI_IMAGE

CASES = [
    (["quantize", "--mode", "ptq"], "vai_q_tensorflow2"),
    (["quantize", "--mode", "qat", "--calib", "50", "--no-cle", "--dump"], "vai_q_tensorflow2"),
    (["inspect"], "vai_q_tensorflow2"),
    (["compile", "--fingerprint", "0x101000016010407"], "vai_c_tensorflow2"),
]


def _snapshot(d):
    return sorted(os.path.relpath(os.path.join(p, f), d) for p, _, fs in os.walk(d) for f in fs)


@pytest.mark.parametrize("args,tool", CASES, ids=[c[0][0] + "-" + str(i) for i, c in enumerate(CASES)])
def test_missing_tools_exit_2_with_docker_line(run_dir, args, tool, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no vai_c_tensorflow2 anywhere
    monkeypatch.setenv("FLM_VAI_Q_CACHE", str(tmp_path / "no-build"))  # and no vai_q host build
    before = _snapshot(run_dir)
    r = CliRunner().invoke(cli, ["vitis", args[0], "--run", str(run_dir)] + args[1:])
    assert r.exit_code == 2, r.output
    assert tool in r.output and VITIS_AI_IMAGE in r.output
    assert "docker build -t flm-vitis ." in r.output
    assert ("docker run --rm -v \"$PWD\":/workspace flm-vitis flm vitis %s --run %s" % (args[0], run_dir)) \
        in r.output
    for extra in args[1:]:
        if extra.startswith("--") and extra not in ("--mode",):
            assert extra in r.output  # the non-default options are carried into the docker line
    if args[0] == "quantize":  # vai_q also builds on this host
        assert "make vai-q" in r.output
    assert _snapshot(run_dir) == before


def test_loaders_raise_tool_missing(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with pytest.raises(tools.VitisToolMissing) as e:
        tools.find_compiler("flm vitis compile --run runs/x")
    assert e.value.exit_code == 2 and "vai_c_tensorflow2 is not on PATH" in e.value.message
    with pytest.raises(tools.VitisToolMissing, match="stock TFMOT, not the Vitis AI fork"):
        tools.load_vai_q()
    monkeypatch.setitem(sys.modules, "xir", None)  # as where XIR is not built (`make xir` builds it here)
    assert tools.load_xir() is None


def test_no_tfmot_at_all_fails_fast(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorflow_model_optimization" else real(name, *a))
    with pytest.raises(tools.VitisToolMissing, match="no tensorflow_model_optimization installed"):
        tools.load_vai_inspect()


def test_command_module_imports_no_tensorflow():
    code = ("import sys, vitis.commands, vitis.lint, vitis.compile, vitis.bundle, vitis.tools; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
