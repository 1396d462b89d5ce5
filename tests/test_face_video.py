"""scripts/make_face_video.py and scripts/score_face_video.py: the ground truth lands on the pixels
that were drawn (a bright marker at one landmark is found where the truth says, after warping,
downscaling and mp4 coding), transitions are what they claim, and the scorer reads it all back."""
import json
import math
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.backends.base import Backend
from runtime.evaluate import crop_affine
from runtime.preprocess import box_from_landmarks, to_crop_normalised
from tests.runtime.test_evaluate import make_shape

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import make_face_video as V  # noqa: E402
import score_face_video  # noqa: E402

MARK = 54  # nose tip: inside the face, well away from the mask's feathered edge


def marked_face(seed: int, size=(300, 280), origin=(90, 80), side=110.0) -> V.Face:
    """A dark scene with a faint random texture and a bright 5x5 marker at landmark MARK."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 40, (size[1], size[0], 3), dtype=np.uint8)
    lm = make_shape(rng, origin[0], origin[1], side)
    lm[MARK] = np.round(lm[MARK])  # the marker's centre pixel is the landmark, exactly
    x, y = lm[MARK].astype(int)
    img[y - 2:y + 3, x - 2:x + 3] = 255
    return V.Face(img, lm, "marked%d" % seed)


def brightest(frame: np.ndarray) -> np.ndarray:
    """Sub-pixel (x, y) of the brightest spot: the centroid of what is above half its peak."""
    g = cv2.GaussianBlur(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32), (0, 0), 1.0)
    y, x = np.unravel_index(np.argmax(g), g.shape)
    win = g[y - 6:y + 7, x - 6:x + 7]
    w = np.clip(win - (win.max() + np.median(win)) / 2.0, 0, None)
    yy, xx = np.mgrid[y - 6:y + 7, x - 6:x + 7]
    return np.array([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])


def test_the_truth_follows_the_warp_of_a_marker():
    face = marked_face(0)
    pose = (400.0, 220.0, 11.0, 1.25)
    m = V.face_affine(face.landmarks, pose, 120.0)
    frame = V.composite(np.zeros((480, 640, 3), np.float32),
                        [(face.image, V.face_mask(face.image.shape, face.landmarks), m, 1.0)])
    truth = V.apply_affine(face.landmarks, m)
    assert np.linalg.norm(brightest(frame) - truth[MARK]) <= 0.1  # a half-pixel convention slip is 0.5+
    # a similarity: eye corners 1.25 * 120 / side further apart, box centre on the pose's centre
    x0, y0, x1, y1 = box_from_landmarks(face.landmarks)
    k = 1.25 * 120.0 / max(x1 - x0, y1 - y0)
    iod = np.linalg.norm(face.landmarks[60] - face.landmarks[72])
    assert np.linalg.norm(truth[60] - truth[72]) == pytest.approx(k * iod, rel=1e-6)
    np.testing.assert_allclose(V.apply_affine([((x0 + x1) / 2, (y0 + y1) / 2)], m)[0], pose[:2], atol=1e-9)


def test_shrinking_a_big_face_keeps_its_truth_on_the_marker():
    face = marked_face(1, size=(900, 800), origin=(200, 150), side=420.0)
    small = V.shrink(face, 140.0)
    x0, y0, x1, y1 = box_from_landmarks(small.landmarks)
    assert max(x1 - x0, y1 - y0) == pytest.approx(140.0, rel=0.01)
    assert np.linalg.norm(brightest(small.image) - small.landmarks[MARK]) <= 0.2
    assert V.shrink(small, 200.0) is small  # never enlarged


def test_the_motion_is_slow_and_in_range():
    m = V.Motion()
    poses = np.array([V.pose_at(t, m, (0.3, 1.0, 2.0, 4.0)) for t in range(2000)])
    speed = np.hypot(*np.diff(poses[:, :2], axis=0).T)
    assert speed.max() <= 2 * math.pi * math.hypot(m.amp_x / m.period_x, m.amp_y / m.period_y) + 1e-9 < 5.0
    assert np.abs(np.diff(poses[:, 2])).max() < 1.0 and np.abs(poses[:, 2]).max() <= m.max_angle
    assert m.scale_min - 1e-9 <= poses[:, 3].min() and poses[:, 3].max() <= m.scale_max + 1e-9
    assert V.schedule(2, V.Motion(frames_per_face=2, fade=1)) == [(0, -1, 0.0), (0, -1, 0.0), (0, 1, 0.5),
                                                                  (1, -1, 0.0), (1, -1, 0.0)]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """Two marked faces, 4 frames each, 2 cross-fade frames between them."""
    d = tmp_path_factory.mktemp("facevideo")
    path = str(d / "v.mp4")
    motion = V.Motion(frames_per_face=4, fade=2)
    truth = V.make_video([marked_face(2), marked_face(3, origin=(60, 70), side=150.0)], path, motion=motion)
    return path, truth


def decoded(path: str):
    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            return frames
        frames.append(f)


def test_video_and_truth_agree_after_mp4_coding(video):
    path, truth = video
    frames = decoded(path)
    assert len(frames) == truth["n_frames"] == 10 and frames[0].shape == (480, 640, 3)
    assert json.loads(Path(path + ".json").read_text())["frames"] == truth["frames"]
    assert [f["face"] for f in truth["frames"]] == [0] * 4 + [-1] * 2 + [1] * 4
    for rec, frame in zip(truth["frames"], frames):
        assert rec["scored"] == (rec["face"] >= 0)
        if rec["scored"]:
            lm = np.asarray(rec["landmarks"])
            assert np.linalg.norm(brightest(frame) - lm[MARK]) <= 0.3
            np.testing.assert_allclose(rec["box"], box_from_landmarks(lm), atol=0.01)
        else:
            assert rec["landmarks"] is None
    assert not [p for p in os.listdir(os.path.dirname(path)) if "partial" in p]


def test_blank_transitions_show_only_the_background(tmp_path):
    path = str(tmp_path / "b.mp4")
    motion = V.Motion(frames_per_face=2, fade=3, transition="blank")
    truth = V.make_video([marked_face(4), marked_face(5)], path, motion=motion, seed=1)
    frames = decoded(path)
    bg = V.background(640, 480, 1)
    for rec, frame in zip(truth["frames"], frames):
        diff = np.abs(frame.astype(np.float32) - bg).max(axis=2)
        assert (diff.max() < 30) == (not rec["scored"])  # mp4 noise vs a face
    with pytest.raises(ValueError, match="transition"):
        V.make_video([marked_face(4)], path, motion=V.Motion(transition="cut"))


class Replay(Backend):
    """Answers the ground truth of the scored frames in order, in the true crop (a perfect model)."""

    name = "replay"

    def __init__(self, truth):
        super().__init__("replay")
        self.answers = [to_crop_normalised(np.asarray(f["landmarks"]),
                                           crop_affine(box_from_landmarks(np.asarray(f["landmarks"]))))
                        for f in truth["frames"] if f["scored"]]
        self.calls = []

    def _run(self, crops):
        self.calls.append(len(crops))
        out, self.answers = self.answers[:len(crops)], self.answers[len(crops):]
        return np.stack(out).reshape(len(crops), -1)


def test_reference_and_scorer_on_the_made_video(video, tmp_path, capsys, monkeypatch):
    from runtime import stability as S

    path, raw = video
    truth = S.read_truth(path + ".json")
    be = Replay(raw)
    ref = S.reference_predictions(be, path, truth["landmarks"], truth["scored"], batch_size=3)
    assert be.calls == [3, 3, 2] and not be.answers
    ok = truth["scored"]
    np.testing.assert_allclose(ref[ok], truth["landmarks"][ok], atol=1e-3)
    assert np.isnan(ref[~ok]).all()
    # a run that tracked perfectly except for a 2 px lag in x on the last frame of each face
    lines = []
    for f in raw["frames"]:
        faces = []
        if f["scored"]:
            lm = np.asarray(f["landmarks"]) + ((2.0, 0.0) if f["index"] in (3, 9) else (0.0, 0.0))
            faces = [{"id": 1, "plausible": True, "landmarks": lm.tolist()}]
        lines.append(json.dumps({"frame": f["index"], "faces": faces}))
    jl = tmp_path / "run.jsonl"
    jl.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(S, "load_model", lambda *a, **k: Replay(raw))
    out = tmp_path / "s.json"
    assert score_face_video.main(["--video", path, "--jsonl", str(jl), "--name", "perfect", "--model", "m",
                                  "--settle", "2", "--json", str(out)]) == 0
    saved = json.loads(out.read_text())
    s = saved["runs"]["perfect"]
    assert "| perfect | 8 | 100.00 |" in saved["markdown"]
    assert s["found_share"] == 1.0 and s["scored_frames"] == 8 and s["faces"] == 2
    assert s["reference_nme"] < 1e-4 and s["jitter"] > 0 and s["nme_first_2"] < 1e-4 < s["nme_after_2"]
    text = capsys.readouterr().out
    assert "| perfect | 8 | 100.00 |" in text and "one-shot, true box" in text


def test_real_faces_load_in_list_order(shared_data):
    faces = V.load_faces(str(shared_data / "faces98"), "test", limit=3)
    assert len(faces) == 3 and all(f.image.ndim == 3 and f.landmarks.shape == (98, 2) for f in faces)


def test_validation_faces_are_the_runs_held_out_faces(shared_data, tmp_path):
    """--split val picks the run's validation faces (none of them on the test list), in the order the
    split rebuilds them; without a run config it stops and names the missing file."""
    from keras_flm.config import RunConfig
    from keras_flm.evaluate import load_split

    data = str(shared_data / "faces98")
    cfg = RunConfig()
    cfg.save(str(tmp_path / "config.json"))
    faces = V.load_faces(data, "val", limit=3, run=str(tmp_path))
    val = load_split(data, "val", cfg)[0][:3]
    assert [f.name for f in faces] == ["%s:%d" % (r.rel_path, r.line) for r in val]
    test_names = {f.name for f in V.load_faces(data, "test")}
    assert not test_names & {f.name for f in faces}
    with pytest.raises(SystemExit) as e:
        V.main(["--out", str(tmp_path / "v.mp4"), "--split", "val", "--run", str(tmp_path / "nope")])
    assert e.value.code == 2 and not (tmp_path / "v.mp4").exists()
