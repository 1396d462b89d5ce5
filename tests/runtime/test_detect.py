"""The Haar detector's fallback passes and track confirmation on real faces (faces98's 68 WFLW test faces).

Each face is cut from its scene by an affine warp that puts its landmark box (150 px) at the
centre of a 640x480 frame, optionally rolled or mirrored, like scripts/make_face_video.py does
(edges replicated). The frontal-only detector is the old default (no profile cascade, no rotations).
"""
from typing import Dict, List, Tuple

import numpy as np
import pytest

from runtime.detect import BoxCalibration, DetectConfig, Detection, HaarDetector, nms
from runtime.preprocess import box_from_landmarks
from runtime.track import iou, roll_degrees

FOUND = 0.4  # IoU of a detection with the true landmark box for the face to count as found
ROLL = 35.0  # degrees: beyond what a frontal Haar cascade handles


def _scene(record, angle: float = 0.0, mirror: bool = False, size=(640, 480), face: float = 150.0):
    import cv2

    from runtime.wflw import load_image

    img = load_image(record)
    lm = np.asarray(record.landmarks, np.float64)
    if mirror:
        img = cv2.flip(img, 1)
        lm = lm.copy()
        lm[:, 0] = img.shape[1] - 1 - lm[:, 0]
    x0, y0, x1, y1 = box_from_landmarks(lm)
    c = ((x0 + x1) / 2.0, (y0 + y1) / 2.0)
    m = cv2.getRotationMatrix2D(c, angle, face / max(x1 - x0, y1 - y0))
    m[:, 2] += (size[0] / 2.0 - c[0], size[1] / 2.0 - c[1])
    out = cv2.warpAffine(img, m, size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return out, (lm @ m[:, :2].T + m[:, 2]).astype(np.float32)


def _best(det, frame, pts) -> float:
    gt = box_from_landmarks(pts)
    return max([iou(d.box, gt) for d in det(frame)], default=0.0)


@pytest.fixture(scope="module")
def faces(faces98) -> List[Dict[str, Tuple[np.ndarray, np.ndarray]]]:
    from runtime.wflw import read_annotations

    recs = read_annotations(str(faces98), "test")
    assert len(recs) == 68
    return [{"up": _scene(r), "rolled": _scene(r, ROLL), "mirror": _scene(r, mirror=True)} for r in recs]


@pytest.fixture(scope="module")
def detectors():
    return {"frontal": HaarDetector(DetectConfig(profile_cascade="", rotations=())),
            "full": HaarDetector(DetectConfig(fallback_per_call=0))}


@pytest.fixture(scope="module")
def frontal_upright(faces, detectors) -> List[bool]:
    """Whether the old frontal-only detector finds each face upright."""
    return [_best(detectors["frontal"], *f["up"]) >= FOUND for f in faces]


def test_rolled_faces_are_found_by_the_rotated_passes(faces, detectors, frontal_upright):
    """Faces the frontal cascade finds upright, rolled by 35 deg: it misses nearly all of them, the
    rotated passes find most (a driver tilting the head)."""
    idx = [i for i, ok in enumerate(frontal_upright) if ok]
    assert len(idx) >= 30
    old = sum(_best(detectors["frontal"], *faces[i]["rolled"]) >= FOUND for i in idx)
    new = sum(_best(detectors["full"], *faces[i]["rolled"]) >= FOUND for i in idx)
    assert old <= 0.2 * len(idx), "the frontal cascade alone found %d/%d rolled faces" % (old, len(idx))
    assert new >= 0.5 * len(idx), "the fallback found only %d/%d rolled faces" % (new, len(idx))


def test_faces_the_frontal_cascade_misses_are_found_on_both_sides(faces, detectors, frontal_upright):
    """Upright faces the frontal cascade misses (mostly turned away): the profile cascade knows one
    side only; with the mirrored pass the fallback finds some of them as shown and mirrored."""
    idx = [i for i, ok in enumerate(frontal_upright) if not ok]
    assert len(idx) >= 15
    found = sum(_best(detectors["full"], *faces[i]["up"]) >= FOUND for i in idx)
    mirrored = sum(_best(detectors["full"], *faces[i]["mirror"]) >= FOUND for i in idx)
    assert found >= 5 and mirrored >= 5, (found, mirrored, len(idx))
    kinds = {d.kind for i in idx for d in detectors["full"](faces[i]["up"][0])}
    assert "profile" in kinds


def test_frontal_hits_skip_the_fallback_passes(faces, detectors, frontal_upright):
    """The hot path stays cheap: when the frontal cascade finds a face, nothing else runs."""
    i = frontal_upright.index(True)
    dets = detectors["full"](faces[i]["up"][0])
    assert dets and all(d.kind == "frontal" for d in dets)


def test_confirm_sees_a_rolled_tracked_face_and_not_its_surroundings(faces, detectors, frontal_upright):
    """confirm() turns the tracked box upright by the landmarks' roll: it sees the rolled faces the
    frontal cascade finds upright, mostly fails without the roll, and does not fire on boxes next
    to the face (shoulder, scene)."""
    det = detectors["full"]
    idx = [i for i, ok in enumerate(frontal_upright) if ok]
    with_roll = no_roll = 0
    for i in idx:
        frame, pts = faces[i]["rolled"]
        # OpenCV turns the image counter-clockwise by a positive angle: the roll (clockwise) drops by it
        assert roll_degrees(pts) == pytest.approx(roll_degrees(faces[i]["up"][1]) - ROLL, abs=1.0)
        box = box_from_landmarks(pts)
        with_roll += det.confirm(frame, box, roll_degrees(pts))
        no_roll += det.confirm(frame, box, 0.0)
    assert with_roll >= 0.9 * len(idx) and no_roll <= 0.5 * len(idx), (with_roll, no_roll, len(idx))
    shifted = 0
    for f in faces:
        frame, pts = f["rolled"]
        x0, y0, x1, y1 = box_from_landmarks(pts)
        w, h = x1 - x0, y1 - y0
        shifted += det.confirm(frame, (x0 + 1.2 * w, y0, x1 + 1.2 * w, y1), 0.0)
        shifted += det.confirm(frame, (x0, y0 + 1.2 * h, x1, y1 + 1.2 * h), 0.0)
    assert shifted <= 0.05 * 2 * len(faces), shifted


def test_confirm_on_a_blank_frame_and_a_degenerate_box():
    det = HaarDetector()
    frame = np.full((480, 640, 3), 128, np.uint8)
    assert not det.confirm(frame, (200.0, 150.0, 350.0, 300.0), 10.0)
    assert not det.confirm(frame, (200.0, 150.0, 200.0, 150.0), 0.0)
    assert det(frame) == []


def test_nms_keeps_the_first_of_overlapping_boxes():
    a = Detection((0.0, 0.0, 10.0, 10.0), 1.0, "profile")
    b = Detection((1.0, 1.0, 11.0, 11.0), 5.0, "rotated")
    c = Detection((20.0, 0.0, 30.0, 10.0), 1.0, "rotated")
    assert nms([a, b, c], 0.3) == [a, c]
    assert Detection((0.0, 0.0, 1.0, 1.0), 1.0).kind == "frontal"


def test_mirrored_profile_boxes_mirror_the_calibration():
    cal = BoxCalibration(dx=-0.1, dy=0.15, sw=0.75, sh=0.75)
    x0, _, x1, _ = cal.apply(100, 100, 100, 100)
    m0, _, m1, _ = BoxCalibration(-cal.dx, cal.dy, cal.sw, cal.sh).apply(640 - 200, 100, 100, 100)
    assert (x0 + x1) / 2 == pytest.approx(640 - (m0 + m1) / 2)


def test_a_faceless_frame_runs_one_fallback_pass_per_call_in_turn(monkeypatch):
    """Bounded cost with nobody in view: frontal + one fallback pass per call, all passes in 3 calls."""
    det = HaarDetector()
    seen = []
    real = det._raw

    def spy(cascade, gray, *a, **k):
        seen.append(("profile" if cascade is det.profile else "frontal", gray.shape))
        return real(cascade, gray, *a, **k)

    monkeypatch.setattr(det, "_raw", spy)
    frame = np.full((480, 640, 3), 90, np.uint8)
    per_call = []
    for _ in range(3):
        seen.clear()
        assert det(frame) == []
        per_call.append([k for k, _ in seen])
    # call 1: frontal, then profile on the frame and its mirror; calls 2 and 3: frontal, one rotation each
    assert per_call == [["frontal", "profile", "profile"], ["frontal", "frontal"], ["frontal", "frontal"]]
