"""scripts/eval_by_pose.py: the turned-face subset uses the training cache's own yaw, and bad input
fails with the file named."""
import sys
from pathlib import Path

import numpy as np

from runtime.preprocess import CropSpec
from runtime.wflw import read_annotations, subset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import eval_by_pose  # noqa: E402


def test_label_yaw_is_the_training_caches_yaw(faces98, tmp_path):
    from keras_flm.data.cache import build_cache

    recs = subset(read_annotations(faces98, "train"), 10, seed=7)
    cache = build_cache(recs, str(faces98), "train", CropSpec(), 1.75, cache_dir=str(tmp_path),
                        progress=False)
    yaw = eval_by_pose.label_yaw(recs, CropSpec())
    assert np.allclose(yaw, np.abs(cache.euler[:, 1]), atol=1e-3)
    assert (yaw >= 0).all() and yaw.max() > 1.0


def test_table_states_each_subsets_size():
    row = {k: {"nme": 0.05, "count": n} for k, n in (("val", 470), ("val_lfw", 366), ("val_scenes", 104),
                                                      ("val_turned", 20), ("val_frontal", 450), ("test", 68),
                                                      ("test_pose", 13), ("test_other", 55))}
    row["val_turned"] = {"nme": None, "count": 0}
    text = eval_by_pose.table({"m.tflite": row}, 15.0)
    assert "val yaw >= 15 deg (0)" in text and "test pose (13)" in text
    assert "| m.tflite | 5.00 |" in text and "–" in text


def test_turned_validation_columns_come_second_when_scored():
    keys = ("val", "val_lfw", "val_scenes", "val_turned", "val_frontal", "test", "test_pose", "test_other")
    row = {k: {"nme": 0.04, "count": 10} for k in keys}
    row.update(val_synth_turned={"nme": 0.06, "count": 9}, val_pose_weighted={"nme": 0.0426, "count": 19})
    head = eval_by_pose.table({"m.h5": row}, 15.0).splitlines()[0]
    assert head.startswith("| model | val (10) | val turned 20-50 deg (synthetic) (9) "
                           "| val, turned at 13 % (19) |")


def test_missing_files_fail_with_their_names(tmp_path, capsys):
    assert eval_by_pose.main(["--run", str(tmp_path), "--model", "x.onnx"]) == 2
    assert "config.json not found" in capsys.readouterr().err
    (tmp_path / "config.json").write_text("{}")
    assert eval_by_pose.main(["--run", str(tmp_path), "--model", str(tmp_path / "nope.onnx")]) == 2
    assert "nope.onnx" in capsys.readouterr().err


def test_fit_columns_follow_the_validation_sources_they_compare_with():
    keys = ("val", "val_lfw", "val_scenes", "val_turned", "val_frontal", "test", "test_pose", "test_other")
    row = {k: {"nme": 0.04, "count": 10} for k in keys}
    row.update(train_lfw={"nme": 0.03, "count": 7}, train_scenes={"nme": 0.035, "count": 3})
    beside = "| val LFW (10) | val scene crops (10) | train LFW (fit) (7) | train scene crops (fit) (3) |"
    assert beside in eval_by_pose.table({"m.h5": row}, 15.0).splitlines()[0]
    row.update(val_synth_turned={"nme": 0.06, "count": 9}, val_pose_weighted={"nme": 0.0426, "count": 19})
    assert beside in eval_by_pose.table({"m.h5": row}, 15.0).splitlines()[0]


def test_a_negative_train_sample_is_refused(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    assert eval_by_pose.main(["--run", str(tmp_path), "--model", str(model), "--train-sample", "-1"]) == 2
    assert "--train-sample must be >= 0" in capsys.readouterr().err
