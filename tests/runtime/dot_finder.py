"""A fake landmark backend that is exactly mirror-equivariant: shared by the mirror-averaging tests
(tests/runtime/test_mirror.py) and the teacher's (tests/keras_flm/test_teacher.py), which both check
that a mirrored reading is mapped back exactly."""
import numpy as np

from runtime.backends.base import Backend
from runtime.landmarks import MIRROR, NUM_POINTS
from runtime.preprocess import DEFAULT_SPEC

SIZE = DEFAULT_SPEC.size


class DotFinder(Backend):
    """Point 60 (an eye corner) at the brightest pixel of the left half, its mirror partner at the
    brightest of the right half, the rest at a left/right symmetric template, in crop-normalised
    x = pixel / size: a model that is exactly mirror-equivariant, plus an optional constant x bias
    (which is not)."""

    name = "dots"

    def __init__(self, bias: float = 0.0) -> None:
        super().__init__("dots", DEFAULT_SPEC)
        self.bias = bias
        self.calls = []

    def _run(self, x):
        self.calls.append(x.copy())
        t = np.linspace(0.2, 0.8, NUM_POINTS)
        template = np.stack([t, t[::-1]], axis=1)
        template = (template + template[list(MIRROR)] * [-1, 1] + [(SIZE - 1.0) / SIZE, 0]) / [2, 1]
        out = np.repeat(template[None], len(x), axis=0)
        out[:, :, 1] = 0.5
        half = SIZE // 2
        for i, c in enumerate(x):
            for k, lo in ((60, 0), (MIRROR[60], half)):
                v, u = np.unravel_index(np.argmax(c[:, lo:lo + half]), (SIZE, half))
                out[i, k] = ((u + lo) / SIZE, v / SIZE)
        out[..., 0] += self.bias
        return out.reshape(len(x), -1)
