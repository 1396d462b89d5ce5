"""The report.md sections that describe a run rather than a model file: what was trained on
what (config, data summary, training curves) and what the live pipeline did with it (DMS
stills and a summary of `flm-dpu run --jsonl`).

Everything is read back from files in the run directory (config.json, train_state.json,
log.csv, the overlay video and its JSONL), so `flm report` can regenerate the sections at any
time and they always describe the run as it is on disk.
"""
import json
import os
from collections import Counter
from typing import Any, Dict, List, Optional

from keras_flm.config import RunConfig
from keras_flm.report_md import markdown_table, update_report_section
from keras_flm.run_files import CONFIG_JSON, LOG_CSV, read_state

RUN_SECTION = "Run: config, data, training"
DMS_SECTION = "DMS demo"
CURVES_PNG = "training_curves.png"
STILL_PNG = "dms_still_%d.png"
DEFAULT_VIDEO = "demo_overlay.mp4"
DEFAULT_JSONL = "demo.jsonl"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "%g" % v
    return "–" if v is None else str(v)


def run_markdown(run_dir: str) -> Optional[str]:
    """Config, data summary and training summary + curves; None when the run has no config.json."""
    cfg_path = os.path.join(run_dir, CONFIG_JSON)
    if not os.path.isfile(cfg_path):
        return None
    cfg = RunConfig.load(cfg_path).to_dict()
    state = read_state(run_dir)
    data = cfg.get("data", {})
    parts: List[str] = []

    rows = []
    for group in ("model", "train", "augment", "crop"):
        for k, v in sorted((cfg.get(group) or {}).items()):
            rows.append([group, k, _fmt(v)])
    parts.append("Resolved configuration (`config.json`; defaults in `keras_flm/config.py`):\n\n"
                 + markdown_table(["group", "field", "value"], rows))

    drows = [[k, _fmt(data.get(k))] for k in ("root", "list_faces", "used_faces", "train_faces", "val_faces",
                                                "strategy", "replicas", "mixed_precision") if k in data]
    shares = data.get("attribute_shares") or {}
    if shares:
        drows.append(["attribute shares (train)",
                      ", ".join("%s %.1f %%" % (k, 100 * v) for k, v in sorted(shares.items()))])
    if data.get("euler_deg_abs_mean"):
        drows.append(["mean |yaw|, |pitch|, |roll| (deg)",
                      ", ".join("%.1f" % v for v in data["euler_deg_abs_mean"])])
    versions = cfg.get("versions") or {}
    if versions:
        drows.append(["versions", ", ".join("%s %s" % kv for kv in sorted(versions.items()))])
    parts.append("Data and environment:\n\n" + markdown_table(["item", "value"], drows))

    if state:
        wall = state.get("train_seconds")
        parts.append(
            "Training: %s epochs in %s; best validation NME %.2f %% at epoch %s%s."
            % (state.get("epochs_done", "?"), "%.1f min" % (wall / 60) if wall else "?",
               100 * float(state.get("best_val_nme", float("nan"))), state.get("best_epoch", "?"),
               " (stopped by %s)" % state["stop_reason"] if state.get("stop_reason") else ""))
    log_csv = os.path.join(run_dir, LOG_CSV)
    if os.path.isfile(log_csv) and os.path.getsize(log_csv) > 0:
        from keras_flm.plots import plot_training

        try:
            plot_training(log_csv, os.path.join(run_dir, CURVES_PNG))
            parts.append("![training curves](%s)" % CURVES_PNG)
        except ValueError as e:  # an empty log (killed before the first epoch ended)
            parts.append("(no training curves: %s)" % e)
    return "\n\n".join(parts)


def _summarise_jsonl(path: str) -> Dict[str, Any]:
    frames = with_face = 0
    states: Counter = Counter()
    last: Dict[str, Any] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                raise ValueError("%s:%d: not JSON (%s)" % (path, n, e)) from None
            frames += 1
            faces = rec.get("faces") or []
            if faces:
                with_face += 1
                dms = faces[0].get("dms") or {}
                if dms.get("state"):
                    states[dms["state"]] += 1
                    last = dms
    return {"frames": frames, "with_face": with_face, "states": states, "last": last}


def _stills(video: str, run_dir: str, n: int = 3, width: int = 480) -> List[str]:
    """n evenly spaced frames of the overlay video as PNGs (downscaled to `width`)."""
    import cv2

    cap = cv2.VideoCapture(video)
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if total <= 0:
            return []
        names = []
        for i in range(n):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int((i + 0.5) * total / n))
            ok, frame = cap.read()
            if not ok:
                continue
            h, w = frame.shape[:2]
            if w > width:
                frame = cv2.resize(frame, (width, int(round(h * width / w))), interpolation=cv2.INTER_AREA)
            name = STILL_PNG % (i + 1)
            cv2.imwrite(os.path.join(run_dir, name), frame)
            names.append(name)
        return names
    finally:
        cap.release()


def dms_markdown(run_dir: str, video: Optional[str] = None, jsonl: Optional[str] = None) -> Optional[str]:
    """Stills of the overlay video + the DMS summary of its JSONL; None when neither exists."""
    video = video or os.path.join(run_dir, DEFAULT_VIDEO)
    jsonl = jsonl or os.path.join(run_dir, DEFAULT_JSONL)
    have_video, have_jsonl = os.path.isfile(video), os.path.isfile(jsonl)
    if not (have_video or have_jsonl):
        return None
    parts = ["From `flm-dpu run --output %s --jsonl %s` (overlay: landmarks, face box, EAR/MAR, head pose "
             "and the driver state)." % (os.path.basename(video), os.path.basename(jsonl))]
    if have_jsonl:
        s = _summarise_jsonl(jsonl)
        last = s["last"]
        rows = [["frames", s["frames"]], ["frames with a face", s["with_face"]]]
        rows += [["state '%s' (frames)" % k, v] for k, v in sorted(s["states"].items())]
        for key in ("blinks", "yawns", "perclos", "blink_rate_per_min"):
            if key in last:
                rows.append(["%s (end of video)" % key, _fmt(last[key])])
        parts.append(markdown_table(["measure", "value"], [[a, _fmt(b)] for a, b in rows]))
    if have_video:
        names = _stills(video, run_dir)
        if names:
            parts.append(" ".join("![still %d](%s)" % (i + 1, n) for i, n in enumerate(names)))
    return "\n\n".join(parts)


def write_run_sections(run_dir: str, video: Optional[str] = None, jsonl: Optional[str] = None) -> List[str]:
    """Write (replace) the run and DMS sections of run_dir/report.md; returns the titles written."""
    written = []
    md = run_markdown(run_dir)
    if md:
        update_report_section(run_dir, RUN_SECTION, md, first=True)
        written.append(RUN_SECTION)
    md = dms_markdown(run_dir, video, jsonl)
    if md:
        update_report_section(run_dir, DMS_SECTION, md)
        written.append(DMS_SECTION)
    return written
