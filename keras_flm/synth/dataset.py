"""Write a synthetic WFLW-layout dataset root that `flm train --data DIR` reads like the real one.

Layout (as WFLW, plus two metadata files):

    OUT/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_train.txt
    OUT/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_test.txt
    OUT/WFLW_images/synth/000000.jpg ...
    OUT/synth.json          summary: counts, attribute counts, seed, generator version
    OUT/synth_faces.jsonl   per face: image path, split, true pose (yaw/pitch/roll), expression

Annotation line: 196 landmark coordinates (x0 y0 ... x97 y97, image pixels), 4 box numbers
(x_min y_min x_max y_max: the landmarks' bounding box, optionally jittered like a detector's),
6 attribute flags (pose expression illumination make-up occlusion blur), image path relative to
WFLW_images/. Face i is a pure function of (seed, i); the last round(n * test_fraction) faces
form the test list.

The root is built in a temporary sibling directory and renamed into place at the end, so an
error or Ctrl-C never leaves a half-written dataset behind.
"""
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import cv2
import numpy as np

from keras_flm.report_md import new_file_mode
from keras_flm.synth.render import DEFAULT_IMAGE_SIZE, describe, render_face, sample_params
from runtime.landmarks import ATTRIBUTES

#: Bumped whenever the generator's output for a given seed changes.
SYNTH_VERSION = 1
ANNOTATION_DIR = os.path.join("WFLW_annotations", "list_98pt_rect_attr_train_test")
LIST_NAME = "list_98pt_rect_attr_%s.txt"
IMAGE_SUBDIR = "synth"
JPEG_QUALITY = (75, 96)  # drawn per face: compression artefacts are part of real data


def _progress(total: int, enabled: bool):
    """tqdm bar when available and wanted, else a no-op stand-in (tqdm is a train-extra dependency)."""
    if enabled:
        try:
            from tqdm import tqdm

            return tqdm(total=total, desc="synth faces", unit="face", dynamic_ncols=True)
        except ImportError:
            pass

    class _Null:
        def update(self, k: int = 1) -> None:
            pass

        def close(self) -> None:
            pass

    return _Null()


def annotation_line(landmarks: np.ndarray, box: np.ndarray, flags: np.ndarray, rel_path: str) -> str:
    """One WFLW annotation line (no newline)."""
    coords = " ".join("%.3f" % v for v in np.asarray(landmarks, dtype=np.float64).reshape(-1))
    b = " ".join("%.3f" % v for v in box)
    f = " ".join(str(int(v)) for v in flags)
    return "%s %s %s %s" % (coords, b, f, rel_path)


def _box(landmarks: np.ndarray, jitter: float, rng: np.random.Generator) -> np.ndarray:
    x0, y0 = landmarks.min(0)
    x1, y1 = landmarks.max(0)
    if jitter > 0:
        w, h = x1 - x0, y1 - y0
        x0, x1 = x0 + rng.normal(0, jitter) * w, x1 + rng.normal(0, jitter) * w
        y0, y1 = y0 + rng.normal(0, jitter) * h, y1 + rng.normal(0, jitter) * h
        x0, x1 = min(x0, x1 - 1), max(x1, x0 + 1)
        y0, y1 = min(y0, y1 - 1), max(y1, y0 + 1)
    return np.array([x0, y0, x1, y1], dtype=np.float64)


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError("%s exists and is not a directory" % out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError("%s is not empty; choose another directory or pass overwrite=True "
                              "(--overwrite)" % out)


def write_dataset(out_dir: Union[str, Path], n: int, seed: int = 0, test_fraction: float = 0.2,
                  image_size: int = DEFAULT_IMAGE_SIZE, progress: bool = True, overwrite: bool = False,
                  box_jitter: float = 0.0, force: Optional[Dict[str, Optional[bool]]] = None
                  ) -> Dict[str, Any]:
    """Render n synthetic faces into a WFLW-layout root at out_dir and return a summary dict.

    `image_size` is the square image side in pixels (faces are 22-32 % of it between the outer eye
    corners). `box_jitter` (fraction of the box size, e.g. 0.05) perturbs the written face box like a
    detector's; 0 writes the landmarks' bounding box, as the shared real-data root does.
    `force` fixes attributes for every face (see render.sample_params), e.g. {"occlusion": False}.
    Refuses a non-empty out_dir unless overwrite=True.
    """
    if int(n) != n or n < 1:
        raise ValueError("n must be a positive integer, got %r" % (n,))
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError("test_fraction must be in [0, 1), got %r" % (test_fraction,))
    if int(image_size) < 64:
        raise ValueError("image_size must be >= 64 pixels, got %r" % (image_size,))
    if box_jitter < 0:
        raise ValueError("box_jitter must be >= 0, got %r" % (box_jitter,))
    n, image_size = int(n), int(image_size)
    out = Path(out_dir).expanduser().absolute()
    _check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    n_test = int(round(n * test_fraction))
    n_train = n - n_test
    force = dict(force or {})

    tmp = Path(tempfile.mkdtemp(prefix=".%s.tmp-" % out.name, dir=str(out.parent)))
    os.chmod(str(tmp), new_file_mode(directory=True))  # mkdtemp makes it private; a dataset is shared
    done = False
    t0 = time.perf_counter()
    bar = _progress(n, progress)
    try:
        ann_dir = tmp / ANNOTATION_DIR
        img_dir = tmp / "WFLW_images" / IMAGE_SUBDIR
        ann_dir.mkdir(parents=True)
        img_dir.mkdir(parents=True)
        lines: Dict[str, List[str]] = {"train": [], "test": []}
        counts = {split: dict.fromkeys(ATTRIBUTES, 0) for split in lines}
        with open(str(tmp / "synth_faces.jsonl"), "w") as meta:
            for i in range(n):
                split = "train" if i < n_train else "test"
                rng = np.random.default_rng([int(seed), i])
                params = sample_params(rng, image_size, **force)
                img, lm, flags = render_face(params, image_size)
                rel = "%s/%06d.jpg" % (IMAGE_SUBDIR, i)
                quality = int(rng.integers(*JPEG_QUALITY))
                if not cv2.imwrite(str(img_dir / ("%06d.jpg" % i)), img, [cv2.IMWRITE_JPEG_QUALITY, quality]):
                    raise OSError("could not write %s" % (img_dir / ("%06d.jpg" % i)))
                lines[split].append(annotation_line(lm, _box(lm, box_jitter, rng), flags, rel))
                for name, v in zip(ATTRIBUTES, flags):
                    counts[split][name] += int(v)
                rec = {"image": rel, "split": split}
                rec.update(describe(params))
                rec["flags"] = [int(v) for v in flags]
                meta.write(json.dumps(rec) + "\n")
                bar.update(1)
        for split, rows in lines.items():
            with open(str(ann_dir / (LIST_NAME % split)), "w") as f:
                f.write("".join(r + "\n" for r in rows))
        seconds = time.perf_counter() - t0
        summary: Dict[str, Any] = {
            "root": str(out), "generator": "keras_flm.synth", "version": SYNTH_VERSION, "seed": int(seed),
            "n": n, "train": n_train, "test": n_test, "image_size": image_size, "box_jitter": box_jitter,
            "force": force, "attribute_counts": counts,
            "train_list": os.path.join(ANNOTATION_DIR, LIST_NAME % "train"),
            "test_list": os.path.join(ANNOTATION_DIR, LIST_NAME % "test"),
            "seconds": round(seconds, 3), "faces_per_second": round(n / max(seconds, 1e-9), 1),
        }
        with open(str(tmp / "synth.json"), "w") as f:
            json.dump(summary, f, indent=2, sort_keys=True)
        _swap_into_place(tmp, out, overwrite)
        done = True
        return summary
    finally:
        bar.close()
        if not done:
            shutil.rmtree(str(tmp), ignore_errors=True)


def _swap_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished temp root to out; an old root (overwrite=True) is moved aside first
    and deleted only after the new one is in place."""
    _check_target(out, overwrite)  # re-check: something may have appeared meanwhile
    old = None
    if out.is_dir():
        if any(out.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=".%s.old-" % out.name, dir=str(out.parent)))
            os.rmdir(str(old))
            os.replace(str(out), str(old))
        else:
            os.rmdir(str(out))
    os.replace(str(tmp), str(out))
    if old is not None:
        shutil.rmtree(str(old), ignore_errors=True)
