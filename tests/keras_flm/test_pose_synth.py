"""keras_flm/data/pose_synth.py: the turned face's landmarks follow its pixels, the nose moves the
way the turn goes, the far side shrinks, and no turn leaves the image as it was."""
import numpy as np
import pytest

from keras_flm.data import pose_synth as ps
from runtime.landmarks import REGIONS


def frontal_face(size: int = 200) -> np.ndarray:
    """A symmetric, upright 98-point face (the synthetic renderer's template) in a size-px frame."""
    from keras_flm.synth.shape import ShapeParams, template_3d

    pts = template_3d(ShapeParams())[:, :2]
    pts = (pts - pts.mean(axis=0)) / np.ptp(pts[:, 0]) * (0.45 * size) + size / 2.0
    return pts


def dotted_image(pts: np.ndarray, size: int = 200) -> np.ndarray:
    """Dark textured frame with a bright 3x3 dot under every landmark."""
    rng = np.random.default_rng(0)
    img = rng.integers(20, 60, (size, size), dtype=np.uint8)
    for x, y in np.round(pts).astype(int):
        img[y - 1:y + 2, x - 1:x + 2] = 255
    return img


def test_no_turn_is_the_identity():
    pts = frontal_face()
    img = dotted_image(pts)
    out, q = ps.turn_face(img, pts, 0.0)
    assert np.allclose(q, pts, atol=1e-4)
    assert np.abs(out.astype(int) - img.astype(int)).max() <= 1


@pytest.mark.parametrize("yaw", [-35.0, 35.0])
def test_turned_landmarks_land_on_their_dots(yaw):
    """Every landmark the turn leaves in view samples its own dot: the returned points are where
    the pixels went (the near eye, brows, mouth corners and the nose tip)."""
    pts = frontal_face()
    out, q = ps.turn_face(dotted_image(pts), pts, yaw)
    near = (list(REGIONS["right_eye"]) + list(REGIONS["right_brow"]) + [76]) if yaw < 0 else \
        (list(REGIONS["left_eye"]) + list(REGIONS["left_brow"]) + [82])
    for i in near + [54]:
        x, y = np.round(q[i]).astype(int)
        assert out[y, x] > 150, "point %d at (%d, %d) reads %d" % (i, x, y, out[y, x])


@pytest.mark.parametrize("yaw", [-30.0, 30.0])
def test_nose_moves_with_the_turn_and_the_far_side_shrinks(yaw):
    pts = frontal_face()
    _, q = ps.turn_face(dotted_image(pts), pts, yaw)
    mid = 0.5 * (pts[0, 0] + pts[32, 0])
    assert np.sign(q[54, 0] - pts[54, 0]) == np.sign(yaw)
    far, near = (32, 0) if yaw > 0 else (0, 32)
    assert abs(q[far, 0] - mid) < abs(pts[far, 0] - mid) * 0.95  # foreshortened
    # the nose tip ends nearer the far contour than the near one
    assert abs(q[54, 0] - q[far, 0]) < abs(q[54, 0] - q[near, 0])


def test_mesh_keeps_the_image_border_and_triangulates_every_point():
    pts = frontal_face()
    mesh, depth, movable, info = ps.build_mesh(pts, (200, 200))
    assert mesh.shape[0] == depth.shape[0] == movable.shape[0]
    assert not movable[-1] and movable[:98].all()
    tris = ps.triangulate(mesh)
    assert tris.min() >= 0 and tris.max() < len(mesh)
    used = set(tris.ravel().tolist())
    for i in set(range(98)) - used:  # merged with a coincident point (a closed mouth's inner lips)
        assert min(np.linalg.norm(mesh[i] - mesh[j]) for j in used) < 0.5, i
    # depth: the nose tip is the nearest landmark, the contour's ends the farthest
    assert np.argmax(depth[:98]) == 54 and depth[0] < depth[16] and depth[32] < depth[16]


def test_a_face_too_small_to_turn_is_refused():
    pts = frontal_face() * 0.01
    with pytest.raises(ValueError, match="too narrow"):
        ps.turn_face(np.zeros((200, 200), np.uint8), pts, 20.0)


@pytest.mark.parametrize("pitch", [-25.0, 25.0])
def test_nodded_landmarks_land_on_their_dots(pitch):
    """A nod moves the pixels where the returned points say (eyes, brows and the nose tip stay in
    view either way)."""
    pts = frontal_face()
    out, q = ps.turn_face(dotted_image(pts), pts, 0.0, pitch)
    for i in list(REGIONS["right_eye"]) + list(REGIONS["left_eye"]) + list(REGIONS["right_brow"]) + [54]:
        x, y = np.round(q[i]).astype(int)
        assert out[y, x] > 150, "point %d at (%d, %d) reads %d" % (i, x, y, out[y, x])


def test_looking_down_drops_the_nose_towards_the_mouth_and_hides_the_chin():
    pts = frontal_face()
    _, down = ps.turn_face(dotted_image(pts), pts, 0.0, 30.0)
    _, up = ps.turn_face(dotted_image(pts), pts, 0.0, -30.0)
    eyes = list(REGIONS["right_eye"]) + list(REGIONS["left_eye"])
    nose_below_eyes = lambda q: q[54, 1] - q[eyes, 1].mean()  # noqa: E731
    assert nose_below_eyes(down) > nose_below_eyes(pts) * 1.05 > nose_below_eyes(up) * 1.1
    chin_below_mouth = lambda q: q[16, 1] - q[list(REGIONS["outer_lip"]), 1].mean()  # noqa: E731
    assert chin_below_mouth(down) < 0.8 * chin_below_mouth(pts)  # the chin recedes under the mouth
    # a nod keeps the face's left-right symmetry and leaves the columns where they were
    assert np.allclose(down[:, 0], pts[:, 0], atol=1e-6)


def test_a_nod_and_a_turn_combine():
    pts = frontal_face()
    _, turned = ps.turn_face(dotted_image(pts), pts, 30.0)
    _, both = ps.turn_face(dotted_image(pts), pts, 30.0, 20.0)
    assert np.sign(both[54, 0] - pts[54, 0]) == 1  # still turned right
    assert both[54, 1] - turned[54, 1] > 2.0  # and the nose lower
