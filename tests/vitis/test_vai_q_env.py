"""vitis.vai_q_env without building: sources, cache keys, clear errors, and how `flm vitis quantize`
hands itself to the host build."""
import io
import os
import subprocess
import sys
import tarfile

import pytest
from click.testing import CliRunner

from keras_flm.cli import cli
from vitis import vai_q_env as V


def _fake_subtree(root):
    """The files resolve_source looks for in a vai_q_tensorflow2.x tree."""
    ops = root / V.OPS_DIR
    ops.mkdir(parents=True)
    (ops / "CMakeLists.txt").write_text("project(vai_q_tensorflow)\n")
    (root / "setup.py").write_text("# setup\n")
    return root


@pytest.fixture
def no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLM_VAI_Q_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VITIS_AI_SRC", raising=False)
    return tmp_path / "cache"


def test_vitis_ai_src_may_be_a_checkout_a_subtree_or_a_tarball(tmp_path, monkeypatch):
    checkout = tmp_path / "Vitis-AI"
    sub = _fake_subtree(checkout / V.SUBTREE)
    monkeypatch.setenv("VITIS_AI_SRC", str(checkout))
    assert V.resolve_source() == ("dir", str(sub))
    assert V.resolve_source(str(sub)) == ("dir", str(sub))
    tar = tmp_path / "src.tar.gz"
    with tarfile.open(str(tar), "w:gz") as t:
        t.add(str(checkout), arcname="Vitis-AI-3.5")
    assert V.resolve_source(str(tar)) == ("tar", str(tar))
    assert V._tar_prefix(str(tar)) == "Vitis-AI-3.5/" + V.SUBTREE + "/"


def test_missing_or_wrong_source_says_what_to_point_at(tmp_path, monkeypatch):
    monkeypatch.setenv("VITIS_AI_SRC", str(tmp_path / "nowhere"))
    with pytest.raises(V.VaiQError, match="VITIS_AI_SRC=.*nowhere.*git clone -b v3.5"):
        V.resolve_source()
    (tmp_path / "empty").mkdir()
    with pytest.raises(V.VaiQError, match="neither a Vitis-AI checkout"):
        V.resolve_source(str(tmp_path / "empty"))
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(str(bad), "w:gz") as t:
        info = tarfile.TarInfo("README")
        info.size = 2
        t.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(V.VaiQError, match="holds no vai_q_tensorflow2 source"):
        V.resolve_source(str(bad))
    assert "nowhere" in V.why_missing() and V.find() is None


def test_cache_key_follows_the_source_not_its_build_outputs(tmp_path):
    sub = _fake_subtree(tmp_path / "q")
    d0 = V.source_digest("dir", str(sub))
    (sub / V.OPS_DIR / "build").mkdir()
    (sub / V.OPS_DIR / "build" / "x.o").write_bytes(b"\0")
    assert V.source_digest("dir", str(sub)) == d0  # build/, gen_files/, pkgs/ do not count
    (sub / "setup.py").write_text("# changed\n")
    d1 = V.source_digest("dir", str(sub))
    assert d1 != d0
    assert V.cache_key(d1, (3, 11)) == V.cache_key(d1, (3, 11)) != V.cache_key(d1, (3, 10))
    assert V.cache_key(d1, (3, 11)).startswith("vai_q-") and V.cache_key(d1, (3, 11)).endswith("-py311")


def test_not_built_is_found_as_such(no_cache):
    pytest.importorskip("tarfile")
    try:
        V.resolve_source()
    except V.VaiQError:
        pytest.skip("no vendored vai_q source")
    assert V.find() is None
    msg = V.why_missing()
    assert "make vai-q" in msg and str(no_cache) in msg
    out = subprocess.run([sys.executable, "-m", "vitis.vai_q_env", "where"], capture_output=True, text=True,
                         env=dict(os.environ))
    assert out.returncode == 1 and "make vai-q" in out.stderr


def test_missing_build_tool_names_the_apt_package(no_cache, tmp_path, monkeypatch):
    import shutil

    real = shutil.which
    monkeypatch.setattr(shutil, "which",
                        lambda name, *a, **k: None if name == "swig" else real(name, *a, **k))
    with pytest.raises(V.VaiQError, match="needs swig: apt-get install swig"):
        V.check_tools()
    sub = _fake_subtree(tmp_path / "q")
    with pytest.raises(V.VaiQError, match="apt-get install swig"):
        V.build(str(sub))
    assert not [p for p in os.listdir(str(no_cache)) if not p.endswith(".lock")]  # nothing half-built


def test_unsupported_python_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "python3.12"
    fake.write_text("#!/bin/sh\necho 3 12\n")
    fake.chmod(0o755)
    monkeypatch.setenv("VAI_Q_PYTHON", str(fake))
    with pytest.raises(V.VaiQError, match="Python 3.12.*Python 3.8-3.11 only"):
        V.pick_python()


def test_quantize_hands_every_option_to_the_host_build(run_dir, monkeypatch):
    """Outside the docker, `flm vitis quantize` re-runs itself in the host build with the same options."""
    import vitis.tools

    seen = []
    env = V.VaiQEnv("/cache/vai_q-x", {})
    monkeypatch.setattr(vitis.tools, "vai_q_here", lambda: False)
    monkeypatch.setattr(V, "find", lambda src=None: env)
    monkeypatch.setattr(V, "run_flm", lambda e, args: seen.append((e, args)) or 0)
    r = CliRunner().invoke(cli, ["vitis", "quantize", "--run", str(run_dir), "--mode", "qat", "--calib", "50",
                                 "--no-cle", "--dump", "--epochs", "2"])
    assert r.exit_code == 0, r.output
    assert "running in the host build /cache/vai_q-x" in r.output
    (e, args), = seen
    assert e is env and args[0] == "quantize"
    for pair in (["--run", str(run_dir)], ["--mode", "qat"], ["--calib", "50"], ["--epochs", "2"],
                 ["--target", "DPUCZDX8G_ISA1_B4096"]):
        i = args.index(pair[0])
        assert args[i:i + 2] == pair
    assert "--no-cle" in args and "--dump" in args and "--fast-ft" not in args
    monkeypatch.setattr(V, "run_flm", lambda e, args: 3)
    r = CliRunner().invoke(cli, ["vitis", "quantize", "--run", str(run_dir)])
    assert r.exit_code == 3  # the worker's failure is the command's
    monkeypatch.setenv(V.WORKER_ENV, "1")  # inside the worker: never re-launch
    monkeypatch.setattr(vitis.tools, "load_vai_q", lambda command="": (_ for _ in ()).throw(
        vitis.tools.VitisToolMissing("vai_q_tensorflow2 is not available")))
    r = CliRunner().invoke(cli, ["vitis", "quantize", "--run", str(run_dir)])
    assert r.exit_code == 2


def test_worker_sees_only_this_checkouts_packages():
    with V.flm_path() as d:
        assert sorted(os.listdir(d)) == sorted(V.PACKAGES)
        assert os.path.realpath(os.path.join(d, "vitis")) == os.path.dirname(os.path.abspath(V.__file__))
        env = V.worker_env(V.VaiQEnv("/x", {}), d)
    assert env["PYTHONPATH"] == d and env[V.WORKER_ENV] == "1" and env["PYTHONNOUSERSITE"] == "1"
    assert env["PATH"].startswith("/x/venv/bin" + os.pathsep)
    assert not os.path.exists(d)


def test_command_line_helpers():
    out = subprocess.run([sys.executable, "-m", "vitis.vai_q_env", "apt-packages"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and out.stdout.split() == ["cmake", "make", "g++", "swig"]


def test_a_damaged_ready_record_reads_as_an_unfinished_build(tmp_path, capsys):
    """A build killed while writing ready.json leaves it cut off: find/build must see 'not built' (and
    rebuild), not stop on a JSON traceback."""
    root = tmp_path / "vai_q-abc-py310"
    (root / "venv" / "bin").mkdir(parents=True)
    (root / "venv" / "bin" / "python").write_text("")
    ready = root / V.READY
    ready.write_text('{"python": "3.10", "tensorflow": ')
    assert V._load(str(root)) is None
    assert "ready.json is not valid JSON (line 1)" in capsys.readouterr().err
    ready.write_text('{"python": "3.10", "tensorflow": "2.12.0"}')
    env = V._load(str(root))
    assert env is not None and env.root == str(root)
