"""Atomic artifact writes: a model file is either complete or absent, never half-written."""
import contextlib
import os
import tempfile
from typing import Callable

from keras_flm.report_md import new_file_mode


def write_bytes(path: str, data: bytes) -> str:
    return write_with(path, lambda tmp: open(tmp, "wb").write(data))


def write_with(path: str, writer: Callable[[str], object]) -> str:
    """Call writer(tmp_path) for a temp file beside `path`, then rename it onto `path`."""
    d = os.path.dirname(os.path.abspath(path)) or "."
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix="." + base + ".", suffix=".tmp" + ext, dir=d)
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
