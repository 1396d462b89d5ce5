"""Tracking: landmarks of frame t give the crop of frame t+1; the detector runs only when needed.

The engine is driven frame by frame over the synthetic face video with a real Haar detector
(wrapped to miss on purpose) and an oracle "model" that returns the renderer's ground truth
for whatever face the crop holds, so every number here comes from the real crop/decode path.
"""
import dataclasses
import threading
from typing import List

import numpy as np
import pytest

from runtime.backends.base import Backend
from runtime.detect import Detection, HaarDetector
from runtime.pipeline import FaceEngine, PipelineConfig
from runtime.preprocess import DEFAULT_SPEC, crop_window, to_crop_normalised, window_affine
from runtime.smoothing import OneEuroFilter, SmoothConfig
from runtime.track import FaceTracker, TrackConfig, iou, plausibility, roll_degrees
from runtime.video import VideoFileSource


class Oracle(Backend):
    """A perfect model: the truth of the face under each crop; a collapsed point cloud when the
    crop holds no face (what an untrained or confused model gives) or when told to fail."""

    name = "oracle"

    def __init__(self, engine_ref: List[FaceEngine]) -> None:
        super().__init__("oracle", DEFAULT_SPEC)
        self.engine_ref = engine_ref
        self.truth = None  # type: Optional[np.ndarray]
        self.fail = False

    def _run(self, crops):
        out = []
        for tr in self.engine_ref[0].tracker.tracks[:len(crops)]:
            x0, y0, side = crop_window(tr.box, self.spec.scale)
            m = window_affine(x0, y0, side, self.spec.size)
            gt_box = (*self.truth.min(0), *self.truth.max(0))
            if self.fail or iou(tr.box, gt_box) < 0.2:
                out.append(np.full((98, 2), 0.5, np.float32))
            else:
                out.append(to_crop_normalised(self.truth, m, self.spec.size))
        return np.stack(out).reshape(len(crops), -1)


class Scripted:
    """Detector wrapper: detections on the frames where `hits(index)` holds, nothing elsewhere.
    Detections come from `inner` (real Haar) or, by default, from the truth box grown by 10 %
    (a detector box is never the landmark box exactly)."""

    def __init__(self, hits, inner=None) -> None:
        self.inner = inner
        self.hits = hits
        self.calls = []  # type: List[int]
        self.index = -1
        self.truth = None  # type: Optional[np.ndarray]

    def __call__(self, frame):
        self.calls.append(self.index)
        if not self.hits(self.index):
            return []
        if self.inner is not None:
            return self.inner(frame)
        (x0, y0), (x1, y1) = self.truth.min(0), self.truth.max(0)
        dx, dy = 0.05 * (x1 - x0), 0.05 * (y1 - y0)
        return [Detection((x0 - dx, y0 - dy + 3, x1 + dx, y1 + dy + 3), 1.0)]


def drive(video, truth, detector, track=TrackConfig(), fail_at=(), frames=None):
    """Run the engine over the video; returns per-frame face lists. The detector runs in the
    foreground here, so the frames it runs on are exact (background mode: see below)."""
    ref = []  # type: List[FaceEngine]
    oracle = Oracle(ref)
    track = dataclasses.replace(track, background_detect=False)
    cfg = PipelineConfig(track=track, smooth=SmoothConfig(enabled=False), dms=None)
    engine = FaceEngine(oracle, detector, cfg)
    ref.append(engine)
    src = VideoFileSource(video)
    out = []
    try:
        for i, rec in enumerate(truth["frames"][:frames]):
            frame = src.read()
            detector.index = i
            oracle.truth = detector.truth = np.asarray(rec["landmarks"], np.float32)
            oracle.fail = i in fail_at
            faces, _, _ = engine.process(frame, i, i / truth["fps"])
            out.append(faces)
    finally:
        src.close()
    return out


def test_track_survives_detector_misses(face_video):
    video, truth = face_video
    det = Scripted(lambda i: i == 0, HaarDetector())  # Haar finds the face once, then never again
    out = drive(video, truth, det, TrackConfig(detect_every=15))  # default max_unconfirmed=3
    assert det.calls == [0, 15, 30]  # periodic runs only: the track was never lost
    for i, (faces, rec) in enumerate(zip(out, truth["frames"])):
        assert len(faces) == 1, "frame %d lost the face" % i
        f = faces[0]
        assert f["plausible"] and f["source"] == ("detect" if i == 0 else "track")
        # frame 0 crops from the (calibrated) Haar box, later frames from the previous landmarks
        assert iou(f["box"], rec["box"]) > (0.5 if i == 0 else 0.75), "frame %d: crop box off the face" % i
        err = np.abs(np.asarray(f["landmarks"]) - np.asarray(rec["landmarks"])).max()
        assert err < 0.1, "frame %d: decode error %.3f px" % (i, err)


def test_track_the_detector_never_confirms_is_dropped(face_video):
    """A landmark model can keep 'seeing' a face on background; a track that several detector
    runs in a row do not confirm is dropped (here the detector misses on purpose)."""
    video, truth = face_video
    det = Scripted(lambda i: i == 0)
    out = drive(video, truth, det, TrackConfig(detect_every=5, max_unconfirmed=2), frames=15)
    assert all(len(f) == 1 for f in out[:10]) and all(f == [] for f in out[10:])
    assert det.calls == [0, 5, 10, 11, 12, 13, 14]  # dropped at 10: no track, detect every frame


def test_a_detected_face_replaces_a_drifted_unconfirmed_track():
    frame = np.zeros((240, 320, 3), np.uint8)
    tr = FaceTracker(Boxes([(100, 100, 160, 160)]), TrackConfig(detect_every=5, background_detect=False))
    (t,) = tr.plan(frame, 0)
    t.box, t.source = (200, 150, 260, 210), "track"  # walked off the face entirely
    (new,) = tr.plan(frame, 5)
    assert new is not t and new.box == (100, 100, 160, 160) and new.source == "detect"


def test_lost_track_runs_the_detector_again(face_video):
    video, truth = face_video
    det = Scripted(lambda i: i not in (6, 7))
    out = drive(video, truth, det, TrackConfig(detect_every=0), fail_at=(5,), frames=12)
    assert det.calls == [0, 6, 7, 8]  # lost at 5 -> detect at 6; detector blind at 6 and 7
    assert not out[5][0]["plausible"] and "degenerate" in out[5][0]["reason"]
    assert out[6] == [] and out[7] == []  # no face reported while nothing is found
    assert out[8][0]["source"] == "detect" and out[8][0]["plausible"]
    assert all(f[0]["source"] == "track" for f in out[9:12])


def test_detect_every_zero_means_only_when_lost(face_video):
    video, truth = face_video
    det = Scripted(lambda i: True)
    drive(video, truth, det, TrackConfig(detect_every=0), frames=25)
    assert det.calls == [0]


class Boxes:
    def __init__(self, boxes) -> None:
        self.boxes = boxes

    def __call__(self, frame):
        return [Detection(b, 1.0) for b in self.boxes]


def test_max_faces_and_duplicates():
    frame = np.zeros((240, 320, 3), np.uint8)
    dets = [(10, 10, 60, 60), (100, 20, 150, 70), (200, 30, 260, 90), (12, 11, 61, 62)]
    tr = FaceTracker(Boxes(dets), TrackConfig(max_faces=2))
    tracks = tr.plan(frame, 0)
    assert [t.box for t in tracks] == [dets[0], dets[1]]
    tr = FaceTracker(Boxes(dets), TrackConfig(max_faces=8))
    assert len(tr.plan(frame, 0)) == 3  # the near-duplicate of the first box is not a new face
    with pytest.raises(ValueError):
        FaceTracker(Boxes(dets), TrackConfig(max_faces=0))


def test_drifted_track_is_reanchored_by_a_periodic_detection():
    frame = np.zeros((240, 320, 3), np.uint8)
    tr = FaceTracker(Boxes([(100, 100, 160, 160)]), TrackConfig(detect_every=5, background_detect=False))
    (t,) = tr.plan(frame, 0)
    t.box, t.source = (110, 110, 175, 175), "track"  # landmarks walked away from the face
    tr.plan(frame, 3)
    assert t.box == (110, 110, 175, 175)  # no detection yet
    tr.plan(frame, 5)
    assert t.box == (100, 100, 160, 160) and t.source == "detect"


class Recording(Boxes):
    def __init__(self, boxes) -> None:
        super().__init__(boxes)
        self.threads = []
        self.frames = []

    def __call__(self, frame):
        self.threads.append(threading.get_ident())
        self.frames.append(int(frame[0, 0, 0]))
        return super().__call__(frame)


def test_periodic_detection_runs_in_the_background_and_merges_after_the_lag():
    det = Recording([(100, 100, 160, 160)])
    tr = FaceTracker(det, TrackConfig(detect_every=10, detect_lag=3))
    frame = np.zeros((240, 320, 3), np.uint8)
    (t,) = tr.plan(frame, 0)  # no track: foreground detection
    assert tr.ran_detector and det.threads == [threading.get_ident()]
    t.source = "track"
    merged = []
    for i in range(1, 25):
        frame[0, 0, 0] = i  # tag the frame: the worker must see its own copy of frame 10
        t.box = (110, 110, 175, 175)  # landmarks keep walking off the detector's box
        tr.plan(frame, i)
        assert not tr.ran_detector  # the per-frame path never waits for the detector
        if tr.merged_background:
            merged.append(i)
            assert t.box == (100, 100, 160, 160)  # re-anchored by the background result
    assert merged == [13, 23]  # submitted at 10 and 20, merged exactly 3 frames later
    assert det.frames[1:] == [10, 20] and set(det.threads[1:]) == {tr.background._thread.ident}
    tr.close()


def test_background_errors_surface_on_the_tracker_thread():
    calls = []

    def det(frame):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("detector crashed")
        return [Detection((10.0, 10.0, 60.0, 60.0), 1.0)]

    tr = FaceTracker(det, TrackConfig(detect_every=2, detect_lag=1))
    frame = np.zeros((100, 100, 3), np.uint8)
    tr.plan(frame, 0)[0].source = "track"
    tr.plan(frame, 2)
    with pytest.raises(RuntimeError, match="detector crashed"):
        tr.plan(frame, 3)


def _face(cx=200.0, cy=200.0, s=100.0):
    rng = np.random.default_rng(0)
    return (rng.uniform(-0.5, 0.5, (98, 2)) * s + (cx, cy)).astype(np.float32)


def test_plausibility_reasons():
    cfg = TrackConfig()
    pts = _face()
    box = (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())
    assert plausibility(pts, box, (480, 640), cfg) == ""
    assert "degenerate" in plausibility(np.full((98, 2), 200.0, np.float32), box, (480, 640), cfg)
    flat = pts.copy()
    flat[:, 1] = 200 + (flat[:, 1] - 200) * 0.3
    assert "aspect" in plausibility(flat, box, (480, 640), cfg)
    assert "drifted" in plausibility(pts + (60, 0), box, (480, 640), cfg)
    assert "crop box" in plausibility((pts - 200) * 0.3 + 200, box, (480, 640), cfg)
    assert "left the frame" in plausibility(pts - (220, 0), (box[0] - 220, box[1], box[2] - 220, box[3]),
                                            (480, 640), cfg)
    bad = pts.copy()
    bad[3, 0] = np.nan
    assert "non-finite" in plausibility(bad, box, (480, 640), cfg)


def test_one_euro_smooths_still_points_and_follows_motion():
    rng = np.random.default_rng(1)
    f = OneEuroFilter(SmoothConfig())
    still = [f(np.array([[100.0, 50.0]]) + rng.normal(0, 1.0, (1, 2)), i / 30.0) for i in range(120)]
    still = np.concatenate(still[30:])
    assert still.std(0).max() < 0.5  # raw std is 1 px
    f.reset()
    moving = [f(np.array([[100.0 + 300 * i / 30.0, 50.0]]), i / 30.0) for i in range(60)]
    assert abs(moving[-1][0, 0] - (100 + 300 * 59 / 30.0)) < 10  # 300 px/s: lag < one frame's motion
    f.reset()
    assert np.array_equal(f(np.ones((98, 2)), 0.0), np.ones((98, 2)))  # first sample passes through


def test_haar_boxes_follow_the_landmark_box_convention_on_real_faces(faces98):
    """The calibrated Haar box approximates the landmarks' box training crops from (real faces)."""
    import cv2

    from runtime.wflw import read_annotations

    recs = [r for r in read_annotations(str(faces98), "train") if "lfw" in r.image_path][:25]
    det = HaarDetector()
    ious = []
    for r in recs:
        gt = (*r.landmarks.min(0), *r.landmarks.max(0))
        found = det(cv2.imread(r.image_path))
        ious.append(max([iou(d.box, gt) for d in found], default=0.0))
    assert np.mean(np.asarray(ious) > 0) > 0.8  # found most faces
    assert np.median([v for v in ious if v > 0]) > 0.7


def test_detector_configuration_errors(tmp_path):
    from runtime.detect import DetectConfig, DetectorError, haar_cascade_path, make_detector

    with pytest.raises(DetectorError, match="--yunet-model"):
        make_detector(DetectConfig(name="yunet"))
    with pytest.raises(DetectorError, match="YuNet model not found"):
        make_detector(DetectConfig(name="yunet", yunet_model=str(tmp_path / "yunet.onnx")))
    bad = tmp_path / "yunet.onnx"
    bad.write_bytes(b"junk")
    with pytest.raises(DetectorError, match="cannot load YuNet model"):
        make_detector(DetectConfig(name="yunet", yunet_model=str(bad)))
    with pytest.raises(DetectorError, match="unknown detector"):
        make_detector(DetectConfig(name="mtcnn"))
    with pytest.raises(DetectorError, match="not found"):
        haar_cascade_path("haarcascade_nothing.xml")


def test_size_anchor_limits_a_biased_model():
    """A model that always answers 'a 20 % bigger face' would inflate the box without bound; the
    box stays within size_anchor of the last detector box, centred where the landmarks say."""
    from runtime.track import anchor_size

    assert anchor_size((0, 0, 100, 80), 100, 1.35) == (0, 0, 100, 80)
    x0, y0, x1, y1 = anchor_size((0, 0, 200, 100), 100, 1.35)
    assert (x1 - x0, (x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx((135, 100, 50))
    assert anchor_size((0, 0, 50, 50), 100, 0) == (0, 0, 50, 50)
    tr = FaceTracker(Boxes([(100.0, 100.0, 200.0, 200.0)]), TrackConfig(background_detect=False))
    frame = np.zeros((480, 640, 3), np.uint8)
    (t,) = tr.plan(frame, 0)
    for i in range(1, 15):
        b = t.box
        cx, cy, s = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, (b[2] - b[0]) * 1.2
        pts = _face(cx, cy, s)  # landmarks 20 % bigger than the crop box, every frame
        pts = (pts - pts.mean(0)) * (s / np.ptp(pts, 0)) + (cx, cy)
        assert tr.update(t, pts.astype(np.float32), b, frame.shape)
        tr.plan(frame, i)
    assert t.box[2] - t.box[0] == pytest.approx(135.0, rel=1e-3)


class Confirming(Scripted):
    """Scripted detector with `confirm(frame, box, roll)`: answers `answer`, records its calls."""

    def __init__(self, hits, answer: bool) -> None:
        super().__init__(hits)
        self.answer = answer
        self.confirms = []  # type: List[tuple]

    def confirm(self, frame, box, roll=0.0):
        self.confirms.append((self.index, box, roll))
        return self.answer


def test_a_track_the_detector_misses_is_kept_while_confirm_sees_its_face(face_video):
    """A face the full-frame detector cannot see (profile, rolled) but `confirm` finds in the track's
    own box is not dropped; it is when confirm does not see it either (a ghost)."""
    video, truth = face_video
    det = Confirming(lambda i: i == 0, answer=True)
    out = drive(video, truth, det, TrackConfig(detect_every=5, max_unconfirmed=2), frames=30)
    assert all(len(f) == 1 and f[0]["plausible"] for f in out)
    assert det.calls == [0, 5, 10, 15, 20, 25]  # never lost, never dropped
    assert [c[0] for c in det.confirms] == [5, 10, 15, 20, 25]
    for i, box, roll in det.confirms:  # asked about the track's box and its landmarks' roll
        lm = np.asarray(truth["frames"][i - 1]["landmarks"], np.float32)
        assert iou(box, truth["frames"][i]["box"]) > 0.75
        assert roll == pytest.approx(roll_degrees(lm), abs=1e-3)
    det = Confirming(lambda i: i == 0, answer=False)
    out = drive(video, truth, det, TrackConfig(detect_every=5, max_unconfirmed=2), frames=15)
    assert all(len(f) == 1 for f in out[:10]) and all(f == [] for f in out[10:])


def test_confirm_is_not_asked_about_tracks_a_detection_sees():
    frame = np.zeros((240, 320, 3), np.uint8)
    asked = []

    class Det(Boxes):
        def confirm(self, frame, box, roll=0.0):
            asked.append(box)
            return True

    tr = FaceTracker(Det([(100, 100, 160, 160)]), TrackConfig(detect_every=5, background_detect=False))
    (t,) = tr.plan(frame, 0)
    t.source, t.landmarks = "track", _face(130, 130, 60)
    tr.plan(frame, 5)
    assert asked == [] and t.unconfirmed == 0


def test_fallback_detections_confirm_but_do_not_move_or_displace_tracks():
    """Profile/rotated detections have rougher boxes and more false hits than frontal ones: one
    overlapping a healthy track confirms it, and moves it only when confirm() does not see the face
    in the track's own box; one elsewhere does not take the place of a track that was merely
    unseen; a frontal one elsewhere does."""

    class Det:
        def __init__(self, dets, answer):
            self.dets, self.answer = dets, answer

        def __call__(self, frame):
            return list(self.dets)

        def confirm(self, frame, box, roll=0.0):
            return self.answer

    frame = np.zeros((240, 320, 3), np.uint8)
    cfg = TrackConfig(detect_every=5, background_detect=False, max_unconfirmed=3)
    tr = FaceTracker(Boxes([(100, 100, 160, 160)]), cfg)
    (t,) = tr.plan(frame, 0)
    t.box, t.source, t.landmarks = (110, 110, 175, 175), "track", _face(140, 140, 60)
    t.unconfirmed = 1
    profile = Detection((100.0, 100.0, 160.0, 160.0), 1.0, "profile")
    tr.detector = Det([profile], answer=True)
    assert tr.plan(frame, 5) == [t]
    assert t.box == (110, 110, 175, 175) and t.source == "track" and t.unconfirmed == 0
    tr.detector = Det([profile], answer=False)  # the track's own box holds no face: it drifted
    assert tr.plan(frame, 10) == [t] and t.box == profile.box and t.source == "detect"
    t.source = "track"
    tr.detector = Det([Detection((10.0, 10.0, 60.0, 60.0), 1.0, "rotated")], answer=False)
    assert tr.plan(frame, 15) == [t] and t.unconfirmed == 1  # unseen, kept
    tr.detector = Det([Detection((10.0, 10.0, 60.0, 60.0), 1.0, "frontal")], answer=False)
    (new,) = tr.plan(frame, 20)
    assert new is not t and new.box == (10.0, 10.0, 60.0, 60.0)
    # a lost track is re-anchored by any detection, and an empty slot takes a fallback detection
    new.lost = True
    tr.detector = Det([Detection((12.0, 12.0, 62.0, 62.0), 1.0, "profile")], answer=True)
    assert tr.plan(frame, 21) == [new] and new.box == (12.0, 12.0, 62.0, 62.0) and not new.lost
    tr.reset()
    (fresh,) = tr.plan(frame, 22)
    assert fresh.box == (12.0, 12.0, 62.0, 62.0) and fresh.source == "detect"


class SeesFaces(Boxes):
    """Fixed frontal boxes, and confirm() sees a face in every track's box."""

    def confirm(self, frame, box, roll=0.0):
        return True


def test_a_frontal_detection_near_a_confirmed_track_re_anchors_it():
    """A track confirm() sees whose box slid and grew off its face (IoU < match_iou with the frontal
    box of that face, within size_anchor of it) takes the frontal box instead of blocking it."""

    frame = np.zeros((480, 640, 3), np.uint8)
    cfg = TrackConfig(detect_every=5, background_detect=False)
    tr = FaceTracker(SeesFaces([(100.0, 100.0, 200.0, 200.0)]), cfg)
    (t,) = tr.plan(frame, 0)
    t.box, t.source, t.landmarks = (140.0, 140.0, 270.0, 270.0), "track", _face(205, 205, 130)
    assert iou(t.box, (100.0, 100.0, 200.0, 200.0)) < 0.3
    assert tr.plan(frame, 5) == [t]
    assert t.box == (100.0, 100.0, 200.0, 200.0) and t.source == "detect" and t.ref_size == 100.0


def test_a_detection_on_the_edge_of_a_confirmed_track_does_not_move_it():
    """A frontal box overlapping only the edge of a track confirm() sees (neither centre inside the
    other box: a hit beside the face) leaves the track where its landmarks put it; one around a track
    that shrank onto part of the face re-anchors it."""

    frame = np.zeros((480, 640, 3), np.uint8)
    cfg = TrackConfig(detect_every=5, background_detect=False)
    tr = FaceTracker(SeesFaces([(259.0, 164.0, 440.0, 352.0)]), cfg)
    (t,) = tr.plan(frame, 0)
    t.source, t.landmarks = "track", _face(350, 258, 181)
    tr.detector = SeesFaces([(424.0, 203.0, 518.0, 296.0)])  # the stop-27 case: 0 < IoU < match_iou
    assert 0 < iou(t.box, tr.detector.boxes[0]) < 0.3
    assert tr.plan(frame, 5) == [t] and t.box == (259.0, 164.0, 440.0, 352.0) and t.source == "track"
    # a track shrunk onto part of its face (the mouth) is re-anchored by the face's box around it
    t.box, t.landmarks = (300.0, 280.0, 380.0, 340.0), _face(340, 310, 80)
    tr.detector = SeesFaces([(259.0, 164.0, 440.0, 352.0)])
    assert iou(t.box, tr.detector.boxes[0]) < 0.3
    assert tr.plan(frame, 10) == [t] and t.box == (259.0, 164.0, 440.0, 352.0) and t.source == "detect"


@pytest.mark.parametrize("det_box", [(150.0, 150.0, 250.0, 250.0), (160.0, 120.0, 260.0, 220.0)])
def test_a_small_detection_inside_a_healthy_track_confirms_it_without_moving_it(det_box):
    """Half-size frontal hits on part of a turned face (IoU 0.25 centred: the close path; IoU >= 0.3
    off-centre would be the matched path) confirm the track and leave its box and size anchor; the
    rule leaves lost tracks and tracks fresh from the detector alone."""

    frame = np.zeros((480, 640, 3), np.uint8)
    cfg = TrackConfig(detect_every=5, background_detect=False, max_faces=2)
    tr = FaceTracker(SeesFaces([(100.0, 100.0, 300.0, 300.0)]), cfg)
    (t,) = tr.plan(frame, 0)
    t.source, t.landmarks, t.unconfirmed = "track", _face(200, 200, 200), 2
    tr.detector = SeesFaces([det_box])
    assert tr.partial_hit(t, Detection(det_box, 1.0))
    assert tr.plan(frame, 5) == [t]  # confirmed, and no second track on the same face
    assert t.box == (100.0, 100.0, 300.0, 300.0) and t.ref_size == 200.0 and t.unconfirmed == 0
    t.lost = True  # a lost track's landmarks are not evidence: any detection may re-anchor it
    assert not tr.partial_hit(t, Detection(det_box, 1.0))
    t.lost, t.source = False, "detect"
    assert not tr.partial_hit(t, Detection(det_box, 1.0))
    t.source = "track"
    assert not tr.partial_hit(t, Detection((20.0, 20.0, 60.0, 60.0), 1.0))  # not inside the face
    assert not FaceTracker(SeesFaces([]), TrackConfig(size_anchor=0)).partial_hit(t, Detection(det_box, 1.0))


def test_background_runs_confirm_on_the_worker_and_merge_the_result():
    threads = []

    class Det(Boxes):
        def confirm(self, frame, box, roll=0.0):
            threads.append(threading.get_ident())
            return True

    det = Det([(100, 100, 160, 160)])
    tr = FaceTracker(det, TrackConfig(detect_every=5, detect_lag=2, max_unconfirmed=1))
    frame = np.zeros((240, 320, 3), np.uint8)
    (t,) = tr.plan(frame, 0)
    t.source, t.landmarks = "track", _face(130, 130, 60)
    det.boxes = []  # the full-frame detector stops seeing the face
    for i in range(1, 20):
        assert tr.plan(frame, i) == [t], "frame %d dropped the track" % i  # max_unconfirmed=1: one miss drops
        assert not tr.ran_detector
    assert len(threads) == 3 and set(threads) == {tr.background._thread.ident}  # runs at 5, 10, 15
    tr.close()


def test_roll_degrees():
    pts = _face()
    pts[60:68] = (100.0, 100.0)
    pts[68:76] = (150.0, 150.0)
    assert roll_degrees(pts) == pytest.approx(45.0)
    assert roll_degrees(None) == 0.0 and roll_degrees(pts[:68]) == 0.0
