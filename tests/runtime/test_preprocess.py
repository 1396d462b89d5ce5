"""The crop contract shared by training, evaluation and serving."""
import cv2
import numpy as np
import pytest

from runtime.preprocess import (
    DEFAULT_SPEC,
    CropSpec,
    box_from_landmarks,
    crop_face,
    crop_from_landmarks,
    normalize_input,
    to_crop_normalised,
    to_frame,
)


def _pts(rng, cx=320, cy=240, r=80):
    return np.stack([cx + rng.uniform(-r, r, 98), cy + rng.uniform(-r, r, 98)], 1).astype(np.float32)


def test_round_trip_frame_crop_frame_within_half_pixel():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (480, 640, 3), np.uint8)
    for _ in range(20):
        pts = _pts(rng, rng.uniform(50, 590), rng.uniform(50, 430), rng.uniform(10, 150))
        crop, m = crop_from_landmarks(frame, pts)
        norm = to_crop_normalised(pts, m)
        assert crop.shape == (112, 112) and crop.dtype == np.uint8
        assert norm.min() >= 0 and norm.max() <= 1  # the landmark box sits inside the 1.2x window
        back = to_frame(norm, m)
        assert np.abs(back - pts).max() < 0.5


def test_crop_samples_the_right_pixels():
    """A bright dot at a landmark lands at that landmark's crop coordinate."""
    frame = np.zeros((300, 400), np.uint8)
    for dot in ((230, 150), (195, 117), (262, 181)):
        cv2.circle(frame, dot, 3, 255, -1)
    crop, m = crop_face(frame, (180, 100, 280, 200))
    for dot in ((230, 150), (195, 117), (262, 181)):
        u = to_crop_normalised(np.array([dot], np.float32), m)[0] * 112
        x0, y0 = int(u[0]) - 5, int(u[1]) - 5
        win = crop[y0:y0 + 11, x0:x0 + 11].astype(np.float64)
        ys, xs = np.mgrid[y0:y0 + 11, x0:x0 + 11]
        cx, cy = (win * xs).sum() / win.sum(), (win * ys).sum() / win.sum()
        assert abs(cx - u[0]) < 0.5 and abs(cy - u[1]) < 0.5


def test_box_partly_outside_frame_is_padded():
    frame = np.full((100, 100, 3), 200, np.uint8)
    crop, m = crop_face(frame, (-40, -40, 40, 40))
    assert crop[0, 0] == DEFAULT_SPEC.pad_value  # outside: padding
    assert crop[-1, -1] == 200  # inside: the frame
    spec = CropSpec(pad_value=77)
    crop2, _ = crop_face(frame, (80, 80, 160, 160), spec)
    assert crop2[-1, -1] == 77 and crop2[0, 0] == 200


def test_tiny_box_and_grayscale_inputs():
    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 255, (64, 64, 3), np.uint8)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    box = (30, 30, 32.5, 31)  # a 2.5 px face
    for frame in (bgr, gray, gray[..., None]):
        crop, m = crop_face(frame, box)
        assert crop.shape == (112, 112) and crop.dtype == np.uint8
    c_bgr, _ = crop_face(bgr, (10, 10, 50, 50))
    c_gray, _ = crop_face(gray, (10, 10, 50, 50))
    assert np.abs(c_bgr.astype(int) - c_gray.astype(int)).max() <= 2  # colour and gray agree


@pytest.mark.parametrize("box,msg", [
    ((10, 10, 5, 20), "empty or inverted"),
    ((10, 10, 10, 20), "empty or inverted"),
    ((0, 0, float("nan"), 5), "non-finite"),
    ((1, 2, 3), "4 numbers"),
    ("abcd", "4 numbers"),
])
def test_invalid_boxes_raise_clear_valueerror(box, msg):
    with pytest.raises(ValueError, match=msg):
        crop_face(np.zeros((50, 50), np.uint8), box)


def test_invalid_frames_and_scale():
    with pytest.raises(ValueError, match="frame"):
        crop_face(np.zeros((0, 0), np.uint8), (0, 0, 1, 1))
    with pytest.raises(ValueError, match="scale"):
        crop_face(np.zeros((10, 10), np.uint8), (0, 0, 5, 5), CropSpec(scale=0))
    with pytest.raises(ValueError, match="NaN"):
        box_from_landmarks(np.full((98, 2), np.nan))


def test_reused_output_buffer():
    frame = np.random.default_rng(2).integers(0, 255, (120, 160), np.uint8)
    buf = np.empty((112, 112), np.uint8)
    crop, _ = crop_face(frame, (20, 20, 100, 100), out=buf)
    assert crop is buf or np.shares_memory(crop, buf)


def test_normalize_input_is_lossless_int8_at_fix_point_7():
    u8 = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    x = normalize_input(u8)
    assert x.shape == (1, 16, 16, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(np.round(x * 2 ** 7).astype(int)[..., 0], u8.astype(int) - 128)
    with pytest.raises(ValueError):
        normalize_input(np.zeros((2, 3, 4, 5), np.uint8))


def test_spec_round_trips_through_dict():
    spec = CropSpec(scale=1.3)
    assert CropSpec.from_dict(spec.to_dict()) == spec
