#!/usr/bin/env python
"""Turned faces for training: a WFLW-layout root of faces98's training faces turned out of plane.

Each nearly frontal training face (|yaw| <= --max-source-yaw by its labels' head pose) is
turned by a yaw drawn from +-[--yaw-min, --yaw-max] with keras_flm/data/pose_synth.py (a
generic-depth 3-D warp that lets the nose hide the far cheek; with --pitch-min/--pitch-max
nodded first, e.g. looking down), then labelled by the teacher
ensemble the train list was labelled with (keras_flm/data/teacher.py). A face is dropped
when the teacher and the warp's own projection disagree on the inner points (brows, eyes,
nose, mouth) by more than --max-disagree of the inter-ocular distance: the warp broke the
face or the teacher misread it. By default only the training part of the run's split is used
(never validation faces), so validation stays a fair judge. Feed the result to training with
`flm train --extra-train OUT`.

`--part val` turns the run's *validation* faces instead and writes them as the new root's test
list (no train list, and a split record that `flm train --extra-train` refuses): a turned
validation set for choosing between models on head turns the real validation faces lack (20 of
470 are turned by 15 degrees or more). `scripts/eval_by_pose.py --turned-val OUT` scores it.

    .venv/bin/python scripts/make_pose_data.py --out runs/pose_data --sheet runs/pose_data/sheet.png
    .venv/bin/python scripts/make_pose_data.py --part val --out runs/pose_val
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from keras_flm.shared_tree import FACES98, data_help, display_path  # noqa: E402

IMAGE_SUBDIR = "synth_pose"  # rel paths start with it: `--oversample synth_pose/=N` selects them
INNER = slice(33, 98)


def inner_disagreement(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance over the inner points (33-97), in units of a's inter-ocular distance."""
    from runtime.landmarks import OUTER_EYE_CORNERS

    iod = float(np.linalg.norm(a[OUTER_EYE_CORNERS[0]] - a[OUTER_EYE_CORNERS[1]]))
    return float(np.linalg.norm(a[INNER] - b[INNER], axis=1).mean() / max(iod, 1e-6))


def turned_rel(source_rel: str, yaw: float, pitch: float, k: int) -> str:
    """The image path of copy `k` of the face at `source_rel`: its path flattened, then the yaw and
    (nodded faces only) the pitch in whole degrees; source_stem reads the source back."""
    nod = "_p%+03d" % int(round(pitch)) if pitch else ""
    return "%s/%s_y%+03d%s_%d.jpg" % (IMAGE_SUBDIR, source_key(source_rel), int(round(yaw)), nod, k)


def source_key(source_rel: str) -> str:
    """A source face's image path flattened into one file-name stem (lfw/A/B.jpg -> lfw__A__B)."""
    return os.path.splitext(source_rel)[0].replace("/", "__")


def source_stem(rel: str) -> str:
    """The source_key of the face a turned_rel path was made from."""
    return rel.split("/", 1)[1].rsplit("_y", 1)[0]


def wflw_line(pts: np.ndarray, attributes: np.ndarray, rel: str) -> str:
    box = [pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()]
    nums = ["%.3f" % v for v in pts.reshape(-1)] + ["%d" % int(round(v)) for v in box]
    return " ".join(nums + ["%d" % int(v) for v in attributes] + [rel])


def parse_args(argv: List[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=FACES98, help=data_help("source WFLW root (its train list)"))
    ap.add_argument("--out", required=True, help="new WFLW root to write (must not exist unless --overwrite)")
    ap.add_argument("--run", default=None,
                    help="training run whose split to respect (its config.json seed / val_fraction / "
                         "max_images); default: flm train's defaults")
    ap.add_argument("--part", choices=("train", "val"), default="train",
                    help="which part of the run's split to turn: train (extra training faces, the train "
                         "list) or val (a turned validation set, written as the test list)")
    ap.add_argument("--per-face", type=int, default=1, help="turned copies per source face")
    ap.add_argument("--yaw-min", type=float, default=20.0, help="smallest turn, degrees")
    ap.add_argument("--yaw-max", type=float, default=50.0, help="largest turn, degrees")
    ap.add_argument("--pitch-min", type=float, default=0.0,
                    help="nod each face by a pitch drawn from [--pitch-min, --pitch-max] degrees (> 0: "
                         "looking down) before the turn; both 0 (default): no nod")
    ap.add_argument("--pitch-max", type=float, default=0.0, help="see --pitch-min")
    ap.add_argument("--max-source-yaw", type=float, default=15.0,
                    help="turn only faces at most this far from frontal (their labels' head pose)")
    ap.add_argument("--max-disagree", type=float, default=0.10,
                    help="drop a face whose teacher and warp inner points differ by more "
                         "(inter-ocular units)")
    ap.add_argument("--source", action="append", default=[], metavar="PREFIX",
                    help="turn only faces whose image path starts with PREFIX (repeatable; e.g. "
                         "wflw_pseudo/ for the WFLW scene crops; default: every face)")
    ap.add_argument("--limit", type=int, default=0,
                    help="turn at most this many source faces, drawn at random (0: all)")
    ap.add_argument("--teachers", default=None,
                    help="directory of the teacher ONNX files (default: ../shared/models/pfld_ghostone)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quality", type=int, default=95, help="JPEG quality of the written images")
    ap.add_argument("--sheet", default=None, help="PNG contact sheet of the first 24 kept faces")
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    if a.per_face < 1:
        ap.error("--per-face must be >= 1, got %d" % a.per_face)
    if not 0.0 <= a.yaw_min <= a.yaw_max <= 80.0:
        ap.error("need 0 <= --yaw-min <= --yaw-max <= 80, got %g, %g" % (a.yaw_min, a.yaw_max))
    if not -45.0 <= a.pitch_min <= a.pitch_max <= 45.0:
        ap.error("need -45 <= --pitch-min <= --pitch-max <= 45, got %g, %g" % (a.pitch_min, a.pitch_max))
    if os.path.exists(a.out) and not a.overwrite:
        ap.error("%s exists (pass --overwrite to replace it)" % a.out)
    return a


def split_faces(data: str, run: str, part: str = "train") -> Tuple[List[Any], Dict[str, Any]]:
    """(the `part` ("train" or "val") of the split `run` (or flm train's defaults) makes, its split
    record marked with the part).

    Training copies never come from validation faces: a turned copy of one would let training see
    it. The record goes into the output root, and `flm train --extra-train` refuses a root of
    another split or of validation faces."""
    from keras_flm.config import RunConfig
    from keras_flm.evaluate import load_split
    from runtime.wflw import split_record

    cfg = RunConfig.load(os.path.join(run, "config.json")) if run else RunConfig()
    t = cfg.train
    val, train = load_split(data, "val", cfg, need_train=True)
    record = dict(split_record(data, t.seed, t.val_fraction, t.max_images), part=part)
    return (val if part == "val" else train), record


class SourceError(ValueError):
    """--source matches no face."""


def from_sources(faces: Sequence[Any], prefixes: Sequence[str]) -> List[Any]:
    """The faces whose image path starts with one of `prefixes` (all of them without prefixes).

    Why: validation says where the model over-fits (scripts/eval_by_pose.py --train-sample): the
    WFLW scene crops, not the LFW faces, so new views are worth most made from them."""
    if not prefixes:
        return list(faces)
    kept = [r for r in faces if r.rel_path.startswith(tuple(prefixes))]
    if not kept:
        raise SourceError("--source %s: no face's image path starts with %s"
                         % (", ".join(prefixes), " or ".join(prefixes)))
    return kept


def make(a: argparse.Namespace) -> Dict[str, Any]:
    import cv2
    from tqdm import tqdm

    from keras_flm.data.cache import label_euler
    from keras_flm.data.pose_synth import turn_face
    from keras_flm.data.teacher import label_face, load_teachers
    from keras_flm.report_md import new_file_mode
    from runtime.evaluate import load_image
    from runtime.preprocess import DEFAULT_SPEC, box_from_landmarks
    from runtime.wflw import ANNOTATION_DIR, IMAGE_DIR, LIST_NAME, SPLIT_RECORD

    t0 = time.time()
    faces, split = split_faces(a.data, a.run, a.part)
    candidates = from_sources(faces, a.source)
    teachers = load_teachers(a.teachers)
    rng = np.random.default_rng(a.seed)
    sources = []
    for r in candidates:
        try:
            yaw = label_euler(r.landmarks, DEFAULT_SPEC)[1]
        except ValueError:
            continue
        if abs(yaw) <= a.max_source_yaw:
            sources.append(r)
    sources = [sources[i] for i in rng.permutation(len(sources))]  # --limit: a random sample
    if a.limit:
        sources = sources[:a.limit]
    out_parent = os.path.dirname(os.path.abspath(a.out)) or "."
    os.makedirs(out_parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-pose-", dir=out_parent)
    os.chmod(tmp, new_file_mode(directory=True))  # renamed into place below: not private
    lines, kept_sheet, dropped = [], [], {"disagree": 0, "warp": 0}
    disagreements = []
    nodding = (a.pitch_min, a.pitch_max) != (0, 0)
    try:
        for r in tqdm(sources, desc="turning faces", unit="face"):
            image = load_image(r)
            for k in range(a.per_face):
                yaw = float(rng.uniform(a.yaw_min, a.yaw_max) * rng.choice([-1.0, 1.0]))
                # drawn only when asked, so a yaw-only root's draws (and files) stay as they were
                pitch = float(rng.uniform(a.pitch_min, a.pitch_max)) if nodding else 0.0
                try:
                    turned, projected = turn_face(image, r.landmarks, yaw, pitch)
                except ValueError:
                    dropped["warp"] += 1
                    continue
                labels = label_face(teachers, turned, box_from_landmarks(projected))
                d = inner_disagreement(labels, projected)
                disagreements.append(d)
                if d > a.max_disagree:
                    dropped["disagree"] += 1
                    continue
                rel = turned_rel(r.rel_path, yaw, pitch, k)
                path = os.path.join(tmp, IMAGE_DIR, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if not cv2.imwrite(path, turned, [cv2.IMWRITE_JPEG_QUALITY, a.quality]):
                    raise OSError("could not write %s" % path)
                attrs = np.array(r.attributes).copy()
                try:
                    attrs[0] = int(abs(label_euler(labels, DEFAULT_SPEC)[1]) >= 30.0)
                except ValueError:
                    pass
                lines.append(wflw_line(labels, attrs, rel))
                if a.sheet and len(kept_sheet) < 24:
                    kept_sheet.append((turned, labels))
        if not lines:
            raise RuntimeError("no face kept (%s dropped)" % dropped)
        # training copies: the train list, and an empty test list (a WFLW root has both);
        # validation copies: the test list only, so nothing can train on them
        list_path = os.path.join(tmp, ANNOTATION_DIR, LIST_NAME % ("test" if a.part == "val" else "train"))
        os.makedirs(os.path.dirname(list_path), exist_ok=True)
        with open(list_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        if a.part == "train":
            open(os.path.join(tmp, ANNOTATION_DIR, LIST_NAME % "test"), "w").close()
        summary = {"source": display_path(a.data), "run_split": a.run, "part": a.part,
                   "source_faces": len(faces), "source_prefixes": list(a.source),
                   "turned_sources": len(sources), "kept": len(lines), "dropped": dropped,
                   "yaw_range_deg": [a.yaw_min, a.yaw_max],
                   "pitch_range_deg": [a.pitch_min, a.pitch_max], "max_source_yaw": a.max_source_yaw,
                   "max_disagree": a.max_disagree, "per_face": a.per_face, "seed": a.seed,
                   "disagreement_median": float(np.median(disagreements)) if disagreements else None,
                   "teacher": "keras_flm.data.teacher (3 PFLD models, mirrored, box refined twice)",
                   "seconds": round(time.time() - t0, 1)}
        with open(os.path.join(tmp, "pose_data.json"), "w") as f:
            json.dump(summary, f, indent=1)
        with open(os.path.join(tmp, SPLIT_RECORD), "w") as f:
            json.dump(split, f, indent=1)
        if os.path.exists(a.out):
            shutil.rmtree(a.out)
        os.rename(tmp, a.out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if a.sheet:
        write_sheet(kept_sheet, a.sheet)
    return summary


def write_sheet(items: List[Any], path: str, tile: int = 160, cols: int = 6) -> None:
    import cv2

    tiles = []
    for img, pts in items:
        im = img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        s = tile / max(im.shape[:2])
        im = cv2.resize(im, (int(im.shape[1] * s), int(im.shape[0] * s)))
        for x, y in pts * s:
            cv2.circle(im, (int(x), int(y)), 1, (0, 255, 0), -1)
        canvas = np.zeros((tile, tile, 3), np.uint8)
        canvas[:im.shape[0], :im.shape[1]] = im
        tiles.append(canvas)
    while len(tiles) % cols:
        tiles.append(np.zeros((tile, tile, 3), np.uint8))
    rows = [np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    cv2.imwrite(path, np.vstack(rows))


def main(argv: List[str] = None) -> int:
    a = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        s = make(a)
    except SourceError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    print("wrote %s: %d turned faces from %d sources (dropped: %s; median inner disagreement %.3f IOD) "
          "in %.0f s" % (a.out, s["kept"], s["turned_sources"], s["dropped"], s["disagreement_median"] or 0,
                         s["seconds"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
