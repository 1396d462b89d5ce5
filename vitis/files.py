"""Writing into a run directory without ever leaving half a result behind.

Every Vitis command builds its outputs in a temporary directory inside the run
directory (same filesystem, so the final step is an atomic rename) and moves them into
place only once everything succeeded; on any error the temporary directory is removed.
"""
import json
import os
from typing import Any

from keras_flm.report_md import TMP_PREFIX, atomic_write_text, read_json, replace_path, scratch_dir  # noqa: F401


def md5_file(path: str) -> str:
    """Hex md5 of a file (what vai_c writes to md5sum.txt and the bundle records)."""
    from runtime.bundle import file_md5

    return file_md5(path)


def write_text(path: str, text: str) -> None:
    """Write a text file atomically (keras_flm.report_md's temp-file-then-rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, text)


def write_json(path: str, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")
