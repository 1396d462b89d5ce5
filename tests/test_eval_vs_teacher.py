"""scripts/eval_vs_teacher.py: NME between any two sets of landmarks, split by the pose flag, in units
of the human labels' inter-ocular distance."""
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import eval_vs_teacher  # noqa: E402


def test_rows_split_by_pose_and_normalise_by_the_human_eyes():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, (4, 98, 2))
    gt[:, 60] = [10.0, 50.0]
    gt[:, 72] = [60.0, 50.0]  # inter-ocular 50 px
    shifted = gt.copy()
    shifted[:, :, 0] += 5.0  # 0.1 inter-ocular everywhere
    shifted[3, :, 0] += 5.0  # the pose face twice as far
    pose = np.array([False, False, False, True])
    (row,) = eval_vs_teacher.rows({"a vs b": (shifted, gt)}, gt, pose)
    assert row["pair"] == "a vs b"
    assert np.isclose(row["other"], 0.1) and np.isclose(row["pose"], 0.2) and np.isclose(row["all"], 0.125)
