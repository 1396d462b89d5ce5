"""Geometry of the synthetic face: a parametric 3-D template of the 98 WFLW points, and its pose.

Units are inter-ocular distances (outer eye corners 60-72 are 1.0 apart in the default frontal
face). Axes: x to the image right, y down, z towards the camera. The origin is the midpoint of the
outer eye corners. "Right" means the subject's right, i.e. image left, as in WFLW.

Every point is a function of a few identity numbers (face width, jaw shape, eye spacing, ...) and
expression numbers (eye/mouth opening, smile, brow raise), so the renderer can draw features
*through* the landmarks: the labels are exact by construction, not fitted afterwards.
The template is mirror-symmetric: flipping it with `runtime.landmarks.MIRROR` gives the same shape
(tests check this), so flip augmentation stays consistent with the data.

Pose convention (degrees): yaw > 0 turns the nose towards the image right, pitch > 0 lifts the
chin (nose moves up in the image), roll > 0 rotates the face clockwise in the image.
"""
from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

from runtime.landmarks import NUM_POINTS

#: Rotation pivot (head centre, behind the face); it projects onto `center` in the image.
PIVOT = np.array([0.0, 0.55, -0.9])
#: Camera distance in inter-ocular units: mild perspective, like a webcam at arm's length.
CAMERA_DISTANCE = 9.0
#: Horizontal cross-sections of the head (see `silhouette`): centre depth and depth semi-axis.
HEAD_Z = -0.7
HEAD_DEPTH = 0.75
#: Dense samples of the jaw curve before resampling it to 33 equally spaced contour points.
_JAW_SAMPLES = 241


@dataclass
class ShapeParams:
    """Identity (first block) and expression (second block) of one face, in inter-ocular units.

    Defaults give an average frontal face close to WFLW's mean shape.
    """

    # identity
    face_width: float = 0.84  # half-width of the face at the temples
    face_length: float = 1.41  # temple line to chin
    jaw_square: float = 2.4  # superellipse exponent of the jaw: 2 = oval, 3 = square jaw
    temple_y: float = -0.06  # height of contour points 0/32 relative to the eye line
    eye_spacing: float = 0.345  # eye centre to face midline
    eye_width: float = 0.31  # eye corner to corner
    eye_height: float = 0.065  # upper-lid height above the corner line when fully open
    eye_tilt: float = 0.0  # outer corner rise (positive = outer corners higher)
    brow_height: float = 0.235  # brow above the eye line
    brow_thickness: float = 0.085
    brow_arch: float = 0.05
    brow_length: float = 0.5
    nose_length: float = 0.47  # bridge top to nose tip
    nose_width: float = 0.19  # half-width of the nose base (points 55/59)
    mouth_y: float = 0.8  # mouth corner line below the eye line
    mouth_width: float = 0.31  # half-width (corner to midline)
    upper_lip: float = 0.075  # outer-to-inner thickness at the middle
    lower_lip: float = 0.095
    # expression
    eye_open_right: float = 1.0  # 0 = closed (upper lid on lower lid), 1 = open
    eye_open_left: float = 1.0
    gaze_x: float = 0.0  # pupil offset, -1..1 of the eye's half-width
    gaze_y: float = 0.0
    mouth_open: float = 0.0  # 0 = lips together, 1 = wide open (yawn)
    smile: float = 0.0  # 0..1, lifts and widens the mouth corners
    brow_raise: float = 0.0  # -1 (frown) .. 1 (surprise)


_JAW_COS = np.cos(np.linspace(0.0, np.pi, _JAW_SAMPLES))
_JAW_SIN = np.sin(np.linspace(0.0, np.pi, _JAW_SAMPLES))
_TB = np.linspace(0.0, 1.0, 5)


def _unit(v: float) -> float:
    return min(1.0, max(0.0, float(v)))


def _resample(curve: np.ndarray, n: int) -> np.ndarray:
    """n points equally spaced in arc length (x, y) along a polyline of (M, k) points."""
    seg = np.linalg.norm(np.diff(curve[:, :2], axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, curve[:, k]) for k in range(curve.shape[1])], axis=1)


def _jaw_curve(p: ShapeParams) -> np.ndarray:
    """Dense 3-D jaw line from the subject's right temple (image left) via the chin to the left."""
    c, s = _JAW_COS, _JAW_SIN
    e = 2.0 / p.jaw_square
    x = -p.face_width * np.sign(c) * np.abs(c) ** e
    y = p.temple_y + p.face_length * s ** e
    z = 0.08 - 0.58 * np.abs(c) ** 1.3
    return np.stack([x, y, z], axis=1)


def _jaw_drop(p: ShapeParams) -> float:
    return 0.45 * _unit(p.mouth_open)


def _lids(p: ShapeParams, openness: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-eye geometry: corners (outer, inner), upper lid (3 pts, outer->inner), lower lid
    (3 pts, inner->outer); y offsets relative to the corner line. Mirror for the left eye."""
    op = _unit(openness)
    x_out = -(p.eye_spacing + p.eye_width / 2.0)
    x_in = -(p.eye_spacing - p.eye_width / 2.0)
    y_out, y_in = -p.eye_tilt, 0.012
    t = np.array([0.25, 0.5, 0.75])
    xs = x_out + (x_in - x_out) * t
    base = y_out + (y_in - y_out) * t
    bump = np.sin(np.pi * t) ** 0.8
    # Upper lid peaks slightly towards the inner side, lower lid towards the outer side.
    upper_open = base - p.eye_height * bump * np.array([0.93, 1.0, 0.82])
    lower_open = base + 0.78 * p.eye_height * bump * np.array([0.92, 1.0, 0.85])
    closed = base + 0.35 * p.eye_height * bump  # where the lids meet when shut
    upper = closed + op * (upper_open - closed)
    lower = closed + op * (lower_open - closed)
    up3 = np.stack([xs, upper, 0.02 * bump], axis=1)
    lo3 = np.stack([xs, lower, 0.02 * bump], axis=1)[::-1]  # inner -> outer
    corners = np.array([[x_out, y_out, -0.11], [x_in, y_in, -0.05]])
    return corners, up3, lo3


def _mirror_x(pts: np.ndarray) -> np.ndarray:
    out = np.array(pts, dtype=np.float64, copy=True)
    out[..., 0] *= -1.0
    return out


def template_3d(p: ShapeParams) -> np.ndarray:
    """The 98 WFLW points of a face as (98, 3) in template coordinates (before pose)."""
    pts = np.zeros((NUM_POINTS, 3))
    drop = _jaw_drop(p)

    # 0-32 contour: equally spaced along the jaw; below the mouth the jaw swings down when it opens.
    contour = _resample(_jaw_curve(p), 33)
    below = np.clip((contour[:, 1] - p.mouth_y) / max(p.temple_y + p.face_length - p.mouth_y, 1e-6), 0, 1)
    contour[:, 1] += drop * below
    pts[0:33] = contour

    # 33-41 right brow: 33 outer, 34-37 upper outer->inner, 38-41 lower inner->outer.
    raise_ = 0.07 * p.brow_raise
    x_in = -(p.eye_spacing - p.eye_width / 2.0) + 0.06
    x_out = x_in - p.brow_length
    tb = _TB  # outer -> inner
    bx = x_out + (x_in - x_out) * tb
    arch = p.brow_arch * np.sin(np.pi * (0.25 + 0.6 * tb)) ** 2
    # A frown (brow_raise < 0) pulls the inner ends down more than the outer ones.
    inner_bias = 0.5 * min(p.brow_raise, 0.0) * 0.07 * tb
    upper_y = -p.brow_height - arch - raise_ - inner_bias + 0.05 * (1 - tb) ** 2
    thick = p.brow_thickness * (0.55 + 0.45 * np.sin(np.pi * (0.15 + 0.7 * tb)))
    lower_y = upper_y + thick
    bz = 0.03 - 0.23 * (1 - tb) ** 1.5
    pts[33] = [bx[0], upper_y[0] + 0.45 * thick[0], bz[0]]
    pts[34:38] = np.stack([bx[1:], upper_y[1:], bz[1:]], axis=1)
    pts[38:42] = np.stack([bx[1:], lower_y[1:], bz[1:]], axis=1)[::-1]
    # 42-50 left brow = mirror: 42-46 upper inner->outer, 47-50 lower outer->inner.
    pts[42:47] = _mirror_x(pts[33:38][::-1])
    pts[47:51] = _mirror_x(pts[38:42][::-1])

    # 51-54 nose bridge (top -> tip), 55-59 nose base (image left -> right).
    tn = np.array([0.0, 1 / 3, 2 / 3, 1.0])
    pts[51:55] = np.stack([np.zeros(4), p.nose_length * tn, 0.08 + 0.38 * tn ** 1.2], axis=1)
    base_y = p.nose_length + 0.06
    w = p.nose_width
    pts[55] = [-w, base_y - 0.005, 0.16]
    pts[56] = [-0.46 * w, base_y + 0.028, 0.27]
    pts[57] = [0.0, base_y + 0.042, 0.32]
    pts[58] = _mirror_x(pts[56])
    pts[59] = _mirror_x(pts[55])

    # 60-67 right eye, 68-75 left eye (68 inner corner, 72 outer corner).
    corners, up3, lo3 = _lids(p, p.eye_open_right)
    pts[60], pts[64] = corners[0], corners[1]
    pts[61:64], pts[65:68] = up3, lo3
    corners, up3, lo3 = _lids(p, p.eye_open_left)
    pts[72], pts[68] = _mirror_x(corners[0]), _mirror_x(corners[1])
    pts[69:72] = _mirror_x(up3[::-1])  # inner -> outer
    pts[73:76] = _mirror_x(lo3[::-1])  # outer -> inner

    # 76-87 outer lip, 88-95 inner lip.
    smile = _unit(p.smile)
    mw = p.mouth_width * (1.0 + 0.13 * smile)
    my = p.mouth_y
    corner_y = my - 0.07 * smile
    gap = 0.75 * drop  # inner lips part by most of the jaw drop
    tu = np.array([0.62, 0.2, 0.0])  # 77, 78, 79 as fractions of the half-width from the midline
    upper_outer_y = my - 0.018 - p.upper_lip * np.array([0.72, 1.0, 0.85]) - 0.03 * smile * tu
    lower_outer_y = (my + gap + 0.01 + p.lower_lip * np.array([0.75, 1.0, 1.05])
                     - 0.03 * smile * np.array([0.62, 0.3, 0.0]))
    mz = 0.18 - 0.13 * tu ** 2
    pts[76] = [-mw, corner_y, 0.03]
    pts[77:80] = np.stack([-mw * tu, upper_outer_y, mz], axis=1)
    pts[80:82] = _mirror_x(pts[77:79][::-1])
    pts[82] = _mirror_x(pts[76])
    tl = np.array([0.62, 0.3, 0.0])  # 83/87, 84/86, 85
    pts[87], pts[86], pts[85] = np.stack([-mw * tl, lower_outer_y, 0.18 - 0.13 * tl ** 2], axis=1)
    pts[83], pts[84] = _mirror_x(pts[87]), _mirror_x(pts[86])
    ic = 0.93 * mw  # inner corners sit just inside the outer ones
    ti = np.array([0.5, 0.0])
    inner_up_y = my + 0.004 - 0.01 * smile * ti
    inner_lo_y = inner_up_y + gap * np.array([0.8, 1.0])
    pts[88] = [-ic, corner_y + 0.004, 0.05]
    pts[89], pts[90] = np.stack([-ic * ti, inner_up_y, 0.16 - 0.1 * ti ** 2], axis=1)
    pts[91] = _mirror_x(pts[89])
    pts[92] = _mirror_x(pts[88])
    pts[95], pts[94] = np.stack([-ic * ti, inner_lo_y, 0.16 - 0.1 * ti ** 2], axis=1)
    pts[93] = _mirror_x(pts[95])

    # 96/97 pupils: eye centre plus gaze, kept between the lids.
    for idx, eye in ((96, range(60, 68)), (97, range(68, 76))):
        e = pts[list(eye)]
        cx = 0.5 * (e[0, 0] + e[4, 0])
        half = 0.5 * abs(e[4, 0] - e[0, 0])
        top, bot = e[1:4, 1].min(), e[5:8, 1].max()
        cy = 0.5 * (top + bot) + 0.25 * p.gaze_y * (bot - top)
        pts[idx] = [cx + 0.35 * p.gaze_x * half, cy, 0.03]
    return pts


def view_direction(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Unit vector from the head towards the camera, in template coordinates."""
    return rotation_matrix(yaw, pitch, roll).T @ np.array([0.0, 0.0, 1.0])


def _tangent_angle(a: np.ndarray, b: np.ndarray, dx: np.ndarray, dz: float) -> np.ndarray:
    """Angle t of the point on the ellipse x = a sin t, z = HEAD_Z + b cos t (x > 0 branch) whose
    normal is perpendicular to the view direction (dx, dz): the silhouette of that cross-section."""
    return np.arctan2(a * max(dz, 1e-6), -b * dx)


def silhouette(points: np.ndarray, yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Slide outline points that have turned out of sight onto the head's visible silhouette.

    The side of the head is modelled by horizontal elliptic cross-sections centred at depth HEAD_Z
    with depth semi-axis HEAD_DEPTH; each point defines the width of its own cross-section. When a
    turn hides a point (its surface normal faces away from the camera), it moves to where the
    cross-section is tangent to the line of sight: WFLW marks the far-side contour on the visible
    face boundary, not on the hidden jaw. Near-side and visible points are returned unchanged, so
    the change is continuous in the pose.
    """
    pts = np.array(points, dtype=np.float64, copy=True)
    d = view_direction(yaw, pitch, roll)
    x, z = pts[:, 0], pts[:, 2]
    side = np.where(x < 0, -1.0, 1.0)
    cos_t = np.clip((z - HEAD_Z) / HEAD_DEPTH, -0.99, 0.995)
    t = np.arccos(cos_t)  # the point's own angle on its (x >= 0 mirrored) cross-section
    a = np.abs(x) / np.sin(t)
    # Mirror the far side onto x >= 0: the view direction's x flips with it.
    t_s = _tangent_angle(a, HEAD_DEPTH, d[0] * side, d[2])
    hidden = t > t_s  # further round than the tangent point: facing away
    pts[hidden, 0] = side[hidden] * a[hidden] * np.sin(t_s[hidden])
    pts[hidden, 2] = HEAD_Z + HEAD_DEPTH * np.cos(t_s[hidden])
    return pts


def _skull_outline(half_width: float, height: float, depth: float, base_y: float, d: np.ndarray,
                   n: int = 23) -> np.ndarray:
    """Silhouette of the upper half of an ellipsoid (centre (0, base_y, HEAD_Z), semi-axes
    half_width, height, depth), from the image-right side over the top to the image-left side."""
    phi = np.linspace(0.0, np.pi, n + 2)[1:-1]
    r = np.abs(np.cos(phi))
    side = np.where(phi < np.pi / 2, 1.0, -1.0)
    t = _tangent_angle(half_width * r, depth * r, d[0] * side, d[2])
    return np.stack([side * half_width * r * np.sin(t), base_y - height * np.sin(phi),
                     HEAD_Z + depth * r * np.cos(t)], axis=1)


def head_parts_3d(p: ShapeParams, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0,
                  hairline: float = 0.9, hair_volume: float = 1.0) -> Dict[str, np.ndarray]:
    """Non-landmark 3-D outlines the renderer needs for a pose: the skull silhouette above the
    temples (closing the contour into the face region), hair outline and hairline (`hairline` =
    its height above the eye line at the middle, `hair_volume` scales the hair) and ears.
    Not labelled, only drawn."""
    d = view_direction(yaw, pitch, roll)
    w, top_y = p.face_width, p.temple_y
    forehead = _skull_outline(w, 1.35, HEAD_DEPTH, top_y, d)
    hv = 1.0 + 0.12 * (hair_volume - 1.0)
    hair_outer = _skull_outline(1.1 * hv * w, 1.5 * hv, 1.1 * HEAD_DEPTH, top_y + 0.1, d)
    # hairline: a curve on the front of the forehead, hidden parts slid onto the silhouette
    phi = np.linspace(0.0, np.pi, 17)
    x = 0.97 * w * np.cos(phi)
    y = top_y - 0.2 - (hairline - 0.2) * np.sin(phi) ** 0.6
    r = np.sqrt(np.clip(1.0 - ((y - top_y) / 1.35) ** 2, 0.05, 1.0))
    z = HEAD_Z + HEAD_DEPTH * r * np.sqrt(np.clip(1.0 - (x / (w * r)) ** 2, 0.0, 1.0))
    hl = np.stack([x, y, z], axis=1)
    side = np.where(x < 0, -1.0, 1.0)
    a, b = w * r, HEAD_DEPTH * r
    t_s = _tangent_angle(a, b, d[0] * side, d[2])
    hidden = np.arcsin(np.clip(np.abs(x) / a, 0.0, 1.0)) > t_s
    hl[hidden, 0] = side[hidden] * a[hidden] * np.sin(t_s[hidden])
    hl[hidden, 2] = HEAD_Z + b[hidden] * np.cos(t_s[hidden])
    ear = []
    for sign in (-1.0, 1.0):
        t = np.linspace(0, 2 * np.pi, 14, endpoint=False)
        u, v = 0.07 * (1 + np.cos(t)), 0.2 * np.sin(t)
        ear.append(np.stack([sign * (w - 0.04 + u), 0.16 + v, -0.6 - 0.5 * u], axis=1))
    return {"forehead": forehead, "hair_outer": hair_outer, "hairline": hl, "ear_right": ear[0],
            "ear_left": ear[1]}


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """3x3 rotation for the module's pose convention (degrees): R = Rz(roll) Rx(pitch) Ry(yaw)."""
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def project(points: np.ndarray, yaw: float, pitch: float, roll: float,
            center: Tuple[float, float], scale: float) -> Tuple[np.ndarray, np.ndarray]:
    """Rotate (N, 3) template points about PIVOT and project them: returns ((N, 2) image pixels,
    (N,) depth after rotation). `center` is where PIVOT lands in the image, `scale` the pixels per
    inter-ocular unit on the face plane (z = 0)."""
    rot = rotation_matrix(yaw, pitch, roll)
    q = (np.asarray(points, dtype=np.float64) - PIVOT) @ rot.T
    depth = q[:, 2] + PIVOT[2]
    f = CAMERA_DISTANCE / (CAMERA_DISTANCE - depth)  # 1 on the face plane z = 0
    xy = q[:, :2] * (scale * f)[:, None] + np.asarray(center, dtype=np.float64)
    return xy, depth
