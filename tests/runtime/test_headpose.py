"""Head pose: projecting the 3-D model at known angles and solving recovers them."""
import numpy as np
import pytest

from runtime.headpose import (
    MODEL_POINTS,
    euler_from_landmarks,
    euler_from_rotation,
    project_model,
    radians,
    rotation_matrix,
)
from runtime.landmarks import EULER_INDICES, MIRROR, flip_landmarks


def _landmarks(pitch, yaw, roll, size, **kw):
    pts = np.full((98, 2), np.mean(size) / 2.0)
    pts[list(EULER_INDICES)] = project_model(pitch, yaw, roll, size, **kw)
    return pts


@pytest.mark.parametrize("angles", [(0, 0, 0), (15, 0, 0), (0, 30, 0), (0, 0, -25), (-20, 35, 10),
                                    (10, -40, -15), (25, 20, 30)])
@pytest.mark.parametrize("size", [112, (640, 480)])
def test_recovers_known_rotation(angles, size):
    got = euler_from_landmarks(_landmarks(*angles, size, offset=(2.0, -1.0)), size)
    assert np.allclose(got, angles, atol=1.0), (got, angles)


def test_recovery_with_pixel_noise():
    rng = np.random.default_rng(0)
    pts = _landmarks(10, -20, 5, 112)
    pts += rng.normal(0, 0.3, pts.shape)
    assert np.allclose(euler_from_landmarks(pts, 112), (10, -20, 5), atol=2.0)


def test_sign_conventions():
    # yaw > 0: the nose (closest point) moves towards the image left of the face centre
    pts = project_model(0, 30, 0, 112)
    nose, eyes_mid = pts[8:10].mean(0), pts[4:8].mean(0)
    assert nose[0] < eyes_mid[0]
    # pitch > 0: nose moves down relative to the eyes compared with the frontal face
    p0, p1 = project_model(0, 0, 0, 112), project_model(20, 0, 0, 112)
    assert (p1[8:10, 1].mean() - p1[4:8, 1].mean()) > (p0[8:10, 1].mean() - p0[4:8, 1].mean())
    # roll > 0: clockwise in the image, the subject's left eye (image right) goes down
    pr = project_model(0, 0, 20, 112)
    assert pr[7, 1] > pr[4, 1]


def test_model_is_mirror_symmetric():
    # the 3-D model's x is odd under the landmark mirror map (fixes the reference's nose-side typo)
    idx = list(EULER_INDICES)
    for i, k in enumerate(idx):
        j = idx.index(MIRROR[k]) if MIRROR[k] in idx else None
        if j is not None:
            assert np.allclose(MODEL_POINTS[i] * [-1, 1, 1], MODEL_POINTS[j])


def test_flip_negates_yaw_and_roll():
    size = 112
    pts = _landmarks(12, 25, -10, size)
    flipped = flip_landmarks(pts, width=size)
    p, y, r = euler_from_landmarks(flipped, size)
    assert np.allclose((p, y, r), (12, -25, 10), atol=1.0)


def test_rotation_roundtrip_and_radians():
    for a in [(5, -30, 40), (-60, 10, -170)]:
        assert np.allclose(euler_from_rotation(rotation_matrix(*a)), a, atol=1e-6)
    assert np.allclose(radians([180, 90]), [np.pi, np.pi / 2])


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="98, 2"):
        euler_from_landmarks(np.zeros((68, 2)), 112)
    bad = _landmarks(0, 0, 0, 112)
    bad[33, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        euler_from_landmarks(bad, 112)
