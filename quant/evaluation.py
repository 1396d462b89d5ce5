"""Score quant artifacts with the runtime's evaluation and record them in metrics.json.

Files go through keras_flm.evaluate (runtime.backends + runtime.evaluate: the same crop,
inference call and decoding as `flm eval` and the camera), keyed by the same artifact
names `flm eval` uses. A fake-quant Keras model (the "as the DPU would round it"
emulation, which no runtime backend can load) is wrapped in `FakeQuantBackend`, a
duck-typed backend, and scored by the very same runtime.evaluate.
"""
import os
from typing import Any, Dict, Optional

import numpy as np

from keras_flm import evaluate as kev
from runtime.bundle import file_digest
from runtime.preprocess import DEFAULT_SPEC, CropSpec, normalize_input


def sha256(path: str) -> str:
    return file_digest(path, "sha256")


class FakeQuantBackend:
    """runtime Backend interface over an in-memory (fake-quant) Keras model."""

    name = "keras-fakequant"
    batch_size = None

    def __init__(self, model, spec: CropSpec = DEFAULT_SPEC, label: str = ""):
        import tensorflow as tf

        self.model = model
        self.spec = spec
        self.label = label
        self._fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        self._tf = tf

    def info(self) -> Dict[str, Any]:
        return {"backend": self.name, "path": None, "model": self.label}

    def infer(self, crops: np.ndarray) -> np.ndarray:
        y = self._fn(self._tf.constant(normalize_input(np.asarray(crops), self.spec)))
        return y.numpy().reshape(len(crops), -1, 2)

    def close(self) -> None:
        pass


def _records(run_dir: str, cfg, split: str):
    records, _ = kev.load_split(cfg.data["root"], split, cfg)
    return records


def evaluate_file(run_dir: str, path: str, cfg, split: str = "test", log=print) -> Dict[str, Any]:
    """Evaluate an artifact file; write metrics.json[name] with its size and hash. Returns the entry."""
    from tqdm import tqdm

    name = kev.artifact_name(path, split)
    records = _records(run_dir, cfg, split)
    with tqdm(total=len(records), unit="face", desc=name, disable=None, leave=False) as bar:
        result = kev.evaluate_model(path, records, spec=cfg.crop, progress=bar.update)
    meta = {"model": os.path.relpath(path, run_dir), "split": split, "model_bytes": os.path.getsize(path),
            "model_sha256": sha256(path), "data": os.path.abspath(cfg.data["root"]), "limit": None,
            "faces_in_split": len(records)}
    kev.record_evaluation(run_dir, name, result, meta)
    m = result["metrics"]
    log("%-18s NME %.3f%%  FR@0.1 %.2f%%  AUC@0.1 %.4f  (%d %s faces)"
        % (name, 100 * m["nme"], 100 * m["failure_rate"], m["auc"], m["count"], split))
    return m


def evaluate_emulation(run_dir: str, model, name: str, cfg, split: str = "test", log=print,
                       about: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Evaluate an in-memory fake-quant model through runtime.evaluate; metrics.json[name]."""
    from runtime import evaluate as rev

    records = _records(run_dir, cfg, split)
    be = FakeQuantBackend(model, cfg.crop, name)
    result = rev.evaluate(be, records, spec=cfg.crop, batch_size=32)
    meta = {"model": None, "split": split, "model_bytes": None, "emulation": about or {},
            "data": os.path.abspath(cfg.data["root"]), "limit": None, "faces_in_split": len(records)}
    kev.record_evaluation(run_dir, name if split == "test" else "%s_%s" % (name, split), result, meta)
    m = result["metrics"]
    log("%-18s NME %.3f%%  FR@0.1 %.2f%%  AUC@0.1 %.4f  (Keras fake-quant emulation, %d %s faces)"
        % (name, 100 * m["nme"], 100 * m["failure_rate"], m["auc"], m["count"], split))
    return m


def is_stale(run_dir: str, entry: Optional[Dict[str, Any]], path: str) -> bool:
    """True when metrics.json's entry does not describe the file on disk any more."""
    if not entry or not isinstance(entry.get("nme"), (int, float)):
        return True
    if entry.get("model_bytes") is not None and entry["model_bytes"] != os.path.getsize(path):
        return True
    if entry.get("model_sha256"):
        return entry["model_sha256"] != sha256(path)
    import datetime

    at = entry.get("evaluated_at")
    if not at:
        return True
    try:
        when = datetime.datetime.fromisoformat(at).timestamp()
    except ValueError:
        return True
    return os.path.getmtime(path) > when + 1.0
