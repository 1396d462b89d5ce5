"""Real crops for calibration and parity checks, made exactly as training and serving make them.

Calibration images come from the run's TRAINING split only, selected exactly as
keras_flm.train.load_data selects them (optional `max_images` subset, then
`split_train_val` with the run's seed), so no validation or test face leaks into
quantization. Every crop goes through `runtime.preprocess.crop_face`
on the landmarks' bounding box, the box training crops from (runtime.evaluate.face_box).
The Vitis AI helper reuses `calibration_crops`, so vai_q and the TFLite/ORT quantizers
see the same images.
"""
from concurrent.futures import ThreadPoolExecutor
from typing import List, Sequence

import click
import numpy as np

from quant.run import load_config
from runtime.evaluate import face_box, load_image
from runtime.preprocess import CropSpec, crop_face
from runtime.wflw import AnnotationError, read_annotations, run_split


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


def _data_root(run_dir: str) -> str:
    cfg = load_config(run_dir)
    root = cfg.data.get("root")
    if not root:
        raise click.ClickException("%s/config.json names no data root (data.root); was the run trained with "
                                   "`flm train --data ROOT`?" % run_dir)
    return str(root)


def split_records(run_dir: str, split: str) -> List:
    """Records of the run's "train" (train list minus validation), "val" or "test" split."""
    cfg = load_config(run_dir)
    root = _data_root(run_dir)
    try:
        if split == "test":
            return read_annotations(root, "test")
        # the --data root only, not cfg.train.extra_train: PTQ calibrates on the same real faces as before it
        t = cfg.train
        _, train, val = run_split(read_annotations(root, "train"), t.seed, t.val_fraction, t.max_images)
    except AnnotationError as e:
        raise click.ClickException(str(e)) from None
    if split == "train":
        return train
    if split == "val":
        return val
    raise ValueError("split must be train, val or test, got %r" % (split,))


def calibration_crops(run_dir: str, n: int, seed: int = 0) -> np.ndarray:
    """`n` uint8 (n, 112, 112) crops drawn without replacement from the run's training split.

    Raises click.ClickException when the split holds fewer than `n` faces (asking for 500
    and silently getting 40 would make a different, worse quantization).
    """
    if n < 1:
        raise click.ClickException("calibration needs at least 1 image, got %d" % n)
    records = split_records(run_dir, "train")
    if len(records) < n:
        raise click.ClickException(
            "asked for %d calibration images but the training split of %s has only %d faces "
            "(pass --calib %d or fewer)" % (n, _data_root(run_dir), len(records), len(records)))
    pick = np.sort(np.random.default_rng(seed).choice(len(records), size=n, replace=False))
    spec = load_config(run_dir).crop
    return crop_records([records[i] for i in pick], spec, desc="calibration crops")


def sample_crops(run_dir: str, split: str, n: int, seed: int = 0) -> np.ndarray:
    """Up to `n` crops of a split (all of it when smaller): parity checks and quick looks."""
    records = split_records(run_dir, split)
    if len(records) > n:
        pick = np.sort(np.random.default_rng(seed).choice(len(records), size=n, replace=False))
        records = [records[i] for i in pick]
    return crop_records(records, load_config(run_dir).crop, desc="%s crops" % split)
