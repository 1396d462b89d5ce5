"""One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) for landmark jitter.

A low-pass filter whose cutoff rises with speed: still faces get heavy smoothing (no
jitter), moving faces get little (no lag). Works on whole (98, 2) arrays at once, in
frame pixels; time comes from the frame timestamps so dropped frames are handled.
"""
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SmoothConfig:
    """Defaults tuned for landmarks in pixels at 15-60 FPS (min_cutoff in Hz, beta in 1/pixel)."""

    enabled: bool = True
    min_cutoff: float = 1.5
    # 0.3 (was 0.05): on the moving real-face video (scripts/make_face_video.py, ~4 px/frame) 0.05 lagged
    # enough to add 17 % to NME (1.169x one-shot), 0.3 adds 8 % (1.080x) for a little more jitter
    # (0.75 vs 0.58 % of the eye distance) with PFLD_GhostOne; still faces stay smoothed by min_cutoff.
    beta: float = 0.3
    d_cutoff: float = 1.0


def _alpha(cutoff: np.ndarray, dt: float) -> np.ndarray:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Vectorised One-Euro filter over arrays of a fixed shape."""

    def __init__(self, config: SmoothConfig = SmoothConfig()) -> None:
        self.config = config
        self._x = None  # type: Optional[np.ndarray]
        self._dx = None  # type: Optional[np.ndarray]
        self._t = None  # type: Optional[float]

    def reset(self) -> None:
        self._x = self._dx = self._t = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter sample `x` taken at time `t` (seconds); returns a new array of x's shape."""
        x = np.asarray(x, dtype=np.float32)
        if self._x is None or self._t is None or self._x.shape != x.shape or t <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        c = self.config
        dt = t - self._t
        dx = (x - self._x) / dt
        a_d = _alpha(np.float32(c.d_cutoff), dt)
        self._dx = self._dx + a_d * (dx - self._dx)
        cutoff = c.min_cutoff + c.beta * np.abs(self._dx)
        a = _alpha(cutoff, dt).astype(np.float32)
        self._x = self._x + a * (x - self._x)
        self._t = t
        return self._x.copy()
