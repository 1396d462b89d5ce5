"""Real crops for calibration and parity checks, made exactly as training and serving make them.

Calibration images come from the faces the run TRAINED on, selected exactly as
keras_flm.train.load_data selects them (optional `max_images` subset, then
`split_train_val` with the run's seed, plus the whole train lists of its --extra-train
roots: runtime.wflw.calibration_pool), so no validation or test face leaks into quantization.
Every crop goes through `runtime.preprocess.crop_face` on the landmarks' bounding box, the box
training crops from (runtime.evaluate.face_box).
The Vitis AI helper reuses `calibration_crops`, so vai_q and the TFLite/ORT quantizers
see the same images.
"""
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Sequence, Tuple

import click
import numpy as np

from quant.run import load_config
from runtime.evaluate import face_box, load_image
from runtime.preprocess import CropSpec, crop_face
from runtime.wflw import AnnotationError, calibration_draw, draw_records, read_annotations, run_split


def crop_records(records: Sequence, spec: CropSpec, desc: str = "cropping", workers: int = 2) -> np.ndarray:
    """uint8 (N, size, size) crops of `records` (threads decode; OpenCV releases the GIL)."""
    from tqdm import tqdm

    def one(r) -> np.ndarray:
        return crop_face(load_image(r), face_box(r, "landmarks"), spec)[0]

    out = np.empty((len(records), spec.size, spec.size), np.uint8)
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(records), desc=desc, unit="face", leave=False, disable=len(records) < 64) as bar:
        for i, crop in enumerate(pool.map(one, records)):
            out[i] = crop
            bar.update(1)
    return out


def _data_root(run_dir: str, cfg) -> str:
    """The run's data root from its loaded config (`run_dir` only names the run in the error)."""
    root = cfg.data.get("root")
    if not root:
        raise click.ClickException("%s/config.json names no data root (data.root); was the run trained with "
                                   "`flm train --data ROOT`?" % run_dir)
    return str(root)


def split_records(run_dir: str, split: str) -> List:
    """Records of the run's "train" (train list minus validation), "val" or "test" split."""
    cfg = load_config(run_dir)
    root = _data_root(run_dir, cfg)
    try:
        if split == "test":
            return read_annotations(root, "test")
        # the --data root's split only; calibration_set adds the run's --extra-train faces
        t = cfg.train
        _, train, val = run_split(read_annotations(root, "train"), t.seed, t.val_fraction, t.max_images)
    except AnnotationError as e:
        raise click.ClickException(str(e)) from None
    if split == "train":
        return train
    if split == "val":
        return val
    raise ValueError("split must be train, val or test, got %r" % (split,))


def calibration_set(run_dir: str, n: int, seed: int = 0) -> Tuple[np.ndarray, Dict[str, Any]]:
    """(`n` uint8 (n, 112, 112) crops, where they came from) drawn without replacement from the faces the
    run trained on (runtime.wflw.calibration_draw). The second item is for quant.json: the extra roots
    used and those missing here (the run was trained on another machine), which a warning names.
    Too few faces for `n` is a click.ClickException."""
    if n < 1:
        raise click.ClickException("calibration needs at least 1 image, got %d" % n)
    cfg = load_config(run_dir)
    t = cfg.train
    try:
        records, used, missing = calibration_draw(_data_root(run_dir, cfg), t.seed, t.val_fraction,
                                                  t.max_images, t.extra_train, n, seed,
                                                  warn=lambda m: click.echo(m, err=True))
    except (AnnotationError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    crops = crop_records(records, cfg.crop, desc="calibration crops")
    return crops, {"calib_extra_roots": used, "calib_extra_missing": missing}


def calibration_crops(run_dir: str, n: int, seed: int = 0) -> np.ndarray:
    """The crops of calibration_set (the Vitis AI helper and the tests want the crops alone)."""
    return calibration_set(run_dir, n, seed)[0]


def sample_crops(run_dir: str, split: str, n: int, seed: int = 0) -> np.ndarray:
    """Up to `n` crops of a split (all of it when smaller): parity checks and quick looks."""
    records = split_records(run_dir, split)
    if len(records) > n:
        records = draw_records(records, n, seed)
    return crop_records(records, load_config(run_dir).crop, desc="%s crops" % split)
