"""Writing into a run directory without ever leaving half a result behind.

Every Vitis command builds its outputs in a temporary directory inside the run
directory (same filesystem, so the final step is an atomic rename) and moves them into
place only once everything succeeded; on any error the temporary directory is removed.
"""
import contextlib
import json
import os
import shutil
import tempfile
from typing import Any, Iterator

from keras_flm.report_md import atomic_write_text

#: Prefix of the scratch directories; a crash may leave one behind, never a partial output.
TMP_PREFIX = ".flm-tmp-"


def md5_file(path: str) -> str:
    """Hex md5 of a file (what vai_c writes to md5sum.txt and the bundle records)."""
    from runtime.bundle import file_md5

    return file_md5(path)


@contextlib.contextmanager
def scratch_dir(parent: str) -> Iterator[str]:
    """A temporary directory inside `parent`, removed on exit whatever happens."""
    os.makedirs(parent, exist_ok=True)
    path = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def replace_path(src: str, dst: str) -> None:
    """Move `src` (file or directory) to `dst`, replacing what was there.

    Files: one os.replace. Directories: the old one is first renamed aside, so `dst` is
    at every moment either the complete old or the complete new directory.
    """
    if os.path.isdir(src):
        old = None
        if os.path.lexists(dst):
            old = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=os.path.dirname(os.path.abspath(dst)))
            os.rmdir(old)
            os.rename(dst, old)
        os.rename(src, dst)
        if old is not None:
            if os.path.isdir(old) and not os.path.islink(old):
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.remove(old)
    else:
        os.replace(src, dst)


def write_text(path: str, text: str) -> None:
    """Write a text file atomically (keras_flm.report_md's temp-file-then-rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, text)


def write_json(path: str, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: str) -> Any:
    """Load a JSON file, naming the file in the error when it is not valid JSON."""
    with open(path) as f:
        try:
            return json.load(f)
        except ValueError as e:
            raise ValueError("%s is not valid JSON: %s" % (path, e)) from e
