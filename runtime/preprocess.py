"""The crop contract: frame + face box (or landmarks) -> 112x112 uint8 grayscale crop.

Training, evaluation and the live runtime all call `crop_face`, so a model never sees
a crop made differently from the ones it was trained on. The contract is versioned
(`CONTRACT`) and its parameters travel in run configs and board bundles.

Coordinates: landmarks are (x, y) in frame pixels with pixel centres at integer
coordinates (OpenCV's convention). The crop is a square window of side
`scale * max(w, h)` centred on the box, resized to `size` pixels; normalised crop
coordinates are `(x - x0) / side`, so [0, 1] spans the window.

Model input normalisation happens here, outside the model (the DPU flow rejects
Rescaling/Lambda layers): x = (u8 - 128) / 128, which at a DPU input fix_point of 7
is exactly the int8 value u8 - 128, i.e. lossless.
"""
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

CONTRACT_VERSION = 1
CROP_SIZE = 112
INPUT_MEAN = 128.0
INPUT_SCALE = 1.0 / 128.0
#: The middle of the crop-normalised [0, 1] coordinates: a network whose output must be symmetric
#: about zero (the DPU's int8, quant.pof2.OutputOffset) emits landmarks minus this.
CROP_CENTRE = 0.5


@dataclass(frozen=True)
class CropSpec:
    """Parameters of the crop; serialised into config.json and bundle meta.json."""

    size: int = CROP_SIZE
    scale: float = 1.2
    pad_value: int = 0
    version: int = CONTRACT_VERSION
    input_mean: float = INPUT_MEAN
    input_scale: float = INPUT_SCALE

    def to_dict(self) -> Dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, float]) -> "CropSpec":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


DEFAULT_SPEC = CropSpec()


def validate_box(box: Sequence[float]) -> Tuple[float, float, float, float]:
    """Return (x0, y0, x1, y1) as floats or raise ValueError naming the problem."""
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError("face box must be 4 numbers (x_min, y_min, x_max, y_max), got %r" % (box,)) from None
    if not all(np.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ValueError("face box has a non-finite value: %r" % ((x0, y0, x1, y1),))
    if x1 <= x0 or y1 <= y0:
        raise ValueError("face box (%g, %g, %g, %g) is empty or inverted: need x_max > x_min and "
                         "y_max > y_min" % (x0, y0, x1, y1))
    return x0, y0, x1, y1


def box_from_landmarks(points: np.ndarray) -> Tuple[float, float, float, float]:
    """Tight bounding box of (98, 2) landmarks."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not np.all(np.isfinite(pts)):
        raise ValueError("landmarks contain NaN or inf")
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def crop_window(box: Sequence[float], scale: float) -> Tuple[float, float, float]:
    """Square window (x0, y0, side) of side scale*max(w, h) centred on the box."""
    x0, y0, x1, y1 = validate_box(box)
    if not scale > 0:
        raise ValueError("crop scale must be > 0, got %r" % (scale,))
    side = scale * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return cx - side / 2.0, cy - side / 2.0, side


def window_affine(x0: float, y0: float, side: float, size: int) -> np.ndarray:
    """2x3 affine mapping frame pixels to crop pixels for a square window."""
    s = size / side
    return np.array([[s, 0.0, -x0 * s], [0.0, s, -y0 * s]], dtype=np.float64)


def crop_face(frame: np.ndarray, box: Sequence[float], spec: CropSpec = DEFAULT_SPEC,
              out: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Crop a face: returns (uint8 crop of shape (size, size), 2x3 frame->crop-pixel affine).

    Accepts grayscale (H, W), (H, W, 1) or BGR (H, W, 3) uint8 frames. Areas of the
    window outside the frame are filled with `spec.pad_value`. `out` lets a serving loop
    reuse one buffer per worker instead of allocating per frame.
    """
    if frame is None or not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.size == 0:
        raise ValueError("frame must be a non-empty (H, W) or (H, W, C) array, got %r"
                         % (getattr(frame, "shape", type(frame)),))
    x0, y0, side = crop_window(box, spec.scale)
    m = window_affine(x0, y0, side, spec.size)
    if frame.ndim == 3 and frame.shape[2] == 3:
        # Warp first (cheap, only size*size pixels), then convert: same result as gray-then-warp
        # up to rounding, and much faster on large frames.
        warped = cv2.warpAffine(frame, m, (spec.size, spec.size), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=(spec.pad_value,) * 3)
        gray = cv2.cvtColor(warped, cv2.COLOR_BGR2GRAY, dst=out)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        warped = cv2.warpAffine(frame, m, (spec.size, spec.size), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=(spec.pad_value,) * 4)
        gray = cv2.cvtColor(warped, cv2.COLOR_BGRA2GRAY, dst=out)
    else:
        src = frame if frame.ndim == 2 else frame[:, :, 0]
        if src.dtype != np.uint8:
            raise ValueError("frame dtype must be uint8, got %s" % src.dtype)
        gray = cv2.warpAffine(src, m, (spec.size, spec.size), dst=out, flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=spec.pad_value)
    return gray, m


def crop_from_landmarks(frame: np.ndarray, points: np.ndarray,
                        spec: CropSpec = DEFAULT_SPEC) -> Tuple[np.ndarray, np.ndarray]:
    """Crop around the bounding box of known landmarks (training and tracking)."""
    return crop_face(frame, box_from_landmarks(points), spec)


def to_crop_normalised(points: np.ndarray, affine: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Frame pixels (..., 2) -> crop-normalised [0, 1] coordinates."""
    pts = np.asarray(points, dtype=np.float64)
    mapped = pts @ affine[:, :2].T + affine[:, 2]
    return (mapped / size).astype(np.float32)


def to_frame(points_norm: np.ndarray, affine: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Crop-normalised [0, 1] coordinates (..., 2) -> frame pixels: the inverse of the crop."""
    inv = cv2.invertAffineTransform(affine)
    pts = np.asarray(points_norm, dtype=np.float64) * size
    return (pts @ inv[:, :2].T + inv[:, 2]).astype(np.float32)


def normalize_input(crops: np.ndarray, spec: CropSpec = DEFAULT_SPEC) -> np.ndarray:
    """uint8 crops (N, H, W) or (N, H, W, 1) -> float32 model input (N, H, W, 1)."""
    x = np.asarray(crops)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] != 1:
        raise ValueError("crops must be (N, H, W) or (N, H, W, 1), got %s" % (x.shape,))
    return (x.astype(np.float32) - spec.input_mean) * spec.input_scale
