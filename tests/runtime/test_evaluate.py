"""runtime.evaluate: the real crop/infer/decode/score path, driven by test doubles of the *model*.

The oracle backend below returns each face's ground truth in the crop frame that
`runtime.preprocess.crop_face` defines, so any error in how `evaluate` crops, batches
or decodes shows up as a non-zero NME.
"""
import json
from dataclasses import dataclass
from typing import List, Optional

import cv2
import numpy as np
import pytest

from runtime import evaluate as ev
from runtime.backends.base import Backend
from runtime.landmarks import ATTRIBUTES, NUM_POINTS
from runtime.preprocess import DEFAULT_SPEC, CropSpec, box_from_landmarks, crop_face, to_crop_normalised


@dataclass
class Rec:
    image: str
    landmarks: np.ndarray
    box: np.ndarray
    attributes: np.ndarray
    line: int = 0


def make_shape(rng: np.random.Generator, x0: float, y0: float, size: float) -> np.ndarray:
    pts = rng.uniform(0.1, 0.9, (NUM_POINTS, 2))
    pts[60], pts[72] = (0.25, 0.4), (0.75, 0.4)
    return (pts * size + (x0, y0)).astype(np.float32)


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> List[Rec]:
    """Seven faces on five PNG images (two images hold two faces; one face leaves the frame)."""
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    recs = []
    for i in range(5):
        img = rng.integers(0, 256, (180 + 10 * i, 220, 3), dtype=np.uint8)
        path = str(d / ("img%d.png" % i))
        cv2.imwrite(path, img)
        faces = [(20.0 + 5 * i, 30.0, 60.0 + 4 * i)]
        if i in (1, 3):
            faces.append((150.0, 100.0 + i, 90.0))  # runs past the right/bottom edge: padded crop
        for x0, y0, size in faces:
            lm = make_shape(rng, x0, y0, size)
            attrs = np.zeros(len(ATTRIBUTES), np.int32)
            attrs[i % len(ATTRIBUTES)] = 1
            box = np.array([x0 - 5, y0 - 8, x0 + size + 3, y0 + size + 6], np.float32)
            recs.append(Rec(path, lm, box, attrs, line=len(recs) + 1))
    return recs


class Oracle(Backend):
    """Test double of a perfect model: returns the GT of the next faces, in crop-normalised coordinates."""

    name = "oracle"

    def __init__(self, recs, spec: CropSpec = DEFAULT_SPEC, box: str = "landmarks",
                 fixed: Optional[int] = None, shift: float = 0.0) -> None:
        super().__init__("oracle", spec)
        self.targets, self.expected_crops = [], []
        for r in recs:
            b = box_from_landmarks(r.landmarks) if box == "landmarks" else tuple(r.box)
            path = getattr(r, "image_path", None) or r.image
            crop, m = crop_face(cv2.imread(path), b, spec)  # independent of runtime.evaluate
            self.targets.append(to_crop_normalised(r.landmarks, m, spec.size) + (shift, 0.0))
            self.expected_crops.append(crop)
        self.fixed, self.cursor, self.calls = fixed, 0, []

    @property
    def batch_size(self):
        return self.fixed

    def _run(self, crops):
        self.calls.append(crops.copy())
        out = np.zeros((len(crops), NUM_POINTS, 2), np.float32)
        k = min(len(crops), len(self.targets) - self.cursor)
        out[:k] = self.targets[self.cursor:self.cursor + k]
        self.cursor += k
        return out.reshape(len(crops), -1)


def test_perfect_model_scores_zero(records):
    oracle = Oracle(records)
    done = []
    res = ev.evaluate(oracle, records, batch_size=3, progress=done.append)
    m = res["metrics"]
    assert m["count"] == len(records) and done == [3, 3, 1]
    assert m["nme"] < 1e-5 and m["failure_rate"] == 0 and m["auc"] == pytest.approx(1.0)
    np.testing.assert_allclose(res["pred"], np.stack([r.landmarks for r in records]), atol=1e-3)
    # the backend saw exactly the crops crop_face makes from the BGR image
    np.testing.assert_array_equal(np.concatenate(oracle.calls), np.stack(oracle.expected_crops))
    assert res["images"] == [r.image for r in records]
    assert res["source"]["backend"] == "oracle" and res["timing"]["faces"] == len(records)
    counts = np.stack([r.attributes for r in records]).sum(axis=0)
    assert [m["attributes"][k]["count"] for k in ("largepose", "expression", "blur")] == [
        counts[0], counts[1], counts[5]]
    json.dumps(ev.summary(res))


def test_fixed_batch_backend_gets_full_padded_batches(records):
    oracle = Oracle(records, fixed=4)
    res = ev.evaluate(oracle, records, batch_size=32)
    assert [len(c) for c in oracle.calls] == [4, 4]
    assert not oracle.calls[-1][len(records) - 4:].any()  # the padding is zeros
    assert res["metrics"]["nme"] < 1e-5 and res["timing"]["batch"] == 4


def test_constant_crop_offset_gives_hand_computed_nme(records):
    # +0.01 crop widths in x -> 0.01 * side px in the frame; side = 1.2 * max(w, h) of the landmark box
    oracle = Oracle(records, shift=0.01)
    res = ev.evaluate(oracle, records)
    expected = []
    for r in records:
        x0, y0, x1, y1 = box_from_landmarks(r.landmarks)
        side = 1.2 * max(x1 - x0, y1 - y0)
        expected.append(0.01 * side / np.linalg.norm(r.landmarks[60] - r.landmarks[72]))
    np.testing.assert_allclose(res["nmes"], expected, rtol=1e-4)
    assert res["metrics"]["nme"] == pytest.approx(np.mean(expected), rel=1e-4)


def test_annotation_box_is_used_when_asked(records):
    ok = ev.evaluate(Oracle(records, box="annotation"), records, box="annotation")
    assert ok["metrics"]["nme"] < 1e-5
    wrong = ev.evaluate(Oracle(records, box="landmarks"), records, box="annotation")
    assert wrong["metrics"]["nme"] > 0.01
    with pytest.raises(ValueError, match="box must be"):
        ev.evaluate(Oracle(records), records, box="detector")


def test_crop_affine_matches_crop_face(records):
    r = records[0]
    b = box_from_landmarks(r.landmarks)
    _, m = crop_face(cv2.imread(r.image), b)
    np.testing.assert_allclose(ev.crop_affine(b), m)


def test_missing_image_names_the_file(records, tmp_path):
    bad = Rec(str(tmp_path / "nope.jpg"), records[0].landmarks, records[0].box, records[0].attributes, line=7)
    with pytest.raises(ValueError, match=r"nope\.jpg.*line 7"):
        ev.evaluate(Oracle(records), list(records) + [bad])
    with pytest.raises(ValueError, match="no faces"):
        ev.evaluate(Oracle(records), [])


def test_mean_shape_baseline_exact_for_similar_shapes(records):
    # Training shapes that are one shape translated and scaled have that shape as their
    # crop-normalised mean, so the baseline is perfect on another copy of it...
    rng = np.random.default_rng(1)
    base = make_shape(rng, 0, 0, 1.0)
    train = [Rec("", base * s + (dx, dy), np.zeros(4), np.zeros(6, np.int32))
             for s, dx, dy in [(50, 3, 4), (80, 40, 10), (120, 7, 90)]]
    test = [Rec(records[0].image, base * 66 + (12, 21), np.zeros(4), np.zeros(6, np.int32))]
    res = ev.mean_shape_baseline(train, test)
    assert res["metrics"]["nme"] < 1e-5 and res["source"]["backend"] == "mean_shape"
    # ...and clearly wrong on faces of another shape.
    res = ev.mean_shape_baseline(train, records)
    assert res["metrics"]["nme"] > 0.05


def test_mean_shape_is_the_mean_of_normalised_training_shapes(records):
    expected = np.mean([to_crop_normalised(r.landmarks, crop_face(cv2.imread(r.image),
                                                                  box_from_landmarks(r.landmarks))[1])
                        for r in records], axis=0)
    np.testing.assert_allclose(ev.mean_shape(records), expected, atol=1e-6)


def test_real_wflw_test_faces(faces98):
    from runtime import wflw
    recs = wflw.read_annotations(str(faces98), "test")
    res = ev.evaluate(Oracle(recs), recs, batch_size=16)
    assert res["metrics"]["count"] == len(recs) and res["metrics"]["nme"] < 1e-4
    train = wflw.read_annotations(str(faces98), "train")
    base = ev.mean_shape_baseline(train, recs)["metrics"]
    # the mean shape knows each face's box but nothing else: well off, not absurd
    assert 0.04 < base["nme"] < 0.5 and base["auc"] < 0.9
