"""Where a development checkout finds the shared tree: `../shared` beside it (faces, teacher models).

Why one place: six scripts each computed the same default data root, and the reports they wrote
printed it as one machine's absolute path (the release card said `/work/main/../shared/...`).
Only a development checkout reads these (scripts, the teacher's default); an installed package or a
board never does. Python 3.8 syntax.
"""
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
#: The WFLW-layout root of real faces the scripts default to.
FACES98 = os.path.join(SHARED, "data", "faces98")
#: The three WFLW-trained PFLD models the training labels come from.
TEACHER_DIR = os.path.join(SHARED, "models", "pfld_ghostone")


def display_path(path: str) -> str:
    """`path` relative to the checkout when it lies in the checkout's parent directory (so a report
    says `../shared/data/faces98` or `runs/pose_val`, the same on every machine); any other path as
    given, since a relative form of it would be no easier to read."""
    full = os.path.normpath(os.path.abspath(path))
    parent = os.path.dirname(REPO)
    if parent != os.path.dirname(parent) and full.startswith(parent + os.sep):
        return os.path.relpath(full, REPO)
    return path


def data_help(what: str = "WFLW-layout root") -> str:
    """A `--data` option's help naming FACES98 as the checkout sees it: argparse's `%(default)s`
    printed this machine's absolute path, which means nothing on the next one."""
    return "%s (default: %s)" % (what, display_path(FACES98))
