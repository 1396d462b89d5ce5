"""Atomic writers leave files and directories with the modes open()/mkdir() would give them (the
umask's), not the private ones of the temp files they are written through."""
import os
import stat

import pytest

from keras_flm.report_md import atomic_write_json, new_file_mode, replace_path, scratch_dir
from quant.files import write_bytes


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_and_moved_scratch_dirs_are_readable_by_others(tmp_path, umask_022):
    assert new_file_mode() == 0o644 and new_file_mode(directory=True) == 0o755
    atomic_write_json(str(tmp_path / "metrics.json"), {"nme": 0.05})
    write_bytes(str(tmp_path / "model.onnx"), b"\x08\x07")
    assert _mode(tmp_path / "metrics.json") == 0o644 and _mode(tmp_path / "model.onnx") == 0o644
    with scratch_dir(str(tmp_path / "models")) as d:
        atomic_write_json(os.path.join(d, "meta.json"), {})
        replace_path(d, str(tmp_path / "release"))
    assert _mode(tmp_path / "release") == 0o755 and _mode(tmp_path / "release" / "meta.json") == 0o644


def test_a_stricter_umask_is_kept(tmp_path):
    old = os.umask(0o077)
    try:
        atomic_write_json(str(tmp_path / "private.json"), [])
    finally:
        os.umask(old)
    assert _mode(tmp_path / "private.json") == 0o600


def test_the_umask_is_read_without_being_changed(monkeypatch, umask_022):
    from keras_flm import report_md

    calls = []
    real = os.umask
    monkeypatch.setattr(report_md.os, "umask", lambda m: calls.append(m) or real(m))
    assert report_md.current_umask() == 0o022
    if os.path.exists("/proc/self/status"):
        assert calls == []  # Linux: read from /proc, never set
    # without /proc the fallback sets a private mask for the moment it reads, never 0
    monkeypatch.setattr(report_md, "open", lambda *a, **k: (_ for _ in ()).throw(OSError("no /proc")),
                        raising=False)
    assert report_md.current_umask() == 0o022 and calls[0] == 0o077 and real(0o022) == 0o022
