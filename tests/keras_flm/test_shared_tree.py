"""The shared tree's paths and how reports print them."""
import os

from keras_flm.shared_tree import FACES98, REPO, SHARED, TEACHER_DIR, display_path


def test_the_shared_tree_sits_beside_the_checkout():
    assert os.path.dirname(SHARED) == os.path.dirname(REPO)
    assert FACES98.startswith(SHARED + os.sep) and TEACHER_DIR.startswith(SHARED + os.sep)


def test_display_path_is_the_same_on_every_machine_for_paths_beside_the_checkout():
    # what the release card used to print: this machine's absolute path, with a '..' in it
    assert display_path(os.path.join(REPO, "..", "shared", "data", "faces98")) == \
        os.path.join("..", "shared", "data", "faces98")
    assert display_path(os.path.join(REPO, "runs", "pose_val")) == os.path.join("runs", "pose_val")


def test_display_path_leaves_other_paths_as_given():
    outside = os.path.join(os.sep, "flm-not-beside-%d" % os.getpid(), "faces")  # under no checkout's parent
    assert display_path(outside) == outside
