"""WFLW reader: validation errors name file and line; the split is deterministic."""
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.landmarks import NUM_POINTS
from runtime.wflw import (
    ANNOTATION_DIR,
    IMAGE_DIR,
    LIST_NAME,
    AnnotationError,
    annotation_path,
    calibration_pool,
    canonical_root,
    draw_records,
    load_image,
    read_annotations,
    run_split,
    split_train_val,
    subset,
)


def _line(rel="a/img0.jpg", pts=None, box=(10, 10, 90, 90), flags=(0, 1, 0, 0, 0, 0)):
    if pts is None:
        rng = np.random.default_rng(0)
        pts = rng.uniform(20, 80, (NUM_POINTS, 2))
    nums = ["%.3f" % v for v in np.asarray(pts).ravel()] + ["%g" % v for v in box] + ["%d" % f for f in flags]
    return " ".join(nums + [rel])


def _root(tmp_path: Path, train_lines, test_lines=None, images=("a/img0.jpg",)) -> Path:
    ann = tmp_path / ANNOTATION_DIR
    ann.mkdir(parents=True)
    (ann / (LIST_NAME % "train")).write_text("\n".join(train_lines) + "\n")
    (ann / (LIST_NAME % "test")).write_text("\n".join(test_lines or [_line()]) + "\n")
    for rel in images:
        p = tmp_path / IMAGE_DIR / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), np.full((100, 100, 3), 128, np.uint8))
    return tmp_path


def test_reads_valid_lines(tmp_path):
    root = _root(tmp_path, [_line(), _line(flags=(1, 0, 0, 0, 0, 1))])
    recs = read_annotations(root, "train")
    assert len(recs) == 2
    r = recs[1]
    assert r.landmarks.shape == (98, 2) and r.landmarks.dtype == np.float32
    assert r.box.tolist() == [10, 10, 90, 90]
    assert r.attributes.tolist() == [1, 0, 0, 0, 0, 1]
    assert os.path.isabs(r.image_path) and r.rel_path == "a/img0.jpg"
    assert r.line == 2 and r.source.endswith(LIST_NAME % "train")
    assert load_image(r).shape == (100, 100, 3)


@pytest.mark.parametrize("mutate, problem", [
    (lambda s: s.rsplit(" ", 2)[0] + " a/img0.jpg", "expected 207 tokens"),
    (lambda s: "abc " + s.split(" ", 1)[1], "landmark 0 x) is not a number"),
    (lambda s: "nan " + s.split(" ", 1)[1], "not finite"),
    (lambda s: s.replace("a/img0.jpg", "a/missing.jpg"), "image not found"),
    (lambda s: _line(box=(50, 10, 40, 90)), "empty or inverted"),
    (lambda s: _line(flags=(0, 2, 0, 0, 0, 0)), "must be 0 or 1"),
])
def test_bad_line_names_file_and_line(tmp_path, mutate, problem):
    root = _root(tmp_path, [_line(), mutate(_line()), _line()])
    with pytest.raises(AnnotationError) as e:
        read_annotations(root, "train")
    msg = str(e.value)
    assert problem in msg
    assert (LIST_NAME % "train") + ":2" in msg
    assert isinstance(e.value, ValueError)


def test_skip_bad_drops_and_counts(tmp_path, caplog):
    root = _root(tmp_path, [_line(), "1 2 3 a/img0.jpg", _line(), _line(rel="a/nope.jpg")])
    recs = read_annotations(root, "train", skip_bad=True)
    assert [r.line for r in recs] == [1, 3]
    assert "skipped 2 bad line(s)" in caplog.text
    assert all(np.isfinite(r.landmarks).all() for r in recs)


def test_unreadable_image_named_on_load(tmp_path):
    root = _root(tmp_path, [_line()])
    (tmp_path / IMAGE_DIR / "a/img0.jpg").write_bytes(b"not a jpeg")
    rec = read_annotations(root, "train")[0]
    with pytest.raises(AnnotationError, match=r"train\.txt:1: image unreadable"):
        load_image(rec)


def test_bad_root_names_missing_file(tmp_path):
    with pytest.raises(AnnotationError, match="does not exist"):
        annotation_path(tmp_path / "nowhere")
    with pytest.raises(AnnotationError, match=r"list_98pt_rect_attr_train\.txt"):
        annotation_path(tmp_path)
    with pytest.raises(AnnotationError, match="split"):
        annotation_path(tmp_path, "val")


def test_split_is_deterministic_and_disjoint(tmp_path):
    images = ["a/img%d.jpg" % i for i in range(50)]
    root = _root(tmp_path, [_line(rel=r) for r in images], images=images)
    recs = read_annotations(root, "train")
    tr, va = split_train_val(recs, 0.1, seed=3)
    assert len(va) == 5 and len(tr) == 45
    assert not {r.line for r in tr} & {r.line for r in va}
    # same on a second call, with shuffled input, and for a copy of the data under another root
    tr2, va2 = split_train_val(list(reversed(recs)), 0.1, seed=3)
    assert sorted(r.line for r in va2) == sorted(r.line for r in va)
    other = tmp_path / "copy"
    other.mkdir()
    root2 = _root(other, [_line(rel=r) for r in images], images=images)
    _, va3 = split_train_val(read_annotations(root2, "train"), 0.1, seed=3)
    assert [r.line for r in va3] == [r.line for r in va]
    # a different seed gives a different split
    _, va4 = split_train_val(recs, 0.1, seed=4)
    assert [r.line for r in va4] != [r.line for r in va]
    assert len(subset(recs, 7)) == 7 and subset(recs, 7) == subset(recs, 7)
    # a run's split: the --max-images subset first, then the split of what is used
    used, tr5, va5 = run_split(recs, 3, 0.1, 20)
    assert used == subset(recs, 20, seed=3) and (tr5, va5) == split_train_val(used, 0.1, seed=3)
    assert run_split(recs, 3, 0.1, None)[1:] == (tr, va)


def test_calibration_pool_is_the_training_faces_with_the_extra_roots(tmp_path):
    images = ["a/img%d.jpg" % i for i in range(20)]
    root = _root(tmp_path / "main", [_line(rel=r) for r in images], images=images)
    extra = _root(tmp_path / "extra", [_line(rel="a/img0.jpg")] * 3)
    _, train, val = run_split(read_annotations(root, "train"), 3, 0.2, None)
    pool, used, missing = calibration_pool(str(root), 3, 0.2, None, [str(extra), str(tmp_path / "gone")])
    assert [r.line for r in pool[:len(train)]] == [r.line for r in train] and len(pool) == len(train) + 3
    assert all(r.source.startswith(str(extra)) for r in pool[len(train):])
    assert not {r.line for r in val} & {r.line for r in pool[:len(train)]}  # never a validation face
    assert used == [str(extra)] and missing == [str(tmp_path / "gone")]
    assert [r.line for r in calibration_pool(str(root), 3, 0.2, None)[0]] == [r.line for r in train]
    def keys(recs):
        return [(r.source, r.line) for r in recs]

    drawn = keys(draw_records(pool, 5, seed=1))
    assert drawn == keys(draw_records(pool, 5, seed=1)) != keys(draw_records(pool, 5, seed=2))
    assert len(set(drawn)) == 5 and drawn == sorted(drawn, key=keys(pool).index)  # list order kept


def test_canonical_root_is_one_path_however_given(tmp_path, monkeypatch):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    want = canonical_root(str(tmp_path / "real"))
    assert canonical_root("real") == canonical_root("link/") == canonical_root("./link") == want


def test_faces98_lists(faces98):
    train = read_annotations(faces98, "train")
    test = read_annotations(faces98, "test")
    assert len(train) == 4704 and len(test) == 68
    tr, va = split_train_val(train, 0.1)
    assert len(va) == 470 and len(tr) + len(va) == len(train)
    assert not {r.image_path for r in test} & {r.image_path for r in train}
