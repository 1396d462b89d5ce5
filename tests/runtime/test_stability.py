"""runtime.stability: re-crop chains and tracked-video scores, driven by test doubles of the *model*.

The doubles see the real crops `runtime.preprocess.crop_face` makes. Each test image carries its
face number in pixel (0, 0), and a spy on `crop_face` hands the double the crop's affine, so a
double can answer with the ground truth as it lies in *that* crop (plus a chosen error). A perfect
model must stay put; a model that trusts the box (answers where the face *would* be in a true
crop) plus a bias must drift by the bias every step; one that half trusts it must converge back
from a jittered box (in general a bias b with a pull p settles at an offset of b / (1 - p)).
"""
import json
from typing import List

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import runtime.stability as S
from runtime.backends.base import Backend
from runtime.evaluate import crop_affine
from runtime.landmarks import NUM_POINTS
from runtime.preprocess import box_from_landmarks, crop_face, to_crop_normalised
from tests.runtime.test_evaluate import Rec, make_shape


@pytest.fixture
def crop_log(monkeypatch) -> List[np.ndarray]:
    """Affines of the crops runtime.stability makes, in order (a spy around the real crop_face)."""
    log = []

    def spy(frame, box, spec, out=None):
        crop, m = crop_face(frame, box, spec, out=out)
        log.append((int(frame[0, 0, 0]), m))
        return crop, m

    monkeypatch.setattr(S, "crop_face", spy)
    return log


class Model(Backend):
    """Answers, per crop, (1 - pull) * truth in this crop + pull * truth in the true crop + bias
    (crop-normalised). pull=0, bias=0: a perfect model; pull in (0, 1): one that half trusts the box."""

    name = "double"

    def __init__(self, recs, log, pull: float = 0.0, bias=(0.0, 0.0), fixed=None) -> None:
        super().__init__("double")
        self.recs, self.log, self.pull, self.bias, self.fixed = recs, log, pull, np.asarray(bias), fixed
        self.batches = []

    @property
    def batch_size(self):
        return self.fixed

    def _run(self, crops):
        self.batches.append(len(crops))
        taken, self.log[:] = self.log[:len(crops)], self.log[len(crops):]
        out = np.zeros((len(crops), NUM_POINTS, 2), np.float32)
        for i, (face, m) in enumerate(taken):
            gt = self.recs[face].landmarks
            here = to_crop_normalised(gt, m)
            true = to_crop_normalised(gt, crop_affine(box_from_landmarks(gt)))
            out[i] = (1 - self.pull) * here + self.pull * true + self.bias
        return out.reshape(len(crops), -1)


@pytest.fixture(scope="module")
def recs(tmp_path_factory) -> List[Rec]:
    d = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(1)
    out = []
    for i in range(3):
        img = rng.integers(0, 256, (240, 260, 3), dtype=np.uint8)
        img[0, 0] = i  # the face number, for the test double
        path = str(d / ("f%d.png" % i))
        cv2.imwrite(path, img)
        lm = make_shape(rng, 60 + 10 * i, 50, 90 + 10 * i)
        out.append(Rec(path, lm, np.zeros(4), np.zeros(6, np.int32)))
    return out


def test_a_perfect_model_does_not_drift_and_ignores_the_start_box(recs, crop_log):
    study = S.recrop_study(Model(recs, crop_log), recs, iterations=4, jitters=(0.1, 0.2), draws=3, seed=0)
    assert study["nme"].shape == (3, 5, 7) and study["chain_start"] == [0, 1, 1, 1, 2, 2, 2]
    assert study["nme"].max() < 1e-4 and study["gap"].max() < 1e-4
    s = S.summarize_study(study)
    assert s["recrop_ok"] and abs(s["recrop_increase"]) < 0.01
    assert [r["rejoined"] for r in s["rows"]] == [1.0, 1.0, 1.0]
    assert [r["chains"] for r in s["rows"]] == [3, 9, 9]


def test_a_biased_model_walks_the_box_away_one_bias_per_step(recs, crop_log):
    # every step crops from the previous landmarks' box, which the bias shifted by 0.02 crop widths:
    # the error grows by 0.02 * 1.2 * max(w, h) pixels per step, exactly
    study = S.recrop_study(Model(recs, crop_log, pull=1.0, bias=(0.02, 0.0)), recs, iterations=5, jitters=())
    for i, r in enumerate(recs):
        x0, y0, x1, y1 = box_from_landmarks(r.landmarks)
        per_step = 0.02 * 1.2 * max(x1 - x0, y1 - y0) / np.linalg.norm(r.landmarks[60] - r.landmarks[72])
        np.testing.assert_allclose(study["nme"][i, :, 0], per_step * np.arange(1, 7), rtol=1e-3)
        np.testing.assert_allclose(study["step"][i, 1:, 0], per_step, rtol=1e-3)
    s = S.summarize_study(study)
    assert s["recrop_increase"] == pytest.approx(5.0, rel=1e-3) and not s["recrop_ok"]
    assert "FAIL" in S.study_verdict(s)


def test_a_model_that_half_trusts_the_box_converges_back_from_jitter(recs, crop_log):
    study = S.recrop_study(Model(recs, crop_log, pull=0.5), recs, iterations=8, jitters=(0.2,), draws=4,
                           mode="exact", seed=3)
    curve = study["nme"][:, :, 1:].mean(axis=(0, 2))
    assert curve[0] > 0.02  # a 20 % box error leaves half of it in the landmarks
    assert np.all(np.diff(curve) < 0) and curve[-1] < curve[0] / 100  # halves every step
    assert study["nme"][:, :, 0].max() < 1e-4  # from the true box it is exact
    s = S.summarize_study(study)
    assert s["rows"][1]["rejoined"] == 1.0 and s["rows"][1]["gap"] < 1e-3
    header, rows = S.study_rows(s)
    assert header[:4] == ["start box", "chains", "NME@0 %", "NME@1 %"] and "NME@8 %" in header
    assert [r[0] for r in rows] == ["true box", "jitter 20%"] and rows[0][1] == "3"


def test_drifters_name_the_faces_that_carry_the_increase():
    one = np.array([0.05, 0.05, 0.10, 0.05, 0.20, 0.05])
    after = np.array([0.05, 0.06, 0.30, 0.05, 0.50, 0.04])  # faces 4 and 2 collapse, face 1 drifts a little
    d = S.drifters(one, after, count=2)
    assert [f[0] for f in d["faces"]] == [4, 2]
    assert d["share"] == pytest.approx(0.5 / 0.51)
    assert d["rest_increase"] == pytest.approx(0.0)  # faces 0, 1, 3, 5: mean 0.05 -> 0.05
    # nothing grows: no face named, no share
    flat = S.drifters(one, one - 0.01)
    assert flat["faces"] == [] and flat["share"] is None and flat["rest_increase"] < 0


def test_verdict_names_the_drifting_faces(recs, crop_log):
    study = S.recrop_study(Model(recs, crop_log, pull=1.0, bias=(0.02, 0.0)), recs, iterations=3, jitters=())
    s = S.summarize_study(study)
    grew = study["nme"][:, 3, 0] - study["nme"][:, 0, 0]
    assert [f[0] for f in s["drifters"]["faces"]] == [int(i) for i in np.argsort(-grew, kind="stable")]
    verdict = S.study_verdict(s)
    assert "the 3 faces that drift most carry 100 % of the increase (#" in verdict
    assert "the other" not in verdict  # all three are named


def test_fixed_batch_engines_get_full_zero_padded_batches(recs, crop_log):
    frame = cv2.imread(recs[0].image)
    m = Model(recs, crop_log, fixed=4)
    true = box_from_landmarks(recs[0].landmarks)
    out = S.infer_boxes(m, [frame] * 6, [true] * 6)
    assert m.batches == [4, 4] and out.shape == (6, NUM_POINTS, 2)
    np.testing.assert_allclose(out, np.stack([recs[0].landmarks] * 6), atol=1e-3)
    with pytest.raises(ValueError, match="2 frames but 1 boxes"):
        S.infer_boxes(m, [frame, frame], [true])


@pytest.mark.parametrize("mode", ["uniform", "exact"])
def test_jitter_box_stays_within_its_amount_and_is_seeded(mode):
    box = (100.0, 50.0, 180.0, 150.0)  # 80 x 100: size 100
    boxes = np.array([S.jitter_box(box, 0.2, np.random.default_rng(k), mode) for k in range(200)])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2 - 140, (boxes[:, 1] + boxes[:, 3]) / 2 - 100
    k = (boxes[:, 3] - boxes[:, 1]) / 100.0
    np.testing.assert_allclose((boxes[:, 2] - boxes[:, 0]) / 80.0, k)  # aspect kept
    if mode == "exact":
        np.testing.assert_allclose(np.hypot(cx, cy), 20.0)
        assert set(np.round(k, 6)) == {0.8, 1.2}
    else:
        assert np.abs(cx).max() <= 20 and np.abs(cy).max() <= 20 and np.abs(cx).max() > 15
        assert 0.8 <= k.min() and k.max() <= 1.2 and np.std(k) > 0.05
    again = S.jitter_box(box, 0.2, np.random.default_rng(7), mode)
    assert again == S.jitter_box(box, 0.2, np.random.default_rng(7), mode)
    with pytest.raises(ValueError, match="jitter amount"):
        S.jitter_box(box, 1.5, np.random.default_rng(0), mode)
    with pytest.raises(ValueError, match="jitter mode"):
        S.jitter_box(box, 0.1, np.random.default_rng(0), "gauss")


def test_parse_jitters():
    assert S.parse_jitters("0.1, 0.2,") == [0.1, 0.2] and S.parse_jitters("") == []
    for bad in ("0.1,x", "1.0", "-0.1"):
        with pytest.raises(ValueError, match="jitter"):
            S.parse_jitters(bad)


def test_flm_dpu_eval_recrop_prints_the_table_and_writes_json(tmp_path, monkeypatch):
    import runtime.cli as rc
    from keras_flm.synth import write_dataset

    root = tmp_path / "wflw"
    write_dataset(str(root), 4, seed=0, test_fraction=0.5, progress=False)

    class Canonical(Backend):
        """Always the same shape, its box the middle 1/1.2 of the crop: the crop it implies is the crop
        it was given, so re-cropping is exactly stable (whatever its NME)."""

        name = "canonical"

        def _run(self, crops):
            pts = make_shape(np.random.default_rng(0), 0, 0, 1.0)
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            pts = (pts - lo) / (hi - lo) / 1.2 + 1 / 12.0
            return np.stack([pts] * len(crops)).reshape(len(crops), -1)

    monkeypatch.setattr(rc, "_load", lambda *a, **k: Canonical("c"))
    js = tmp_path / "m.json"
    args = ["eval", "--model", "x", "--data", str(root), "--recrop", "3", "--jitter", "0.1", "--draws", "2"]
    r = CliRunner().invoke(rc.cli, args + ["--json", str(js)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "re-crop stability" in r.output and "jitter 10%" in r.output and "PASS" in r.output
    out = json.loads(js.read_text())
    rec = out["recrop"]
    assert rec["iterations"] == 3 and rec["faces"] == 2 and abs(rec["recrop_increase"]) < 1e-4
    assert rec["one_shot_nme"] == pytest.approx(out["nme"])  # the same crops as the plain evaluation
    bad = CliRunner().invoke(rc.cli, ["eval", "--model", "x", "--data", str(root), "--recrop", "2",
                                      "--jitter", "0.1,huge"])
    assert bad.exit_code == 2 and "--jitter" in bad.output


def test_recrop_study_on_real_faces(shared_data, crop_log):
    from runtime.wflw import read_annotations

    faces = read_annotations(str(shared_data / "faces98"), "test")[:2]

    class Biased(Backend):  # the real faces carry no face number: one face per study
        name = "biased"

        def _run(self, crops):  # trusts the box: the true crop's answer, 0.01 crop heights low
            del crop_log[:len(crops)]
            true = to_crop_normalised(face.landmarks, crop_affine(box_from_landmarks(face.landmarks)))
            return np.stack([true + (0.0, 0.01)] * len(crops))

    for face in faces:
        study = S.recrop_study(Biased("b"), [face], iterations=2, jitters=(0.1,), draws=2)
        np.testing.assert_allclose(study["nme"][0, :, 0], study["nme"][0, 0, 0] * np.arange(1, 4), rtol=1e-3)


# --------------------------------------------------------------------------- tracked video scores
def video_truth(n: int = 8):
    """Two faces of 4 frames, moving 3 px/frame to the right; frame 4 is a fade (not scored)."""
    rng = np.random.default_rng(0)
    base = [make_shape(rng, 100, 100, 100), make_shape(rng, 300, 120, 120)]
    frames = []
    for t in range(n):
        face = 0 if t < 4 else 1
        lm = base[face] + (3.0 * t, 0.0)
        fade = t == 4
        frames.append({"index": t, "face": -1 if fade else face, "scored": not fade,
                       "landmarks": None if fade else lm.tolist(), "box": None})
    return {"fps": 30.0, "width": 640, "height": 480, "frames": frames}


def jsonl_record(t, faces):
    return {"frame": t, "t": t / 30.0, "status": "ok" if faces else "no face", "faces": faces}


def test_score_video_found_share_nme_and_jitter_by_hand(tmp_path):
    raw = video_truth()
    (tmp_path / "truth.json").write_text(json.dumps(raw))
    truth = S.read_truth(str(tmp_path / "truth.json"))
    assert truth["scored"].tolist() == [True] * 4 + [False] + [True] * 3
    gt = truth["landmarks"]
    iod = np.linalg.norm(gt[:, 60] - gt[:, 72], axis=-1)
    lines = []
    for t in range(8):
        if t == 4:
            faces = [{"landmarks": (gt[3] + 50).tolist(), "plausible": True}]  # a face during the fade
        elif t == 2:
            faces = []  # missed
        elif t == 6:
            faces = [{"landmarks": (gt[t] + (300, 0)).tolist(), "plausible": True},  # elsewhere: not it
                     {"landmarks": gt[t].tolist(), "plausible": False}]  # implausible: not found
        else:  # found, off by +1 / -1 px in x on alternate frames
            faces = [{"landmarks": (gt[t] + (1.0 if t % 2 else -1.0, 0)).tolist(), "plausible": True}]
        lines.append(json.dumps(jsonl_record(t, faces)))
    (tmp_path / "run.jsonl").write_text("\n".join(lines) + "\n")
    s = S.score_video(truth, S.read_jsonl(str(tmp_path / "run.jsonl")), settle=2)
    found = [0, 1, 3, 5, 7]
    assert s["scored_frames"] == 7 and s["found_frames"] == 5 and s["found_share"] == pytest.approx(5 / 7)
    assert s["nme"] == pytest.approx(np.mean(1.0 / iod[found]))
    # jitter pairs: (0, 1) same face, both found: |Δpred − Δgt| = 2 px; (3, 5) are not consecutive
    assert s["jitter"] == pytest.approx(2.0 / iod[1])
    assert s["false_faces"] == 1 and s["faces"] == 2 and s["lost_faces"] == []  # 3/4 and 2/3 found
    assert s["nme_first_2"] == pytest.approx(np.mean(1.0 / iod[[0, 1, 5]]))
    # a one-shot reference 0.5 px off everywhere: half the tracked NME, no jitter of its own
    ref = gt + (0.5, 0.0)
    s2 = S.score_video(truth, S.read_jsonl(str(tmp_path / "run.jsonl")), reference=ref, settle=2)
    assert s2["reference_jitter"] == pytest.approx(0.0, abs=1e-9)
    assert s2["ratio"] == pytest.approx(2.0)
    nothing = S.score_video(truth, {}, settle=2)
    assert nothing["found_share"] == 0 and nothing["nme"] is None and nothing["lost_faces"] == [0, 1]
    assert "2 face(s) found in < 50 %" in S.video_verdict("none", nothing)
    header, rows = S.video_rows({"run": s2})
    assert rows[0][-1] == "2.000" and [r[0].split(" (")[0] for r in rows[1:]] == ["one-shot, true box"] * 2
    # the ratio's denominator is the reference on the found frames, and the table shows that number
    assert rows[1][1] == "5" and float(rows[1][3]) == pytest.approx(100 * s2["nme"] / 2, abs=0.01)
    assert "FAIL" in S.video_verdict("run", s2)


def test_bad_inputs_name_the_file(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"frame": 0, "faces": []}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        S.read_jsonl(str(p))
    q = tmp_path / "t.json"
    q.write_text('{"fps": 30}')
    with pytest.raises(ValueError, match="frames"):
        S.read_truth(str(q))


# --------------------------------------------------------------------------- occlusion probe
def test_occlude_lower_hides_only_the_lower_band_with_the_patch():
    frame = np.zeros((200, 200, 3), np.uint8)
    patch = np.full((10, 10), 200, np.uint8)  # gray donor texture goes into a colour frame
    box = (50.0, 40.0, 150.0, 140.0)
    for seed in range(6):  # both shapes, several band edges
        out = S.occlude_lower(frame, box, 0.3, patch, np.random.default_rng(seed))
        assert out is not frame and frame.max() == 0  # the input frame is left alone
        rows, cols = np.nonzero(out[..., 0] == 200)
        assert len(rows) > 0
        assert rows.min() >= 140 - 100 * 0.4 - 1  # no higher than fraction + 10 % of the box
        assert rows.max() <= 140 + 15 + 1 and cols.min() >= 50 - 15 - 1 and cols.max() <= 150 + 15 + 1
        assert not out[:95].any()  # eyes and brows stay visible
        assert set(np.unique(out)) <= {0, 200}
    with pytest.raises(ValueError, match="fraction"):
        S.occlude_lower(frame, box, 1.0, patch, np.random.default_rng(0))


def test_occluded_frames_are_seeded_per_face_and_use_the_next_faces_texture(tmp_path):
    rng = np.random.default_rng(0)
    two = []
    for k, value in enumerate((60, 220)):
        path = str(tmp_path / ("f%d.png" % k))
        cv2.imwrite(path, np.full((240, 240, 3), value, np.uint8))
        two.append(Rec(path, make_shape(rng, 70, 70, 100), np.zeros(4), np.zeros(6, np.int32)))
    frame_of = S.occluded_frames(two, 0.3, seed=1)
    a, b = frame_of(0, two[0]), frame_of(0, two[0])
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {60, 220}  # face 0 keeps its own pixels and gets face 1's texture
    assert set(np.unique(frame_of(1, two[1]))) == {60, 220}


def test_recrop_study_crops_the_frames_frame_of_gives(recs, crop_log):
    seen = []

    def frame_of(i, r):
        seen.append(i)
        return S.load_image(r)

    S.recrop_study(Model(recs, crop_log), recs, iterations=1, jitters=(), frame_of=frame_of)
    assert seen == list(range(len(recs)))
