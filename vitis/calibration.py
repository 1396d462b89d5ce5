"""Calibration crops for vai_q: the same faces as the TFMOT flow (training split and --extra-train roots).

Both quantizers must see the same calibration data or their INT8 results cannot be
compared, so `quant.calibration.calibration_crops(run_dir, n, seed)` is the one used.
Inside the docker the data root recorded in config.json (a host path) usually does not
exist and `--data` names the mounted copy; quant's function reads the root from
config.json only, so then the same selection is reproduced here from the same pieces --
runtime.wflw.calibration_draw (the run's training part of the train list, never a validation
face, plus its --extra-train roots where they exist, drawn by the seed) and
runtime.preprocess.crop_face on the landmark box -- and a test checks both give identical crops.
"""
import inspect
import os
import sys
from typing import Any, Callable, Optional

import numpy as np

from keras_flm.config import RunConfig
from runtime.preprocess import CropSpec, box_from_landmarks, crop_face
from runtime.wflw import calibration_draw, load_image


def data_root_of(run_dir: str, cfg: RunConfig, override: Optional[str] = None) -> str:
    """The WFLW-layout root: `override`, else the one training recorded in config.json."""
    root = override or (cfg.data or {}).get("root")
    if not root:
        raise ValueError("%s/config.json records no data root: pass --data ROOT" % run_dir)
    if not os.path.isdir(root):
        raise ValueError("data root %s (from %s) does not exist here: pass --data ROOT (inside the docker, "
                         "mount the data, e.g. -v /path/to/data:/data ... --data /data)"
                         % (root, "--data" if override else os.path.join(run_dir, "config.json")))
    return root


def _shared_function() -> Optional[Callable[..., Any]]:
    try:
        from quant.calibration import calibration_crops as shared  # the TFMOT flow's own selection
    except Exception:  # noqa: BLE001 - absent, or quant's TFMOT imports fail in the docker
        return None
    return shared


def crops_from_root(root: str, cfg: RunConfig, n: int, seed: int = 0) -> np.ndarray:
    """n uint8 (112, 112) crops of the faces the run trained on, `root` standing for its data root,
    selected as quant.calibration selects them (runtime.wflw.calibration_draw)."""
    t = cfg.train
    records, _, _ = calibration_draw(root, t.seed, t.val_fraction, t.max_images, t.extra_train, n, seed,
                                     warn=lambda m: print(m, file=sys.stderr))
    spec = cfg.crop if isinstance(cfg.crop, CropSpec) else CropSpec.from_dict(cfg.crop)
    out = np.empty((n, spec.size, spec.size), np.uint8)
    for i, rec in enumerate(records):
        out[i] = crop_face(load_image(rec), box_from_landmarks(rec.landmarks), spec)[0]
    return out


def calibration_crops(run_dir: str, n: int, data_root: Optional[str] = None, seed: int = 0) -> np.ndarray:
    """uint8 (n, 112, 112) calibration crops for the run (see the module docstring)."""
    if n < 1:
        raise ValueError("calibration size must be >= 1, got %d" % n)
    cfg = RunConfig.load(os.path.join(run_dir, "config.json"))
    root = data_root_of(run_dir, cfg, data_root)  # a missing root fails here, with the docker hint
    shared = _shared_function()
    if shared is not None:
        params = inspect.signature(shared).parameters
        if data_root is None:
            return np.asarray(shared(run_dir, n, seed=seed), dtype=np.uint8)
        for name in ("data_root", "root"):
            if name in params:
                return np.asarray(shared(run_dir, n, seed=seed, **{name: data_root}), dtype=np.uint8)
    return crops_from_root(root, cfg, n, seed)
