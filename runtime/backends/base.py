"""The backend interface: load once, preallocate, `infer(uint8 crops) -> (N, 98, 2)`.

Every backend takes uint8 crops (N, 112, 112) or (N, 112, 112, 1) made by
`runtime.preprocess.crop_face` and returns crop-normalised landmarks, so metrics
and overlays never know which engine ran.
"""
from typing import Any, Dict, Optional

import numpy as np

from runtime.landmarks import NUM_POINTS
from runtime.preprocess import DEFAULT_SPEC, CropSpec


class BackendError(RuntimeError):
    """A model file cannot be loaded or run by the chosen backend."""


def input_lut(spec: CropSpec = DEFAULT_SPEC) -> np.ndarray:
    """uint8 pixel -> float32 model input, bit-identical to `normalize_input` (one gather per
    crop instead of a cast, a subtract and a multiply, and no temporaries)."""
    return (np.arange(256, dtype=np.float32) - spec.input_mean) * spec.input_scale


def check_output_size(values_per_face: Optional[int], path: str, what: str) -> None:
    """Fail at load time, naming the file, when a model does not output 98 (x, y) pairs."""
    if values_per_face is not None and values_per_face != 2 * NUM_POINTS:
        raise BackendError("%s: %s gives %d values per face; a landmark model outputs %d (98 x, y)"
                           % (path, what, values_per_face, 2 * NUM_POINTS))


class Backend:
    """Base class: subclasses implement `_run(float_or_int_input) -> (N, 196) float32`."""

    name = "base"

    def __init__(self, path: str, spec: CropSpec = DEFAULT_SPEC) -> None:
        self.path = path
        self.spec = spec

    @property
    def batch_size(self) -> Optional[int]:
        """Fixed batch the engine needs (VART: dims[0]); None means any."""
        return None

    def info(self) -> Dict[str, Any]:
        return {"backend": self.name, "path": self.path}

    def check_crops(self, crops: np.ndarray) -> np.ndarray:
        x = np.asarray(crops)
        if x.ndim == 2:
            x = x[None]
        if x.ndim == 4 and x.shape[-1] == 1:
            x = x[..., 0]
        if x.ndim != 3 or x.shape[1:] != (self.spec.size, self.spec.size):
            raise ValueError("crops must be (N, %d, %d[, 1]) uint8, got %s"
                             % (self.spec.size, self.spec.size, np.asarray(crops).shape))
        if x.dtype != np.uint8:
            raise ValueError("crops must be uint8 (the crop contract), got %s" % x.dtype)
        return x

    def infer(self, crops: np.ndarray) -> np.ndarray:
        x = self.check_crops(crops)
        out = self._run(x)
        return np.asarray(out, dtype=np.float32).reshape(len(x), NUM_POINTS, 2)

    def _run(self, crops_u8: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass
