"""Head pose (pitch, yaw, roll) from 98 landmarks by cv2.solvePnP on a generic 3-D face.

Used twice, so it lives in `runtime/`: training computes the auxiliary Euler labels with
it, and the driver-monitoring analytics estimate head pose with it live.

Fixes over the PFLD reference code (docs/pfld-wflw.md):
- points are in pixels of the image they come from (the crop during training), with a
  pinhole camera of that image's size: focal = (w/2)/tan(30 deg), principal point at the
  image centre; not [0,1]-normalised points with a fixed 256-px camera;
- the 3-D model is written directly in camera axes (x right, y down, z away from the camera),
  so a frontal face is the identity rotation; both nose-side points are mirror images
  (the PyTorch reference has both at x = -2.005628);
- angles are returned in degrees for people; `radians()` is what a loss must use.

Convention: R = Rz(roll) @ Ry(yaw) @ Rx(pitch) maps model to camera axes (x right, y down,
z forward). pitch > 0: the face turns down (nose towards the image bottom); yaw > 0: the
face turns towards the image left (the subject's right); roll > 0: the face rotates
clockwise in the image. With roll outermost, rotating the image in-plane by a about its
centre changes roll by exactly a, and a horizontal flip negates yaw and roll: the
augmentation updates labels analytically (keras_flm.data.pipeline).
"""
import math
from typing import Sequence, Tuple, Union

import cv2
import numpy as np

from runtime.landmarks import EULER_INDICES, NUM_POINTS

#: Generic 3-D face (units ~cm) for EULER_INDICES, in camera axes: x right (image right), y down,
#: z away from the camera (the nose is closest, so it has the smallest z). Values are the PFLD /
#: dlib head-pose model with its axes converted and the nose-side typo fixed.
MODEL_POINTS = np.array([
    [-6.825897, -6.760612, -4.402142],  # 33 right brow outer corner (image left)
    [-1.330353, -7.122144, -6.903745],  # 38 right brow inner corner
    [1.330353, -7.122144, -6.903745],   # 50 left brow inner corner
    [6.825897, -6.760612, -4.402142],   # 46 left brow outer corner
    [-5.311432, -5.485328, -3.987654],  # 60 right eye outer corner
    [-1.789930, -5.393625, -4.413414],  # 64 right eye inner corner
    [1.789930, -5.393625, -4.413414],   # 68 left eye inner corner
    [5.311432, -5.485328, -3.987654],   # 72 left eye outer corner
    [-2.005628, -1.409845, -6.165652],  # 55 nose right side (image left)
    [2.005628, -1.409845, -6.165652],   # 59 nose left side
    [-2.774015, 2.080775, -5.048531],   # 76 mouth right corner
    [2.774015, 2.080775, -5.048531],    # 82 mouth left corner
    [0.000000, 3.116408, -6.097667],    # 85 lower lip centre
    [0.000000, 7.415691, -4.070434],    # 16 chin
], dtype=np.float64)

assert MODEL_POINTS.shape[0] == len(EULER_INDICES)

#: Field of view of the virtual camera: focal = (w / 2) / tan(FOV_HALF_DEG).
FOV_HALF_DEG = 30.0


def camera_matrix(width: float, height: float) -> np.ndarray:
    """Pinhole intrinsics of the virtual camera for an image of the given size."""
    f = (width / 2.0) / math.tan(math.radians(FOV_HALF_DEG))
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]], dtype=np.float64)


def rotation_matrix(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """R = Rz(roll) @ Ry(yaw) @ Rx(pitch) from angles in degrees."""
    p, y, r = (math.radians(a) for a in (pitch, yaw, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def euler_from_rotation(rot: np.ndarray) -> Tuple[float, float, float]:
    """(pitch, yaw, roll) in degrees of R = Rz(roll) @ Ry(yaw) @ Rx(pitch)."""
    sy = -float(rot[2, 0])
    yaw = math.asin(max(-1.0, min(1.0, sy)))
    if abs(sy) < 1.0 - 1e-9:
        pitch = math.atan2(rot[2, 1], rot[2, 2])
        roll = math.atan2(rot[1, 0], rot[0, 0])
    else:  # gimbal lock: put everything into roll
        pitch = 0.0
        roll = math.atan2(-rot[0, 1], rot[1, 1])
    return math.degrees(pitch), math.degrees(yaw), math.degrees(roll)


def _size(image_size: Union[int, Sequence[int]]) -> Tuple[float, float]:
    if np.isscalar(image_size):
        w = h = float(image_size)  # type: ignore[arg-type]
    else:
        w, h = (float(v) for v in image_size)  # type: ignore[union-attr]
    if not (w > 0 and h > 0):
        raise ValueError("image size must be positive, got %r" % (image_size,))
    return w, h


def euler_from_landmarks(points: np.ndarray, image_size: Union[int, Sequence[int]]
                         ) -> Tuple[float, float, float]:
    """(pitch, yaw, roll) in degrees from (98, 2) landmarks in pixels of an image of size (w, h).

    Raises ValueError for a wrong shape or non-finite points; a solvePnP failure also
    raises (callers computing labels for a whole dataset should let it surface).
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape != (NUM_POINTS, 2):
        raise ValueError("expected (%d, 2) landmarks, got %s" % (NUM_POINTS, pts.shape))
    if not np.all(np.isfinite(pts)):
        raise ValueError("landmarks contain NaN or inf")
    w, h = _size(image_size)
    image_pts = np.ascontiguousarray(pts[list(EULER_INDICES)]).reshape(-1, 1, 2)
    ok, rvec, tvec = cv2.solvePnP(MODEL_POINTS, image_pts, camera_matrix(w, h), np.zeros(4),
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        raise ValueError("solvePnP failed for these landmarks")
    if tvec[2, 0] < 0:  # a mirrored solution behind the camera: refine from a frontal start
        ok, rvec, tvec = cv2.solvePnP(MODEL_POINTS, image_pts, camera_matrix(w, h), np.zeros(4),
                                      rvec=np.zeros((3, 1)), tvec=np.array([[0.0], [0.0], [50.0]]),
                                      useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    rot, _ = cv2.Rodrigues(rvec)
    return euler_from_rotation(rot)


def project_model(pitch: float, yaw: float, roll: float, image_size: Union[int, Sequence[int]],
                  distance: float = 50.0, offset: Tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Image points (14, 2) of the 3-D model at a known pose (tests, demos)."""
    w, h = _size(image_size)
    rvec, _ = cv2.Rodrigues(rotation_matrix(pitch, yaw, roll))
    tvec = np.array([[offset[0]], [offset[1]], [distance]], dtype=np.float64)
    img, _ = cv2.projectPoints(MODEL_POINTS, rvec, tvec, camera_matrix(w, h), np.zeros(4))
    return img.reshape(-1, 2)


def radians(angles_deg: np.ndarray) -> np.ndarray:
    """Degrees -> radians (float32): the unit the pose-weighted loss works in."""
    return np.deg2rad(np.asarray(angles_deg, dtype=np.float64)).astype(np.float32)
