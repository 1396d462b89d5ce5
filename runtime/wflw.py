"""WFLW annotation reader: one validated record per face, or an error naming file and line.

Lives in `runtime/` because the board's `flm-dpu eval` reads the same lists (numpy + OpenCV
only, Python 3.8 syntax). Training, evaluation and the board therefore agree on what a
face is, and a broken line is never turned into a silent NaN.

Layout of a WFLW root (the official download or ../shared/data/faces98)::

    ROOT/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt
    ROOT/WFLW_images/<path on the line>

Line format: 196 numbers x0 y0 ... x97 y97 (image pixels), 4 numbers box x_min y_min x_max
y_max, 6 flags (pose expression illumination make-up occlusion blur), image path relative
to WFLW_images/. The validation split is carved out of the train list by `split_train_val`;
the test list is never mixed in.
"""
import hashlib
import logging
import os
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np

from runtime.landmarks import ATTRIBUTES, NUM_POINTS

log = logging.getLogger(__name__)

ANNOTATION_DIR = os.path.join("WFLW_annotations", "list_98pt_rect_attr_train_test")
IMAGE_DIR = "WFLW_images"
LIST_NAME = "list_98pt_rect_attr_%s.txt"
SPLITS = ("train", "test")
NUM_TOKENS = 2 * NUM_POINTS + 4 + len(ATTRIBUTES) + 1  # 207


class AnnotationError(ValueError):
    """A bad annotation line or data root; the message names file, line and problem."""


class FaceRecord(NamedTuple):
    """One annotated face.

    image_path: absolute image path; rel_path: the path as written on the line (used for
    machine-independent hashing); landmarks: float32 (98, 2) image pixels; box: float32
    (4,) x_min y_min x_max y_max; attributes: int32 (6,) flags in `ATTRIBUTES` order;
    source: annotation file; line: 1-based line number in it.
    """

    image_path: str
    rel_path: str
    landmarks: np.ndarray
    box: np.ndarray
    attributes: np.ndarray
    source: str
    line: int

    def where(self) -> str:
        return "%s:%d" % (self.source, self.line)


def annotation_path(root: str, split: str = "train") -> str:
    """Path of the annotation list of `split`; raises AnnotationError naming what is missing."""
    if split not in SPLITS:
        raise AnnotationError("split must be one of %s, got %r" % (SPLITS, split))
    root = os.path.abspath(os.path.expanduser(str(root)))
    if not os.path.isdir(root):
        raise AnnotationError("data root %s does not exist or is not a directory" % root)
    path = os.path.join(root, ANNOTATION_DIR, LIST_NAME % split)
    if not os.path.isfile(path):
        raise AnnotationError("annotation list missing: %s (expected a WFLW layout: %s/%s and %s/)"
                              % (path, ANNOTATION_DIR, LIST_NAME % split, IMAGE_DIR))
    image_dir = os.path.join(root, IMAGE_DIR)
    if not os.path.isdir(image_dir):
        raise AnnotationError("image directory missing: %s" % image_dir)
    return path


def parse_line(text: str, source: str, line: int, image_dir: str,
               check_image: bool = True) -> FaceRecord:
    """Parse and validate one annotation line; raise AnnotationError naming file and line."""
    where = "%s:%d" % (source, line)
    tokens = text.split()
    if len(tokens) != NUM_TOKENS:
        raise AnnotationError("%s: expected %d tokens (196 landmark coordinates, 4 box, %d attribute "
                              "flags, image path), got %d" % (where, NUM_TOKENS, len(ATTRIBUTES),
                                                              len(tokens)))
    n_num = NUM_TOKENS - 1
    values = np.empty(n_num, dtype=np.float64)
    for i, tok in enumerate(tokens[:n_num]):
        try:
            values[i] = float(tok)
        except ValueError:
            raise AnnotationError("%s: token %d (%s) is not a number: %r"
                                  % (where, i + 1, _token_role(i), tok)) from None
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        raise AnnotationError("%s: token %d (%s) is not finite: %r"
                              % (where, i + 1, _token_role(i), tokens[i]))
    landmarks = values[:2 * NUM_POINTS].reshape(NUM_POINTS, 2).astype(np.float32)
    box = values[2 * NUM_POINTS:2 * NUM_POINTS + 4].astype(np.float32)
    flags = values[2 * NUM_POINTS + 4:n_num]
    if not np.all((flags == 0) | (flags == 1)):
        raise AnnotationError("%s: attribute flags must be 0 or 1, got %s"
                              % (where, " ".join(tokens[2 * NUM_POINTS + 4:n_num])))
    if not (box[2] > box[0] and box[3] > box[1]):
        raise AnnotationError("%s: face box %s is empty or inverted (need x_max > x_min, y_max > y_min)"
                              % (where, box.tolist()))
    rel = tokens[-1]
    image_path = os.path.normpath(os.path.join(image_dir, rel))
    if check_image and not os.path.isfile(image_path):
        raise AnnotationError("%s: image not found: %s" % (where, image_path))
    return FaceRecord(image_path, rel, landmarks, box, flags.astype(np.int32), source, line)


def _token_role(i: int) -> str:
    if i < 2 * NUM_POINTS:
        return "landmark %d %s" % (i // 2, "xy"[i % 2])
    if i < 2 * NUM_POINTS + 4:
        return "box " + ("x_min", "y_min", "x_max", "y_max")[i - 2 * NUM_POINTS]
    return "attribute " + ATTRIBUTES[i - 2 * NUM_POINTS - 4]


def read_annotations(root: str, split: str = "train", skip_bad: bool = False,
                     check_images: bool = True) -> List[FaceRecord]:
    """Read and validate every line of a WFLW list.

    Bad lines (token count, non-numbers, NaN/inf, bad flags or box, missing image) raise
    AnnotationError naming file and line; with `skip_bad` they are logged, counted and
    dropped instead (a summary warning gives the count). Blank lines are ignored.
    Readability of an image is checked when it is loaded (`load_image`).
    """
    path = annotation_path(root, split)
    image_dir = os.path.join(os.path.abspath(os.path.expanduser(str(root))), IMAGE_DIR)
    records = []  # type: List[FaceRecord]
    skipped = 0
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for n, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                records.append(parse_line(text, path, n, image_dir, check_image=check_images))
            except AnnotationError as e:
                if not skip_bad:
                    raise
                skipped += 1
                log.warning("skipping bad line: %s", e)
    if skipped:
        log.warning("%s: skipped %d bad line(s), kept %d", path, skipped, len(records))
    if not records:
        raise AnnotationError("%s: no valid faces" % path)
    return records


def load_image(record: FaceRecord, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """Load a record's image (BGR uint8 by default, as a camera delivers it)."""
    img = cv2.imread(record.image_path, flags)
    if img is None:
        raise AnnotationError("%s: image unreadable: %s" % (record.where(), record.image_path))
    return img


def _split_key(record: FaceRecord, seed: int) -> str:
    # The path as written on the line (not the absolute one) so the split is the same on
    # every machine, whatever the data root is called.
    return hashlib.sha1(("%d|%s|%d" % (seed, record.rel_path, record.line)).encode("utf-8")).hexdigest()


def split_train_val(records: Sequence[FaceRecord], val_fraction: float = 0.1,
                    seed: int = 42) -> Tuple[List[FaceRecord], List[FaceRecord]]:
    """Deterministic train/validation split of the train list.

    Faces are ranked by a seeded SHA-1 of (relative image path, line number) and the first
    round(n * val_fraction) go to validation: exact proportions, identical on every
    machine and run, independent of the input order. Both parts keep the input order.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("val_fraction must be in [0, 1), got %r" % (val_fraction,))
    n_val = int(round(len(records) * val_fraction))
    if val_fraction > 0 and len(records) > 1:
        n_val = max(1, min(n_val, len(records) - 1))
    ranked = sorted(range(len(records)), key=lambda i: _split_key(records[i], seed))
    val_idx = set(ranked[:n_val])
    train = [r for i, r in enumerate(records) if i not in val_idx]
    val = [r for i, r in enumerate(records) if i in val_idx]
    return train, val


def run_split(records: Sequence[FaceRecord], seed: int, val_fraction: float,
              max_images: Optional[int]) -> Tuple[List[FaceRecord], List[FaceRecord], List[FaceRecord]]:
    """(faces used, training part, validation part) of a train list as a run carves it: the
    optional deterministic --max-images subset, then split_train_val, both with the run's seed.
    The one recipe training, evaluation and calibration share, so they hold out the same faces."""
    used = subset(records, max_images, seed=seed)
    train, val = split_train_val(used, val_fraction, seed=seed)
    return used, train, val


def calibration_pool(root: str, seed: int, val_fraction: float, max_images: Optional[int],
                     extra_roots: Sequence[str] = ()) -> Tuple[List[FaceRecord], List[str], List[str]]:
    """(faces, extra roots used, extra roots missing here) that INT8 calibration draws from: the run's
    training part of `root` (run_split) plus the whole train lists of its --extra-train roots, i.e.
    the faces training saw. Calibrating on the --data faces alone left the turned faces' activations
    outside the ranges: PTQ lost +0.29 pp on turned validation faces (runs/lr3b_s34), +0.06 with them.
    A root missing here (a run trained on another machine) is skipped and named, for the caller to say."""
    _, train, _ = run_split(read_annotations(root, "train"), seed, val_fraction, max_images)
    pool, used, missing = list(train), [], []
    for extra in extra_roots:
        if not os.path.isdir(extra):
            missing.append(str(extra))
            continue
        pool.extend(read_annotations(extra, "train"))
        used.append(str(extra))
    return pool, used, missing


def draw_records(records: Sequence[FaceRecord], n: int, seed: int = 0) -> List[FaceRecord]:
    """`n` records drawn without replacement by `seed`, in list order (the calibration draw)."""
    pick = np.sort(np.random.default_rng(seed).choice(len(records), size=n, replace=False))
    return [records[int(i)] for i in pick]


def calibration_draw(root: str, seed: int, val_fraction: float, max_images: Optional[int],
                     extra_roots: Sequence[str], n: int, draw_seed: int = 0,
                     warn: Callable[[str], None] = log.warning,
                     ) -> Tuple[List[FaceRecord], List[str], List[str]]:
    """(`n` faces of calibration_pool drawn by `draw_seed`, extra roots used, extra roots missing): the one
    selection of the TFMOT flow (quant.calibration) and of vai_q's helper (vitis.calibration). `warn` is
    told of each missing root; a ValueError says when the pool holds fewer than `n` faces (asking for
    500 and silently getting 40 would make a different, worse quantization)."""
    pool, used, missing = calibration_pool(root, seed, val_fraction, max_images, extra_roots or ())
    for extra in missing:
        warn("warning: --extra-train root %s is not here: calibrating without its faces" % extra)
    if n > len(pool):
        raise ValueError("asked for %d calibration images but the training faces of %s have only %d "
                         "(pass --calib %d or fewer)" % (n, " + ".join([root] + used), len(pool), len(pool)))
    return draw_records(pool, n, draw_seed), used, missing


#: Written into a root of faces derived from another root's training faces (e.g. turned copies,
#: scripts/make_pose_data.py): the split they respected. Training with such a root refuses a run
#: whose split differs, since derived copies of its validation faces would then be trained on.
SPLIT_RECORD = "split.json"


def canonical_root(root: str) -> str:
    """A data root as one absolute, symlink-free path, so the same root compares equal however given."""
    return os.path.realpath(os.path.abspath(os.path.expanduser(str(root))))


def split_record(root: str, seed: int, val_fraction: float, max_images: Optional[int]) -> Dict[str, Any]:
    """What decides which faces of `root`'s train list are validation faces (run_split)."""
    return {"root": canonical_root(root), "seed": int(seed),
            "val_fraction": float(val_fraction),
            "max_images": None if max_images is None else int(max_images)}


def subset(records: Sequence[FaceRecord], n: Optional[int], seed: int = 42) -> List[FaceRecord]:
    """A deterministic sample of at most n records (input order kept), for quick runs."""
    if n is None or n >= len(records):
        return list(records)
    if n < 1:
        raise ValueError("subset size must be >= 1, got %r" % (n,))
    ranked = sorted(range(len(records)), key=lambda i: _split_key(records[i], seed + 1))
    keep = set(ranked[:n])
    return [r for i, r in enumerate(records) if i in keep]


def attribute_shares(records: Sequence[FaceRecord]) -> dict:
    """Share of faces carrying each attribute flag (for `flm data check` and config.json)."""
    if not records:
        return {a: 0.0 for a in ATTRIBUTES}
    flags = np.stack([r.attributes for r in records])
    return {a: float(flags[:, i].mean()) for i, a in enumerate(ATTRIBUTES)}
