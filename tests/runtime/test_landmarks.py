"""The 98-point scheme: invariants every other module relies on."""
import numpy as np
import pytest

from runtime import landmarks as lm


def test_mirror_is_involution_and_matches_reference(shared_data):
    ref = [int(line) for line in (shared_data / "wflw98_mirror.txt").read_text().split()]
    assert list(lm.MIRROR) == ref
    assert all(lm.MIRROR[lm.MIRROR[i]] == i for i in range(lm.NUM_POINTS))


def test_mirror_is_involution_without_reference():
    assert sorted(lm.MIRROR) == list(range(lm.NUM_POINTS))
    assert all(lm.MIRROR[lm.MIRROR[i]] == i for i in range(lm.NUM_POINTS))
    assert lm.MIRROR[60] == 72 and lm.MIRROR[96] == 97


def test_flip_twice_is_identity():
    pts = np.random.default_rng(0).random((5, 98, 2)).astype(np.float32)
    np.testing.assert_allclose(lm.flip_landmarks(lm.flip_landmarks(pts)), pts, atol=1e-6)
    big = pts * 200
    np.testing.assert_allclose(lm.flip_landmarks(lm.flip_landmarks(big, 199), 199), big, atol=1e-4)


def test_flip_swaps_eyes_in_the_image():
    pts = np.zeros((98, 2), np.float32)
    pts[60] = (0.3, 0.4)   # subject's right outer eye corner, image left
    pts[72] = (0.7, 0.4)
    f = lm.flip_landmarks(pts)
    # the left corner mirrored lands on the image left
    np.testing.assert_allclose(f[60], (0.3, 0.4), atol=1e-6)
    np.testing.assert_allclose(f[72], (0.7, 0.4), atol=1e-6)


def test_flip_rejects_wrong_shape():
    with pytest.raises(ValueError, match="98"):
        lm.flip_landmarks(np.zeros((68, 2)))


def test_regions_partition_all_points():
    allidx = [i for idx in lm.REGIONS.values() for i in idx]
    assert sorted(allidx) == list(range(lm.NUM_POINTS))
    assert lm.region_of(60) == "right_eye" and lm.region_of(97) == "pupils"
    with pytest.raises(ValueError):
        lm.region_of(98)


def test_regions_are_mirror_closed():
    """A flip maps each region onto itself or its left/right twin."""
    twin = {"right_brow": "left_brow", "left_brow": "right_brow",
            "right_eye": "left_eye", "left_eye": "right_eye"}
    for name, idx in lm.REGIONS.items():
        assert {lm.region_of(lm.MIRROR[i]) for i in idx} == {twin.get(name, name)}


def test_to_68_selection():
    assert len(lm.TO_68) == 68 and len(set(lm.TO_68)) == 68
    assert lm.TO_68[36] == 60 and lm.TO_68[45] == 72
    pts = np.arange(98 * 2, dtype=np.float32).reshape(98, 2)
    assert lm.to_68(pts).shape == (68, 2)


def test_euler_indices_and_ear_points_exist():
    assert len(lm.EULER_INDICES) == 14 and max(lm.EULER_INDICES) < 98
    assert set(lm.RIGHT_EYE_EAR) <= set(lm.REGIONS["right_eye"])
    assert set(lm.LEFT_EYE_EAR) <= set(lm.REGIONS["left_eye"])
    assert lm.OUTER_EYE_CORNERS == (60, 72)
