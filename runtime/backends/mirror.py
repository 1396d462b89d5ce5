"""Mirror averaging: each face's landmarks averaged with those of its mirrored crop.

Why: a landmark model's errors are partly not mirror-symmetric (it was trained on mirrored crops,
but no network is exactly equivariant), so the mean of the two readings cancels that part. On the
68 WFLW test faces the release's QAT ONNX goes from 7.92 to 7.62 % NME with it (stop 28,
`flm-dpu eval --mirror`). The price is a second inference per face: half the model throughput,
which the board's DPU has to spare at camera rates.

The mirrored crop is the crop's pixel columns reversed: pixel j becomes size - 1 - j, so in the
crop-normalised frame (x = pixel / size, `runtime.preprocess.to_frame`) x becomes
(size - 1) / size - x, and left/right points swap by `runtime.landmarks.MIRROR`. Wraps any Backend
(flm's engines and foreign models alike); the crops buffer is preallocated and grows only when a
call brings more faces than any before it. Python 3.8 syntax.
"""
from typing import Any, Dict, Optional

import numpy as np

from runtime.backends.base import Backend
from runtime.landmarks import flip_landmarks


def unmirror(points: np.ndarray, size: int) -> np.ndarray:
    """A reading (..., 98, 2) of a mirrored size-pixel crop, mapped back to the crop itself (a new
    float32 array). The one place that knows the mirror's frame: x -> (size - 1) / size - x, not
    1 - x, which would put every mirrored reading one crop pixel to the right."""
    return flip_landmarks(points, width=(size - 1.0) / size)


class MirrorAveraged(Backend):
    """`inner` run on the crops and on their mirror images in one call; the two readings averaged."""

    def __init__(self, inner: Backend, max_faces: int = 16) -> None:
        super().__init__(inner.path, inner.spec)
        self.inner = inner
        self.name = inner.name + "+mirror"  # what `run` and `bench` print: the engine, then the averaging
        size = self.spec.size
        self._both = np.empty((2 * max(1, max_faces), size, size), np.uint8)

    @property
    def batch_size(self) -> Optional[int]:
        return self.inner.batch_size

    def info(self) -> Dict[str, Any]:
        d = dict(self.inner.info())
        d["mirror_average"] = True
        return d

    def infer(self, crops: np.ndarray) -> np.ndarray:
        x = self.check_crops(crops)
        n = len(x)
        if 2 * n > len(self._both):
            self._both = np.empty((2 * n,) + self._both.shape[1:], np.uint8)
        both = self._both[:2 * n]
        both[:n] = x
        both[n:] = x[:, :, ::-1]
        out = self.inner.infer(both)
        back = unmirror(out[n:], self.spec.size)  # a new float32 array: average into it
        back += out[:n]
        back *= 0.5
        return back

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, attr: str) -> Any:
        # anything else (the TFLite interpreter's provider, the ONNX session) is the engine's
        if attr == "inner":  # not set yet: no recursion while __init__ runs
            raise AttributeError(attr)
        return getattr(self.inner, attr)


def with_mirror(backend: Any, mirror: bool) -> Any:
    """The backend itself, or it wrapped in MirrorAveraged when `mirror` is set."""
    return MirrorAveraged(backend) if mirror else backend
