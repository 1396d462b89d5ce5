"""Atomic artifact writes: a model file is either complete or absent, never half-written."""
from keras_flm.report_md import write_with


def write_bytes(path: str, data: bytes) -> str:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return write_with(path, write)


__all__ = ["write_bytes", "write_with"]
