"""The synthetic face generator: label semantics, mirror symmetry, determinism, attribute flags,
WFLW file format, Haar detectability and the ground-truth video."""
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from keras_flm.synth import dataset as synth_dataset
from keras_flm.synth import render_face, render_frame, sample_params, write_dataset, write_face_video
from keras_flm.synth.render import FaceParams, attribute_flags, face_geometry, occluder_coverage, with_changes
from keras_flm.synth.shape import ShapeParams, project, template_3d
from runtime.landmarks import ATTRIBUTES, LEFT_EYE_EAR, MIRROR, RIGHT_EYE_EAR, flip_landmarks
from runtime.preprocess import crop_from_landmarks

SIZE = 192


def ear(lm: np.ndarray, idx) -> float:
    p1, p2, p3, p4, p5, p6 = (lm[i] for i in idx)
    return float((np.linalg.norm(p2 - p6) + np.linalg.norm(p3 - p5)) / (2 * np.linalg.norm(p1 - p4)))


def inside(poly: np.ndarray, pt: np.ndarray) -> bool:
    return cv2.pointPolygonTest(poly.astype(np.float32).reshape(-1, 1, 2), (float(pt[0]), float(pt[1])),
                                False) >= 0


def iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def upright(lm: np.ndarray) -> np.ndarray:
    """Landmarks rotated so that the outer eye corners 60 -> 72 are horizontal (undo the roll)."""
    d = lm[72] - lm[60]
    a = -np.arctan2(d[1], d[0])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (lm - lm[60]) @ rot.T


def frontal_face(seed: int, **force) -> FaceParams:
    return sample_params(np.random.default_rng(seed), SIZE, frontal=True, **force)


@pytest.mark.parametrize("seed", range(12))
def test_landmark_semantics(seed):
    p = frontal_face(seed, occlusion=False)
    _, lm, _ = render_face(p, SIZE)
    assert lm.shape == (98, 2) and lm.dtype == np.float32
    lm = upright(lm)
    # eyes: 60 outer right (image left) < 64 inner < 68 inner left < 72 outer left
    assert lm[60, 0] < lm[64, 0] < lm[68, 0] < lm[72, 0]
    assert lm[60, 0] < lm[62, 0] < lm[64, 0] and lm[68, 0] < lm[70, 0] < lm[72, 0]
    for up, lo in ((61, 67), (62, 66), (63, 65), (69, 75), (70, 74), (71, 73)):
        assert lm[up, 1] <= lm[lo, 1] + 1e-3  # upper lid above (or on) the lower lid
    for pupil, eye in ((96, slice(60, 68)), (97, slice(68, 76))):
        assert lm[eye, 0].min() < lm[pupil, 0] < lm[eye, 0].max()
    # brows above the eyes, right brow on the image left
    assert lm[33:42, 1].max() < lm[60:68, 1].min() and lm[42:51, 1].max() < lm[68:76, 1].min()
    assert lm[33:42, 0].mean() < lm[42:51, 0].mean()
    # nose bridge runs down to the tip, the base lies below it, left to right
    assert np.all(np.diff(lm[51:55, 1]) > 0) and lm[57, 1] > lm[54, 1]
    assert np.all(np.diff(lm[55:60, 0]) > 0)
    # mouth: corners 76 < 82 and 88 < 92, below the nose, inside the face contour
    assert lm[76, 0] < lm[79, 0] < lm[82, 0] and lm[88, 0] < lm[92, 0]
    assert lm[76:96, 1].min() > lm[57, 1]
    jaw_and_brows = np.concatenate([lm[0:33], lm[46:41:-1], lm[37:32:-1]])
    assert all(inside(jaw_and_brows, lm[i]) for i in range(51, 96))
    assert all(inside(lm[76:88], lm[i]) for i in range(88, 96))
    # contour: image left -> chin -> image right
    assert lm[0, 0] < lm[16, 0] < lm[32, 0] and lm[16, 1] == pytest.approx(lm[0:33, 1].max(), abs=1.5)


@pytest.mark.parametrize("seed", range(6))
def test_mirror_map_holds_for_the_template(seed):
    rng = np.random.default_rng(seed)
    shape = ShapeParams() if seed == 0 else sample_params(rng, SIZE).shape
    shape = replace(shape, gaze_x=0.0, eye_open_left=shape.eye_open_right)
    cx = 100.0
    lm, _ = project(template_3d(shape), 0.0, 0.0, 0.0, (cx, 90.0), 60.0)
    flipped = flip_landmarks(lm.astype(np.float32), width=2 * cx)
    np.testing.assert_allclose(flipped, lm, atol=1e-3)
    # and a turned face mirrors into the opposite turn
    turned, _ = project(template_3d(shape), 20.0, 5.0, 0.0, (cx, 90.0), 60.0)
    back, _ = project(template_3d(shape), -20.0, 5.0, 0.0, (cx, 90.0), 60.0)
    np.testing.assert_allclose(flip_landmarks(turned.astype(np.float32), 2 * cx), back, atol=1e-3)
    assert MIRROR[60] == 72  # the map itself is runtime's (one source of truth)


def test_far_side_contour_stays_outside_the_features():
    """A turned head's far-side contour moves onto the visible silhouette: outside the far eye,
    brow and mouth corner at the same height (a fixed 3-D jaw line would cut through them)."""
    for yaw in (-40.0, -25.0, 25.0, 40.0):
        for pitch in (-10.0, 10.0):
            p = FaceParams(yaw=yaw, pitch=pitch, center=(96.0, 96.0), scale=50.0)
            lm, _ = face_geometry(p)
            right = yaw > 0  # far side = image right = contour 16..32
            side = lm[16:33] if right else lm[16::-1]  # chin -> temple
            for f in ((46, 72, 82) if right else (33, 60, 76)):
                contour_x = np.interp(lm[f, 1], side[::-1, 1], side[::-1, 0])
                margin = contour_x - lm[f, 0] if right else lm[f, 0] - contour_x
                assert margin > 0, (yaw, pitch, f, margin)


def test_render_is_deterministic():
    a = render_face(7, SIZE)
    b = render_face(np.random.default_rng(7), SIZE)
    c = render_face(8, SIZE)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert a[0].dtype == np.uint8 and a[0].shape == (SIZE, SIZE)
    assert a[2].shape == (6,)


def test_rectangular_image_size():
    img, lm, _ = render_face(3, (256, 160))
    assert img.shape == (160, 256)
    assert lm[:, 0].max() < 256 and lm[:, 1].max() < 160


@pytest.mark.parametrize("attr", ATTRIBUTES)
def test_forced_attribute_sets_exactly_its_flag(attr):
    off = dict.fromkeys(ATTRIBUTES, False)
    for seed in range(6):
        rng = np.random.default_rng([seed, 99])
        p = sample_params(rng, SIZE, **dict(off, **{attr: True}))
        _, lm, flags = render_face(p, SIZE)
        expected = np.array([a == attr for a in ATTRIBUTES], dtype=np.int32)
        np.testing.assert_array_equal(flags, expected)
        q = sample_params(np.random.default_rng([seed, 98]), SIZE, **off)
        assert not render_face(q, SIZE)[2].any()


def test_flags_follow_the_rendering():
    off = dict.fromkeys(ATTRIBUTES, False)
    for seed in range(5):
        # blur: the flagged face is visibly softer than the same face unblurred
        p = replace(sample_params(np.random.default_rng(seed), SIZE, **dict(off, blur=True)), noise=0.0)
        sharp = replace(p, blur=0.0, blur_kind="gaussian")
        blurred_img, _, f1 = render_face(p, SIZE)
        sharp_img, _, f0 = render_face(sharp, SIZE)
        assert f1[5] == 1 and f0[5] == 0
        lap = [cv2.Laplacian(i, cv2.CV_32F).var() for i in (blurred_img, sharp_img)]
        assert lap[0] < 0.5 * lap[1]
        # occlusion: the flag means >= 10 % of the landmarks are covered, and they changed pixels
        p = sample_params(np.random.default_rng(seed), SIZE, **dict(off, occlusion=True))
        img, lm, flags = render_face(p, SIZE)
        assert flags[4] == 1 and occluder_coverage(p, lm, (SIZE, SIZE)) >= 0.1
        clean, _, _ = render_face(replace(p, occluder=None), SIZE)
        assert np.abs(img.astype(int) - clean.astype(int)).mean() > 1.0
        # expression: an open mouth parts the inner lips; flags come from the same numbers
        q = with_changes(frontal_face(seed, **off), mouth_open=0.9)
        _, lm_open, fe = render_face(q, SIZE)
        assert fe[1] == 1 and np.linalg.norm(lm_open[90] - lm_open[94]) > 0.15 * q.scale
        np.testing.assert_array_equal(fe, attribute_flags(q, lm_open, (SIZE, SIZE)))


def test_attribute_flags_vary_in_a_random_sample():
    flags = np.array([render_face(np.random.default_rng([5, i]), 128)[2] for i in range(150)])
    share = flags.mean(0)
    assert np.all(share > 0.05) and np.all(share < 0.5), dict(zip(ATTRIBUTES, share))
    assert (flags.sum(1) == 0).mean() > 0.1  # plenty of clean faces too


def test_haar_cascade_finds_frontal_faces():
    casc = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    assert not casc.empty()
    hits = 0
    for seed in range(20):
        p = frontal_face(seed + 500, occlusion=False, blur=False, illumination=False)
        img, lm, _ = render_face(p, SIZE)
        box = (lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max())
        dets = casc.detectMultiScale(img, scaleFactor=1.1, minNeighbors=3, minSize=(24, 24))
        hits += any(iou(box, (x, y, x + w, y + h)) > 0.3 for x, y, w, h in dets)
    assert hits >= 16, "Haar found only %d/20 frontal synthetic faces" % hits


def read_list(path: Path):
    rows = []
    for line in path.read_text().splitlines():
        tok = line.split()
        assert len(tok) == 196 + 4 + 6 + 1, "line has %d tokens" % len(tok)
        rows.append((np.array(tok[:196], float).reshape(98, 2), np.array(tok[196:200], float),
                     np.array(tok[200:206], int), tok[206]))
    return rows


def test_write_dataset_wflw_layout(tmp_path):
    out = tmp_path / "synth"
    summary = write_dataset(out, 25, seed=3, test_fraction=0.2, image_size=160, progress=False)
    assert summary["train"] == 20 and summary["test"] == 5
    ann = out / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    train = read_list(ann / "list_98pt_rect_attr_train.txt")
    test = read_list(ann / "list_98pt_rect_attr_test.txt")
    assert len(train) == 20 and len(test) == 5
    counts = np.zeros(6, int)
    for lm, box, flags, rel in train + test:
        np.testing.assert_allclose(box, [*lm.min(0), *lm.max(0)], atol=2e-3)
        assert set(flags.tolist()) <= {0, 1}
        counts += flags
        img = cv2.imread(str(out / "WFLW_images" / rel))
        assert img is not None and img.shape[:2] == (160, 160), rel
        crop, _ = crop_from_landmarks(img, lm)
        assert crop.shape == (112, 112)
    by_split = summary["attribute_counts"]
    assert counts.tolist() == [by_split["train"][a] + by_split["test"][a] for a in ATTRIBUTES]
    assert json.loads((out / "synth.json").read_text())["n"] == 25
    assert len((out / "synth_faces.jsonl").read_text().splitlines()) == 25
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]  # no temp dirs left

    # deterministic for a seed, different for another
    again = write_dataset(tmp_path / "again", 25, seed=3, test_fraction=0.2, image_size=160, progress=False)
    other = write_dataset(tmp_path / "other", 25, seed=4, test_fraction=0.2, image_size=160, progress=False)
    name = "list_98pt_rect_attr_train.txt"
    assert (ann / name).read_text() == (Path(again["root"]) / ann.relative_to(out) / name).read_text()
    assert (ann / name).read_text() != (Path(other["root"]) / ann.relative_to(out) / name).read_text()

    # refuses to overwrite unless asked
    with pytest.raises(FileExistsError, match="not empty"):
        write_dataset(out, 5, progress=False)
    write_dataset(out, 5, seed=1, progress=False, overwrite=True)
    assert len(read_list(ann / "list_98pt_rect_attr_train.txt")) == 4


def test_write_dataset_leaves_nothing_on_error(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synth_dataset.render_face

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(synth_dataset, "render_face", failing)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(tmp_path / "ds", 10, progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="n must be"):
        write_dataset(tmp_path / "ds", 0, progress=False)


def test_face_video_and_ground_truth(tmp_path):
    path = tmp_path / "face.mp4"
    truth = write_face_video(str(path), 48, size=(320, 240), fps=24, seed=2, blink_every=20, blink_frames=6,
                             yawn_at=25, yawn_frames=16)
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 48 and frames[0].shape == (240, 320, 3)
    gt = json.loads(Path(truth["json_path"]).read_text())
    assert Path(truth["json_path"]).name == "face.mp4.json"
    assert gt["n_frames"] == 48 and len(gt["frames"]) == 48
    recs = gt["frames"]
    lms = [np.array(r["landmarks"]) for r in recs]
    assert all(lm.shape == (98, 2) for lm in lms)
    closed = [i for i, r in enumerate(recs) if r["eye_closed"]]
    opened = [i for i, r in enumerate(recs) if r["eye_openness"] == 1.0]
    assert closed and opened and closed[0] >= 10  # first blink at blink_every // 2
    ears = [0.5 * (ear(lm, RIGHT_EYE_EAR) + ear(lm, LEFT_EYE_EAR)) for lm in lms]
    assert max(ears[i] for i in closed) < 0.3 * min(ears[i] for i in opened)
    mouth = [i for i, r in enumerate(recs) if r["mouth_open"]]
    assert mouth and all(25 <= i < 41 for i in mouth)
    gap = [np.linalg.norm(lm[90] - lm[94]) for lm in lms]
    shut = [i for i, r in enumerate(recs) if r["mouth_openness"] < 0.1]
    assert min(gap[i] for i in mouth) > 3 * max(gap[i] for i in shut)
    # the face moves smoothly: landmarks shift a little between frames, never jump
    steps = [np.abs(lms[i + 1][:33] - lms[i][:33]).max() for i in range(47)]
    assert max(steps) < 6.0 and np.abs(lms[-1] - lms[0]).max() > 1.0
    # frames really show what the ground truth says: the box is where the face is
    x0, y0, x1, y1 = recs[0]["box"]
    face = cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY)[int(y0):int(y1), int(x0):int(x1)]
    assert face.std() > 5


def test_render_frame_eye_openness_drives_ear():
    open_frame, lm_open, box = render_frame(eye_open=1.0, seed=4, size=(320, 240))
    shut_frame, lm_shut, _ = render_frame(eye_open=0.05, seed=4, size=(320, 240))
    assert open_frame.shape == (240, 320, 3)
    assert ear(lm_shut, RIGHT_EYE_EAR) < 0.3 * ear(lm_open, RIGHT_EYE_EAR)
    assert ear(lm_shut, LEFT_EYE_EAR) < 0.3 * ear(lm_open, LEFT_EYE_EAR)
    np.testing.assert_allclose(lm_open[:60], lm_shut[:60], atol=1e-4)  # only the eyes changed
    ex0, ey0 = np.floor(lm_open[60:76].min(0)).astype(int)
    ex1, ey1 = np.ceil(lm_open[60:76].max(0)).astype(int)
    diff = np.abs(open_frame.astype(int) - shut_frame.astype(int))[ey0:ey1, ex0:ex1].mean()
    assert diff > 5  # the pixels changed where the eyes are
