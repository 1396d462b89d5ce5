"""Turn a nearly frontal face out of plane (yaw, and pitch: a nod) by a piecewise-affine 3-D warp.

Why: the train list of faces98 is nearly frontal (8 of 4,704 faces turned by 30 deg or more,
against 13 of the 68 test faces), and the large-pose test faces are flm's largest error
(17 % NME, against 9 % for the teacher that labels the train list). The 2-D yaw warp of
`--augment turn` (keras_flm/data/pipeline.py) bends columns, so the nose can never cross
the far cheek. Here, as in 300W-LP's face profiling (Zhu et al., CVPR 2016) but with a
generic depth instead of a fitted 3-D morphable model, each landmark gets a depth from a
cylinder through the jaw contour plus a relief (nose, lips, brows, eye sockets); a ring
around the face (hair, ears, neck) turns with the head; the image border stays put. The
mesh is rotated about the head's vertical axis, projected orthographically and drawn far
triangles first, so the nose and near cheek hide what they would hide. A nod (pitch) turns the
mesh about the horizontal axis through the landmarks' centroid first; for it the forehead and the
chin recede from the cylinder (PITCH_FALLOFF), so a face looking down shows its brow and hides its
chin, and the nose tip drops over the upper lip. Why pitch: the worst test faces after the turned
ones are faces looking down steeply (WIDER scenes: people watching a ball, a phone, a child),
which neither the train list nor the yaw-only copies hold.

The landmarks this returns are the mesh's projection. They are exact for the warp but not
in WFLW's convention for a turned face (the far jaw contour is drawn on the visible cheek
edge), so `scripts/make_pose_data.py` relabels each turned face with the teacher and keeps
the projection only to reject faces the teacher misreads.

Pure numpy / OpenCV: a data tool, imported by scripts and tests only.
"""
from typing import Tuple

import cv2
import numpy as np

from runtime.landmarks import NUM_POINTS, REGIONS

#: Depth relief added to the cylinder, in units of the face's half-width R (z towards the camera).
RELIEF = {
    "right_brow": 0.05, "left_brow": 0.05,
    "right_eye": -0.08, "left_eye": -0.08, "pupils": -0.06,
    "outer_lip": 0.08, "inner_lip": 0.06,
}
#: Nose points 51 (bridge top) .. 59: the bridge rises to the tip (54), the nostrils less.
NOSE_RELIEF = {51: 0.10, 52: 0.18, 53: 0.26, 54: 0.35, 55: 0.12, 56: 0.20, 57: 0.25, 58: 0.20, 59: 0.12}
#: Cylinder depth at the face's midline, in R: the jaw contour's ends lie on its silhouette (z = 0).
CYLINDER_DEPTH = 1.0
#: The ring of head points (hair, ears, neck) around the face: scale from the face centre and depth.
RING_SCALE = 1.3
RING_DEPTH = -0.2
RING_POINTS = 20
#: Forehead: how far above the brows, as a fraction of the brow-to-chin height.
FOREHEAD = 0.35
#: Nodded faces only: depth lost at the forehead's and the chin's height, in R, falling off
#: quadratically from the landmarks' centroid (0 at pitch 0 keeps yaw-only faces as before).
PITCH_FALLOFF = 0.4
BORDER_POINTS = 5  # per image edge, corners included


def _depths(x: np.ndarray, xm: float, half_width: float) -> np.ndarray:
    u = np.clip((x - xm) / half_width, -1.0, 1.0)
    return CYLINDER_DEPTH * half_width * np.sqrt(1.0 - u * u)


def landmark_depths(pts: np.ndarray, xm: float, half_width: float) -> np.ndarray:
    """Depth (towards the camera, pixels) of each of the 98 de-rolled landmarks."""
    z = _depths(pts[:, 0], xm, half_width)
    for region, dz in RELIEF.items():
        z[list(REGIONS[region])] += dz * half_width
    for i, dz in NOSE_RELIEF.items():
        z[i] += dz * half_width
    return z


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def face_frame(pts: np.ndarray) -> Tuple[float, np.ndarray]:
    """(roll in radians, centre): the eye line's angle and the landmarks' centroid."""
    d = pts[97] - pts[96]
    return float(np.arctan2(d[1], d[0])), pts.mean(axis=0)


def _border(w: int, h: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, BORDER_POINTS)
    xs, ys = t * (w - 1), t * (h - 1)
    pts = [(x, 0.0) for x in xs] + [(x, h - 1.0) for x in xs]
    pts += [(0.0, y) for y in ys[1:-1]] + [(w - 1.0, y) for y in ys[1:-1]]
    return np.array(pts, np.float64)


def build_mesh(pts: np.ndarray, size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(points (M, 2) in the de-rolled face frame, depths (M,), movable mask (M,), frame info).

    Points: the 98 landmarks, forehead points above the brows and the contour's ends, a ring
    around it all (RING_SCALE), then the image border (fixed; in the de-rolled frame too)."""
    roll, centre = face_frame(pts)
    derot = _rotation(-roll)
    p = (pts - centre) @ derot.T
    xm = 0.5 * (p[0, 0] + p[32, 0])
    half_width = 0.5 * abs(p[32, 0] - p[0, 0])
    if half_width < 4.0:
        raise ValueError("face too narrow to turn (%.1f px jaw width)" % (2 * half_width))
    z = landmark_depths(p, xm, half_width)
    brows = p[list(REGIONS["right_brow"] + REGIONS["left_brow"])]
    height = p[16, 1] - brows[:, 1].mean()
    if height <= 0:
        raise ValueError("chin above the brows: not an upright face")
    # forehead: the upper brow points (33-37, 42-46) and the contour's ends raised
    top_idx = [0, 33, 34, 35, 36, 37, 42, 43, 44, 45, 46, 32]
    fore = p[top_idx].copy()
    fore[:, 1] = np.minimum(fore[:, 1], brows[:, 1].min()) - FOREHEAD * height
    fore_z = _depths(fore[:, 0], xm, half_width) * 0.9
    face = np.vstack([p[:33], fore])
    c = face.mean(axis=0)
    ang = np.linspace(0.0, 2 * np.pi, RING_POINTS, endpoint=False)
    radius = np.max(np.abs(face - c), axis=0) * RING_SCALE
    ring = c + np.stack([np.cos(ang) * radius[0], np.sin(ang) * radius[1]], axis=1)
    ring_z = np.full(RING_POINTS, RING_DEPTH * half_width)
    w, h = size
    border = (_border(w, h) - centre) @ derot.T
    mesh = np.vstack([p, fore, ring, border])
    depth = np.concatenate([z, fore_z, ring_z, np.zeros(len(border))])
    movable = np.arange(len(mesh)) < len(mesh) - len(border)
    info = {"roll": roll, "centre": centre, "xm": xm, "half_width": half_width,
            "half_height": 0.5 * float(face[:, 1].max() - face[:, 1].min()),
            "face_points": NUM_POINTS + len(fore)}  # mesh[:face_points]: the landmarks, then the forehead
    return mesh, depth, movable, info


def rotate_in_depth(mesh: np.ndarray, depth: np.ndarray, movable: np.ndarray, axis: int, centre: float,
                    angle: float) -> Tuple[np.ndarray, np.ndarray]:
    """(projected points, new depths) after rotating the movable points by `angle` radians in the
    plane of image coordinate `axis` (0: x, a turn; 1: y, a nod) and depth, about `centre` on that
    coordinate and z = 0 (orthographic projection; the other coordinate does not change)."""
    c, s = np.cos(angle), np.sin(angle)
    u = mesh[:, axis] - centre
    out = mesh.copy()
    new_z = depth.copy()
    out[movable, axis] = centre + u[movable] * c + depth[movable] * s
    new_z[movable] = -u[movable] * s + depth[movable] * c
    return out, new_z


def nod_points(mesh: np.ndarray, depth: np.ndarray, movable: np.ndarray, pitch: float,
               info: dict) -> Tuple[np.ndarray, np.ndarray]:
    """(points, depths) after nodding the movable points by `pitch` radians (> 0: looking down)
    about the horizontal axis y = 0 (the landmarks' centroid), z = 0. The face points (landmarks
    and forehead) first recede by PITCH_FALLOFF away from the centroid's height."""
    z = depth.copy()
    n_face = info["face_points"]
    v = mesh[:n_face, 1] / max(info["half_height"], 1e-6)
    z[:n_face] -= PITCH_FALLOFF * info["half_width"] * np.minimum(v * v, 1.5)
    return rotate_in_depth(mesh, z, movable, 1, 0.0, pitch)


def turn_points(mesh: np.ndarray, depth: np.ndarray, movable: np.ndarray, xm: float,
                yaw: float) -> Tuple[np.ndarray, np.ndarray]:
    """(projected points, new depths) after turning the movable points by `yaw` radians about the
    vertical axis x = xm, z = 0."""
    return rotate_in_depth(mesh, depth, movable, 0, xm, yaw)


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (T, 3) of point indices (OpenCV's Subdiv2D; near-duplicates merged)."""
    lo = points.min(axis=0) - 2.0
    hi = points.max(axis=0) + 2.0
    sub = cv2.Subdiv2D((int(np.floor(lo[0])), int(np.floor(lo[1])),
                        int(np.ceil(hi[0] - lo[0])) + 1, int(np.ceil(hi[1] - lo[1])) + 1))
    for x, y in points:
        sub.insert((float(x), float(y)))
    tris = []
    for t in sub.getTriangleList().reshape(-1, 3, 2):
        if np.any(t < lo - 1.0) or np.any(t > hi + 1.0):
            continue  # touches Subdiv2D's virtual outer vertices
        idx = [int(np.argmin(np.sum((points - v) ** 2, axis=1))) for v in t]
        if len(set(idx)) == 3:
            tris.append(idx)
    return np.array(tris, np.int64).reshape(-1, 3)


def _signed_area(tri: np.ndarray) -> float:
    a, b, c = tri
    return 0.5 * float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))


def render_map(src: np.ndarray, dst: np.ndarray, dst_depth: np.ndarray, tris: np.ndarray,
               size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Backward maps (map_x, map_y) for cv2.remap: each output pixel inside a turned triangle
    samples the source through that triangle's affine map; triangles are drawn far first, so
    nearer ones overwrite them, and triangles turned away (flipped winding) are skipped.
    Pixels no triangle covers sample themselves."""
    w, h = size
    map_x, map_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    order = np.argsort(dst_depth[tris].mean(axis=1))
    for t in tris[order]:
        d, s = dst[t], src[t]
        area_d, area_s = _signed_area(d), _signed_area(s)
        if abs(area_d) < 1e-3 or np.sign(area_d) != np.sign(area_s):
            continue
        x0, y0 = np.maximum(np.floor(d.min(axis=0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(d.max(axis=0)).astype(int) + 1, [w, h])
        if x1 <= x0 or y1 <= y0:
            continue
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(mask, np.round((d - [x0, y0]) * 16).astype(np.int32), 1, cv2.LINE_8, 4)
        ys, xs = np.nonzero(mask)
        if not len(xs):
            continue
        inv = cv2.getAffineTransform(d.astype(np.float32), s.astype(np.float32))
        gx, gy = xs + x0, ys + y0
        map_x[gy, gx] = inv[0, 0] * gx + inv[0, 1] * gy + inv[0, 2]
        map_y[gy, gx] = inv[1, 0] * gx + inv[1, 1] * gy + inv[1, 2]
    return map_x, map_y


def turn_face(image: np.ndarray, pts: np.ndarray, yaw_deg: float,
              pitch_deg: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
    """(turned image, projected 98 landmarks in its pixels) for a face with landmarks `pts`
    (98, 2) in `image`'s pixels, nodded by `pitch_deg` (> 0: looking down, the nose tip moves
    towards the face's +y) and then turned by `yaw_deg` about its vertical axis (> 0: the nose
    moves towards the face's +x, image right for an upright face)."""
    pts = np.asarray(pts, np.float64).reshape(NUM_POINTS, 2)
    h, w = image.shape[:2]
    mesh, depth, movable, info = build_mesh(pts, (w, h))
    nodded = mesh
    if pitch_deg:
        nodded, depth = nod_points(mesh, depth, movable, np.radians(pitch_deg), info)
    turned, new_z = turn_points(nodded, depth, movable, info["xm"], np.radians(yaw_deg))
    rot = _rotation(info["roll"])
    to_image = lambda q: q @ rot.T + info["centre"]  # noqa: E731
    src_img, dst_img = to_image(mesh), to_image(turned)
    map_x, map_y = render_map(src_img, dst_img, new_z, triangulate(src_img), (w, h))
    out = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, dst_img[:NUM_POINTS].astype(np.float32)

