"""Backend registry: pick an engine from the model file, a board bundle dir, or `--backend`."""
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
        raise BackendError("cannot tell the backend for %s: expected a board bundle directory or a model "
                           "file ending in one of %s (or pass --backend)"
                           % (path, ", ".join(sorted(_BY_SUFFIX))))
    return _BY_SUFFIX[ext]


def resolve_model(path: str, backend: Optional[str] = None, spec: Optional[CropSpec] = None):
    """(model file, backend name, crop spec) for a model file or a bundle directory.

    A bundle's meta.json carries the crop contract; a bare model file uses `spec` (default:
    the contract's defaults)."""
    if backend is not None and backend not in BACKENDS:
        raise BackendError("unknown backend %r; choose from %s" % (backend, ", ".join(BACKENDS)))
    if os.path.isdir(path):
        from runtime.bundle import load_bundle

        b = load_bundle(path)
        model = b.model_for(backend)
        return model, backend or backend_for_path(model), b.spec
    if not os.path.isfile(path):
        raise BackendError("model not found: %s (pass a board bundle directory or a "
                           ".xmodel/.onnx/.tflite/.h5 file)" % path)
    return path, backend or backend_for_path(path), spec or DEFAULT_SPEC


def load_backend(path: str, backend: Optional[str] = None, spec: Optional[CropSpec] = None,
                 threads: Optional[int] = None, mirror: bool = False) -> Backend:
    """Load a model file (or the right file of a bundle dir) once and return a ready Backend
    (with `mirror`, one that averages each face with its mirrored crop: runtime.backends.mirror)."""
    from runtime.backends.mirror import with_mirror

    model, name, crop = resolve_model(path, backend, spec)
    return with_mirror(_factories()[name](model, crop, threads=threads), mirror)


__all__ = ["Backend", "BackendError", "BACKENDS", "backend_for_path", "load_backend", "resolve_model"]
