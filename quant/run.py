"""The run directory as quant sees it: inputs it needs (with clear errors) and the JSON
records it keeps (quant.json: how and how fast each artifact was made; parity.json:
export parity checks).

Artifacts are named `<stem>.<ext>`. quant.json and parity.json key them by
`artifact_key` (independent of which siblings exist); metrics.json uses `flm eval`'s
names (keras_flm.evaluate.artifact_name).
"""
import os
from typing import Any, Dict

import click

from keras_flm.config import RunConfig
from keras_flm.report_md import atomic_write_json, locked, read_json

CONFIG_FILE = "config.json"
FP32_H5 = "fp32.h5"
QUANT_FILE = "quant.json"
PARITY_FILE = "parity.json"
#: Training-model files train.py may leave (first found wins): the model with the aux head.
TRAIN_MODEL_FILES = ("train.h5",)


def require_file(path: str, what: str, hint: str = "") -> str:
    """Return `path` or raise a ClickException naming the missing file (and how to make it)."""
    if not os.path.isfile(path):
        raise click.ClickException("%s not found: %s%s" % (what, path, (" (%s)" % hint) if hint else ""))
    return path


def require_run(run_dir: str) -> str:
    if not os.path.isdir(run_dir):
        raise click.ClickException("run directory not found: %s (train one with `flm train --run %s`)"
                                   % (run_dir, run_dir))
    return run_dir


def load_config(run_dir: str) -> RunConfig:
    path = require_file(os.path.join(require_run(run_dir), CONFIG_FILE), "run config",
                        "written by `flm train`")
    try:
        return RunConfig.load(path)
    except (ValueError, TypeError) as e:
        raise click.ClickException("%s is not a valid run config: %s" % (path, e)) from None


def fp32_path(run_dir: str) -> str:
    """The trained inference model; a missing one is the usual first mistake."""
    return require_file(os.path.join(require_run(run_dir), FP32_H5), "trained FP32 model",
                        "no trained model in this run: run `flm train --run %s` first" % run_dir)


def training_model_path(run_dir: str) -> str:
    """The training model (landmarks + aux pose head) saved by training, for QAT."""
    for rel in TRAIN_MODEL_FILES:
        p = os.path.join(run_dir, rel)
        if os.path.isfile(p):
            return p
    raise click.ClickException("no training model (with the pose head) in %s: looked for %s (written by "
                               "`flm train`)" % (run_dir, ", ".join(TRAIN_MODEL_FILES)))


def artifact(run_dir: str, name: str) -> str:
    return os.path.join(run_dir, name)


def artifact_key(filename: str) -> str:
    """quant.json / parity.json key of an artifact file: the stem, "_onnx" appended for ONNX
    (ptq_int8.tflite -> ptq_int8, ptq_int8.onnx -> ptq_int8_onnx), fp32_tflite / fp32_onnx."""
    stem, ext = os.path.splitext(os.path.basename(filename))
    if ext == ".onnx" or (ext == ".tflite" and stem == "fp32"):
        return "%s_%s" % (stem, ext[1:])
    return stem


def _update(run_dir: str, filename: str, key: str, entry: Dict[str, Any]) -> Dict[str, Any]:
    path = os.path.join(run_dir, filename)
    with locked(path):
        try:
            data: Dict[str, Any] = read_json(path, {})
        except ValueError as e:
            raise click.ClickException(str(e)) from None
        data[key] = entry
        atomic_write_json(path, data)
    return data


def record_quant(run_dir: str, key: str, entry: Dict[str, Any]) -> Dict[str, Any]:
    """quant.json[key] = entry (method, settings, wall seconds, file, bytes)."""
    return _update(run_dir, QUANT_FILE, key, entry)


def record_parity(run_dir: str, key: str, entry: Dict[str, Any]) -> Dict[str, Any]:
    return _update(run_dir, PARITY_FILE, key, entry)


def read_run_json(run_dir: str, filename: str) -> Dict[str, Any]:
    """RUN/filename ({} when absent; ValueError naming file and line when damaged)."""
    return read_json(os.path.join(run_dir, filename), {})
