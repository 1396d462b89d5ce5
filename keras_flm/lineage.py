"""A run's training summary and the chain of runs and releases it started from (`--init`).

A model card states the whole schedule behind its weights: a run started from a release or from
another run directory carries that start's own summary as `init_training`, recursively. The chain
is snapshotted into the run directory (init_training.json) when training starts, because the
start may be replaced later: a release is rebuilt in place under the same name, and `runs/` is
not kept. Reading the start's files at release time is the fallback for runs made before the
snapshot existed.

Training writes the snapshot and `flm release` (quant/release.py) reads it; both import it from
here, so keras_flm does not depend on quant.
"""
import json
import os
from typing import Any, Dict, Optional, Tuple

from keras_flm.config import RunConfig
from keras_flm.report_md import METRICS_FILE, atomic_write_text, read_json
from keras_flm.run_files import CONFIG_JSON, read_state

#: What a training summary takes from the run's train_state.json; equal values = the same run.
STATE_KEYS = ("epochs_done", "best_epoch", "best_val_nme", "train_seconds", "stop_reason")
#: The summary of a run's --init start, written when the run starts (see the module docstring).
INIT_SNAPSHOT = "init_training.json"
_MAX_DEPTH = 50


def training_summary(run_dir: str, cfg: RunConfig, _depth: int = 0) -> Dict[str, Any]:
    """The run's schedule and outcome, with its start's summary as `init_training` (if any)."""
    st = read_state(run_dir)
    out = dict({k: st.get(k) for k in STATE_KEYS}, width=cfg.model.width, epochs_cap=cfg.train.epochs,
               lr=cfg.train.lr, lr_min=cfg.train.lr_min, batch_size=cfg.train.batch_size,
               time_budget_min=cfg.train.time_budget_min, ema=cfg.train.ema, oversample=cfg.train.oversample,
               init=cfg.train.init, landmark_loss=cfg.train.landmark_loss, bn_momentum=cfg.model.bn_momentum,
               freeze_bn=cfg.train.freeze_bn, policy=cfg.data.get("policy"),
               train_faces=cfg.data.get("train_faces"), val_faces=cfg.data.get("val_faces"),
               extra_train=[{"root": e.get("root"), "faces": e.get("faces")}
                            for e in cfg.data.get("extra_train") or ()])
    if cfg.data.get("turned_val"):  # the best epoch was chosen with turned validation faces
        out.update(turned_val=cfg.data["turned_val"], best_turned_val_nme=st.get("best_turned_val_nme"),
                   best_select=st.get("best_select"))
    snapshot = read_json(os.path.join(run_dir, INIT_SNAPSHOT), None)
    prior = snapshot.get("summary") if snapshot else init_summary(cfg.train.init, _depth)
    # re-releasing a run over the release it started from: that release's summary is this
    # run's own (once per earlier re-release), so its start is further down the chain
    while prior and _same_training(prior, out):
        prior = prior.get("init_training")
    if prior:
        out["init_training"] = prior
    return out


def init_summary(init: Optional[str], _depth: int = 0) -> Optional[Dict[str, Any]]:
    """The training summary of an --init start as its files hold it now: a release's metrics.json
    "training", or a run directory's own summary; an .h5 stands for the directory it lies in
    (`--init runs/NAME/fp32.h5` continues runs/NAME: three sittings of stop 34-35 lost their
    lineage on the card that way); None for a start without one."""
    if init and os.path.isfile(init):
        init = os.path.dirname(os.path.abspath(init))
    if not init or not os.path.isdir(init):
        return None
    prior = read_json(os.path.join(init, METRICS_FILE), {}).get("training")
    init_cfg = os.path.join(init, CONFIG_JSON)
    if prior is None and read_state(init) and os.path.isfile(init_cfg) and _depth < _MAX_DEPTH:
        prior = training_summary(init, RunConfig.load(init_cfg), _depth + 1)  # a run, not a release
    return prior


def snapshot_init(run_dir: str, init: Optional[str]) -> Optional[Dict[str, Any]]:
    """Write the start's summary into the run directory (training start); returns it."""
    prior = init_summary(init)
    if prior is None:
        return None
    # json.dumps as write_state: a start that never improved holds an infinite best NME
    atomic_write_text(os.path.join(run_dir, INIT_SNAPSHOT),
                      json.dumps({"init": init, "summary": prior}, indent=2, sort_keys=True) + "\n")
    return prior


def _same_training(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in STATE_KEYS)


def lineage(tr: Dict[str, Any]) -> Tuple[int, float]:
    """(epochs, training seconds) summed over a summary's chain of starts."""
    epochs, seconds = 0, 0.0
    while tr:
        epochs += tr.get("epochs_done") or 0
        seconds += tr.get("train_seconds") or 0.0
        tr = tr.get("init_training") or {}
    return epochs, seconds
