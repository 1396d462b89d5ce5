"""The scripts' `--help` names default paths (data root, release) as every checkout sees them.

argparse's `%(default)s` used to print this machine's absolute path (`/work/main/../shared/...`)."""
import os
import subprocess
import sys

import pytest

from keras_flm.shared_tree import REPO

SCRIPTS = ("eval_by_pose", "eval_tracking", "eval_vs_teacher", "make_face_video", "make_pose_data",
           "refresh_release", "release_gate")


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_names_the_data_root_relative_to_the_checkout(name):
    out = subprocess.run([sys.executable, os.path.join(REPO, "scripts", name + ".py"), "--help"],
                         capture_output=True, text=True, check=True, cwd=REPO).stdout
    flat = " ".join(out.split())  # argparse wraps long help lines
    if name != "refresh_release":  # its --data defaults to the release's own root
        assert "(default: %s)" % os.path.join("..", "shared", "data", "faces98") in flat
    assert os.path.dirname(REPO) + os.sep not in out
