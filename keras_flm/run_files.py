"""The files of a run directory that training owns, and its resumable state.

Training writes them and the run report reads them back; both import the names from here, so
neither module needs the other.
"""
import json
import os
from typing import Any, Dict

from keras_flm.report_md import atomic_write_text, read_json

CONFIG_JSON = "config.json"
STATE_JSON = "train_state.json"
FP32_H5 = "fp32.h5"
# the inference model at the end of training (EMA weights when --ema): fp32.h5 is the best
# validation epoch's, and a run whose best came early would otherwise lose where it ended
LAST_H5 = "last.h5"
TRAIN_H5 = "train.h5"
LOG_CSV = "log.csv"
CHECKPOINTS = "checkpoints"


def read_state(run_dir: str) -> Dict[str, Any]:
    """train_state.json ({} before the first epoch ends)."""
    return read_json(os.path.join(run_dir, STATE_JSON), {})


def write_state(run_dir: str, state: Dict[str, Any]) -> None:
    """Atomic; tolerates an infinite best NME (no epoch improved yet), which strict JSON cannot hold."""
    atomic_write_text(os.path.join(run_dir, STATE_JSON), json.dumps(state, indent=2, sort_keys=True))
