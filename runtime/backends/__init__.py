"""Backend registry: pick an engine from the model file (or `--backend`)."""
import os
from typing import Callable, Dict, Optional

from runtime.backends.base import Backend, BackendError
from runtime.preprocess import DEFAULT_SPEC, CropSpec

_BY_SUFFIX = {".onnx": "onnx", ".tflite": "tflite", ".h5": "keras", ".keras": "keras", ".xmodel": "vart"}


def _factories() -> Dict[str, Callable[..., Backend]]:
    def onnx(*a, **k):
        from runtime.backends.onnx_backend import OnnxBackend
        return OnnxBackend(*a, **k)

    def tflite(*a, **k):
        from runtime.backends.tflite_backend import TfliteBackend
        return TfliteBackend(*a, **k)

    def keras(*a, **k):
        from runtime.backends.keras_backend import KerasBackend
        return KerasBackend(*a, **k)

    def vart(*a, **k):
        from runtime.backends.vart_backend import VartBackend
        return VartBackend(*a, **k)

    return {"onnx": onnx, "tflite": tflite, "keras": keras, "vart": vart}


BACKENDS = tuple(_factories())


def backend_for_path(path: str) -> str:
    """Backend name implied by a model file's suffix."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in _BY_SUFFIX:
        raise BackendError("cannot tell the backend for %s: expected one of %s (or pass --backend)"
                           % (path, ", ".join(sorted(_BY_SUFFIX))))
    return _BY_SUFFIX[ext]


def load_backend(path: str, backend: Optional[str] = None, spec: CropSpec = DEFAULT_SPEC,
                 threads: Optional[int] = None) -> Backend:
    """Load a model file once and return a ready Backend."""
    if not os.path.isfile(path):
        raise BackendError("model file not found: %s" % path)
    name = backend or backend_for_path(path)
    factories = _factories()
    if name not in factories:
        raise BackendError("unknown backend %r; choose from %s" % (name, ", ".join(factories)))
    if name == "vart":
        return factories[name](path, spec)
    return factories[name](path, spec, threads=threads)


__all__ = ["Backend", "BackendError", "BACKENDS", "backend_for_path", "load_backend"]
