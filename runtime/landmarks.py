"""The WFLW 98-point landmark scheme: the one place every index lives.

Training (flip augmentation, Euler labels), metrics (inter-ocular NME, per-region
errors), the 68-point export and the driver-monitoring analytics all read these
tables, so a fix here fixes all of them.
"""
from typing import Dict, List, Tuple

import numpy as np

NUM_POINTS = 98

#: Subject's right outer eye corner (image left) and subject's left outer eye corner.
#: NME on WFLW is normalised by their distance (inter-ocular).
OUTER_EYE_CORNERS = (60, 72)

#: Index that point i becomes under a horizontal flip (an involution).
MIRROR: Tuple[int, ...] = (
    32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10,
    9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 46, 45, 44, 43, 42, 50, 49, 48, 47, 37, 36, 35, 34, 33, 41, 40,
    39, 38, 51, 52, 53, 54, 59, 58, 57, 56, 55, 72, 71, 70, 69, 68, 75, 74, 73, 64, 63, 62, 61,
    60, 67, 66, 65, 82, 81, 80, 79, 78, 77, 76, 87, 86, 85, 84, 83, 92, 91, 90, 89, 88, 95, 94,
    93, 97, 96,
)

#: Face regions ("right" = the subject's right = image left). They partition 0..97.
REGIONS: Dict[str, Tuple[int, ...]] = {
    "contour": tuple(range(0, 33)),
    "right_brow": tuple(range(33, 42)),
    "left_brow": tuple(range(42, 51)),
    "nose": tuple(range(51, 60)),
    "right_eye": tuple(range(60, 68)),
    "left_eye": tuple(range(68, 76)),
    "outer_lip": tuple(range(76, 88)),
    "inner_lip": tuple(range(88, 96)),
    "pupils": (96, 97),
}

#: Eye contours in the order EAR needs: (corner_out, top1, top2, corner_in, bottom2, bottom1)
#: mapped onto the 8-point WFLW eye (60 outer corner, 61-63 upper lid, 64 inner corner, 65-67 lower lid).
RIGHT_EYE_EAR = (60, 61, 63, 64, 65, 67)
LEFT_EYE_EAR = (72, 73, 75, 68, 69, 71)

#: Inner lip: corners and the upper/lower mid points used for mouth opening.
MOUTH_CORNERS_INNER = (88, 92)
MOUTH_TOP_BOTTOM_INNER = ((89, 95), (90, 94), (91, 93))

#: The 14 points PFLD uses for head pose (solvePnP against a generic 3-D face).
EULER_INDICES: Tuple[int, ...] = (33, 38, 50, 46, 60, 64, 68, 72, 55, 59, 76, 82, 85, 16)

#: WFLW 98 -> 300W 68 by selection.
TO_68: Tuple[int, ...] = (
    tuple(range(0, 33, 2))
    + tuple(range(33, 38)) + tuple(range(42, 47))
    + tuple(range(51, 60))
    + (60, 61, 63, 64, 65, 67) + (68, 69, 71, 72, 73, 75)
    + tuple(range(76, 96))
)

#: WFLW attribute flags, in annotation-file order.
ATTRIBUTES: Tuple[str, ...] = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")


def flip_landmarks(points: np.ndarray, width: float = 1.0) -> np.ndarray:
    """Mirror landmarks of shape (..., 98, 2) horizontally in a frame of the given width.

    `width` is the size of the coordinate frame: 1.0 for crop-normalised points, the image
    width in pixels for pixel coordinates with the x -> width - 1 - x convention use width-1.
    """
    pts = np.asarray(points, dtype=np.float32)
    if pts.shape[-2:] != (NUM_POINTS, 2):
        raise ValueError("expected (..., %d, 2) landmarks, got %s" % (NUM_POINTS, pts.shape))
    out = pts[..., list(MIRROR), :].copy()
    out[..., 0] = width - out[..., 0]
    return out


def to_68(points: np.ndarray) -> np.ndarray:
    """Select the 300W 68-point subset from (..., 98, 2) landmarks."""
    return np.asarray(points)[..., list(TO_68), :]


def region_of(index: int) -> str:
    """Name of the face region a point index belongs to."""
    for name, idx in REGIONS.items():
        if index in idx:
            return name
    raise ValueError("point index %r is outside 0..%d" % (index, NUM_POINTS - 1))


def region_names() -> List[str]:
    return list(REGIONS)
