"""CLI wiring: entry points, and `--help` paths that must not import TensorFlow."""
import subprocess
import sys

import pytest

PROBE = """
import sys
from click.testing import CliRunner
from {mod} import cli
r = CliRunner().invoke(cli, ["--help"])
assert r.exit_code == 0, r.output
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "keras"))
print("HEAVY", heavy)
print(r.output)
"""


@pytest.mark.parametrize("mod", ["keras_flm.cli", "runtime.cli"])
def test_help_does_not_import_tensorflow(mod):
    out = subprocess.run([sys.executable, "-c", PROBE.format(mod=mod)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout, out.stdout


def test_flm_lists_registered_groups():
    from click.testing import CliRunner

    from keras_flm.cli import cli
    out = CliRunner().invoke(cli, ["--help"]).output
    for name in ("model", "data", "train", "eval", "quantize", "export", "report", "vitis", "bench"):
        assert name in out


def test_model_summary_runs():
    from click.testing import CliRunner

    from keras_flm.cli import cli
    r = CliRunner().invoke(cli, ["model", "summary", "--width", "0.25"])
    assert r.exit_code == 0, r.output
    assert "inference" in r.output and "MMACs" in r.output


def test_console_scripts_installed():
    from importlib import metadata
    names = {ep.name for ep in metadata.entry_points().select(group="console_scripts")}
    assert {"flm", "flm-dpu"} <= names
