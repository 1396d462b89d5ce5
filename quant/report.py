"""Table 2 of the paper, regenerated from this run's measurements.

Every number is read from a measurement, never typed in: accuracy columns from
metrics.json (written by `flm eval` / quant's evaluation: the runtime's backends on the
real artifact), sizes from the files on disk (bytes / 1e6), quantization times from
quant.json, export parity from parity.json. An entry of metrics.json that no longer
describes its file (size or hash changed) is re-evaluated (or flagged with --no-evaluate).
"""
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

from keras_flm import evaluate as kev
from keras_flm.report_md import markdown_table, read_metrics, update_report_section
from quant import run as R
from quant.config import GRANULARITIES, comparison_file

SECTION = "Quantization (Table 2)"
PLOT = "quant_table2.png"


def _ptq_rows(filename: str, fmt: str, ref: str) -> Tuple[Tuple[str, str, str, Optional[str]], ...]:
    """A PTQ file's row, then its comparison variants' (PtqConfig.also_other_granularity: a run holds
    at most one; ptq_int8_pc.onnx in runs quantized before stop 37, ptq_int8_pt.onnx since)."""
    return ((filename, "PTQ INT8", fmt, ref),) + tuple(
        (comparison_file(filename, g), "PTQ INT8 " + g, fmt, ref) for g in GRANULARITIES)


#: (file or metrics key, method, format, FP32 file of the same format for the compression ratio)
ROWS: Tuple[Tuple[str, str, str, Optional[str]], ...] = (
    ("fp32.h5", "FP32", "Keras H5", "fp32.h5"),
    ("fp32.tflite", "FP32", "TFLite", "fp32.tflite"),
    ("fp32.onnx", "FP32", "ONNX", "fp32.onnx"),
    *_ptq_rows("ptq_int8.tflite", "TFLite", "fp32.tflite"),
    *_ptq_rows("ptq_int8.onnx", "ONNX QDQ", "fp32.onnx"),
    ("qat_int8.tflite", "QAT INT8", "TFLite", "fp32.tflite"),
    ("qat_int8.onnx", "QAT INT8", "ONNX QDQ", "fp32.onnx"),
    ("ptq_pof2.tflite", "PTQ pof2", "TFLite", "fp32.tflite"),
    ("ptq_pof2_dpu", "PTQ pof2", "DPU emulation", None),
    ("qat_pof2.tflite", "QAT pof2", "TFLite", "fp32.tflite"),
    ("qat_pof2.onnx", "QAT pof2", "ONNX QDQ", "fp32.onnx"),
    ("qat_pof2_dpu", "QAT pof2", "DPU emulation", None),
)

#: The paper's Table 2 (docs/pfld-wflw.md): PyTorch, full WFLW, RTX-class training.
PAPER = (("FP32", 92.42, 6.59, None), ("PTQ INT8", 90.94, 1.65, "~10 min"),
         ("QAT INT8", 91.74, 1.65, "~180 min"))

HEADER = ["model", "method", "format", "NME %", "ΔNME pp", "accuracy %", "FR@0.1 %", "AUC@0.1", "size MB",
          "quant. time", "compression ×"]


def _fmt_time(s: Optional[float]) -> Optional[str]:
    if s is None:
        return None
    return "%.1f s" % s if s < 120 else "%.1f min" % (s / 60.0)


def _label(run_dir: str) -> str:
    try:
        cfg = R.load_config(run_dir)
        act = "ReLU6" if cfg.model.activation == "relu6" else "ReLU"
        return "%s w%g %s" % (os.path.basename(os.path.normpath(run_dir)), cfg.model.width, act)
    except Exception:  # noqa: BLE001 - a label must never break the report
        return os.path.basename(os.path.normpath(run_dir))


def collect(run_dir: str, evaluate: bool = True, log: Callable[[str], Any] = print,
            split: str = "test") -> List[Dict[str, Any]]:
    """One dict per artifact present in the run: metrics, size, time, compression, staleness."""
    from quant.evaluation import evaluate_file, is_stale

    cfg = R.load_config(run_dir)
    metrics = read_metrics(run_dir)
    quant = R.read_run_json(run_dir, R.QUANT_FILE)
    label = _label(run_dir)
    rows = []
    fp32_nme = None
    for key_or_file, method, fmt, ref in ROWS:
        path = os.path.join(run_dir, key_or_file)
        is_file = "." in key_or_file
        if is_file and not os.path.isfile(path):
            continue
        name = kev.artifact_name(path, split) if is_file else (
            key_or_file if split == "test" else "%s_%s" % (key_or_file, split))
        entry = metrics.get(name)
        stale = False
        if is_file and is_stale(run_dir, entry, path):
            if evaluate:
                log("evaluating %s (metrics %s)" % (name, "missing" if not entry else "stale"))
                evaluate_file(run_dir, path, cfg, split, log)
                entry = read_metrics(run_dir).get(name)
            else:
                stale = True
        if not is_file and not entry:
            continue
        size = os.path.getsize(path) if is_file else None
        ref_path = os.path.join(run_dir, ref) if ref else None
        if ref_path and not os.path.isfile(ref_path):
            ref_path = os.path.join(run_dir, "fp32.h5")  # no FP32 file of this format: compare with the H5
        ref_size = os.path.getsize(ref_path) if ref_path and os.path.isfile(ref_path) else None
        q = quant.get(R.artifact_key(path) if is_file else key_or_file, {})
        nme = entry.get("nme") if entry else None
        if method == "FP32" and fmt == "Keras H5":
            fp32_nme = nme
        rows.append({
            "run": run_dir, "label": label, "artifact": name, "file": key_or_file if is_file else None,
            "method": method, "format": fmt, "nme": nme, "accuracy": entry.get("accuracy") if entry else None,
            "failure_rate": entry.get("failure_rate") if entry else None,
            "auc": entry.get("auc") if entry else None,
            "faces": entry.get("count") if entry else None, "bytes": size,
            "quant_s": q.get("wall_s") if method != "FP32" else None,
            "compression": (ref_size / size) if (size and ref_size) else None, "stale": stale,
            "compression_vs": os.path.basename(ref_path) if ref_path else None,
            "settings": q,
        })
    for r in rows:
        known = r["nme"] is not None and fp32_nme is not None
        r["delta_pp"] = 100.0 * (r["nme"] - fp32_nme) if known else None
    return rows


def _ref_of(filename: str) -> Optional[str]:
    return {k: ref for k, _, _, ref in ROWS}.get(filename)


def table(rows: List[Dict[str, Any]]) -> str:
    def pct(v, d=2):
        return None if v is None else "%.*f" % (d, 100.0 * v)

    out = []
    for r in rows:
        out.append([r["label"], r["method"], r["format"],
                    (pct(r["nme"], 3) + (" (stale)" if r["stale"] else "")) if r["nme"] is not None else None,
                    None if r["delta_pp"] is None else "%+.3f" % r["delta_pp"],
                    None if r["accuracy"] is None else "%.2f" % r["accuracy"], pct(r["failure_rate"]),
                    None if r["auc"] is None else "%.4f" % r["auc"],
                    None if r["bytes"] is None else "%.3f" % (r["bytes"] / 1e6), _fmt_time(r["quant_s"]),
                    None if r["compression"] is None else "%.2f%s" % (
                        r["compression"], "" if r["compression_vs"] == (r["file"] and _ref_of(r["file"]))
                        else " (vs %s)" % r["compression_vs"])])
    return markdown_table(HEADER, out)


def plot(rows: List[Dict[str, Any]], path: str, split: str = "test") -> Optional[str]:
    """Two bar panels: NME and artifact size, one bar per row."""
    from keras_flm.plots import _figure, _save

    rows = [r for r in rows if r["nme"] is not None]
    if not rows:
        return None
    names = ["%s\n%s · %s" % (r["label"], r["method"], r["format"]) for r in rows]
    fig = _figure(11, 0.45 * len(rows) + 1.8)
    colors = {"FP32": "#4c72b0", "PTQ": "#dd8452", "QAT": "#55a868"}
    col = [colors.get(r["method"].split()[0], "#8172b3") for r in rows]
    ax1 = fig.add_subplot(1, 2, 1)
    y = list(range(len(rows)))[::-1]
    ax1.barh(y, [100 * r["nme"] for r in rows], color=col)
    ax1.set_yticks(y)
    ax1.set_yticklabels(names, fontsize=7)
    ax1.set_xlabel("NME % (inter-ocular, lower is better)")
    lo = min(100 * r["nme"] for r in rows)
    ax1.set_xlim(max(0.0, lo * 0.9), max(100 * r["nme"] for r in rows) * 1.02)
    for yi, r in zip(y, rows):
        ax1.text(100 * r["nme"], yi, " %.3f" % (100 * r["nme"]), va="center", fontsize=7)
    ax2 = fig.add_subplot(1, 2, 2)
    ax2.barh(y, [(r["bytes"] or 0) / 1e6 for r in rows], color=col)
    ax2.set_yticks(y)
    ax2.set_yticklabels([])
    ax2.set_xlabel("artifact size MB (bytes on disk / 1e6)")
    for yi, r in zip(y, rows):
        if r["bytes"]:
            ax2.text(r["bytes"] / 1e6, yi, " %.2f" % (r["bytes"] / 1e6), va="center", fontsize=7)
    fig.suptitle("Table 2: FP32 vs INT8 (%s split)" % split, fontsize=10)
    return _save(fig, path)


def _notes(rows: List[Dict[str, Any]], run_dir: str) -> str:
    parity = R.read_run_json(run_dir, R.PARITY_FILE)
    lines = []
    for r in rows:
        s = r["settings"]
        if not s or r["method"] == "FP32":
            continue
        bits = []
        if s.get("calib_images"):
            extra = [os.path.basename(str(e).rstrip("/")) for e in s.get("calib_extra_roots") or ()]
            bits.append("%d calibration images%s" % (s["calib_images"], " (training split + %s)"
                                                     % ", ".join(extra) if extra else ""))
        for k in ("granularity", "calibration", "io", "format"):
            if s.get(k) and k != "format":
                bits.append("%s: %s" % (k, s[k]))
        if s.get("reduce_range"):
            bits.append("7-bit weights (reduce_range)")
        if s.get("method") == "qat":
            bits.append("QAT %d epoch(s), best %d, val NME %.4f -> %.4f" % (
                s.get("epochs_run", 0), s.get("best_epoch", 0), s.get("val_nme_before", float("nan")),
                s.get("val_nme_best", float("nan"))))
        if bits:
            lines.append("- `%s`: %s" % (r["file"] or r["artifact"], "; ".join(bits)))
    prow = []
    for key, p in parity.items():
        prow.append([key, p.get("backend"), p.get("crops"), "%.2e" % p["max_abs_diff"],
                     "%.3f" % p["max_abs_diff_px"],
                     "%.2e" % p["mean_abs_diff"],
                     "%.2e" % p["kernel_vs_qdq_float_max_abs_diff"] if "kernel_vs_qdq_float_max_abs_diff" in p
                     else None,
                     {True: "ok", False: "FAILED"}.get(p.get("ok"))])
    out = "\n".join(lines)
    if prow:
        out += ("\n\nExport parity vs the Keras FP32 model on real test crops (max |diff| in crop-normalised "
                "units and in crop pixels; ORT int8 kernels vs the same QDQ graph run in float):\n\n"
                + markdown_table(["artifact", "backend", "crops", "max |diff|", "max px", "mean |diff|",
                                  "ORT kernel vs float QDQ", "FP32 check"], prow))
    return out


def write_report(run_dir: str, evaluate: bool = True, compare: Optional[List[str]] = None,
                 log: Callable[[str], Any] = print, split: str = "test") -> str:
    R.require_run(run_dir)
    rows = collect(run_dir, evaluate, log, split)
    for other in compare or []:
        rows += collect(R.require_run(other), evaluate, log, split)
    if not rows:
        import click

        raise click.ClickException("nothing to report in %s: no fp32.h5 or quantized artifacts" % run_dir)
    plot_name = PLOT if split == "test" else PLOT.replace(".png", "_%s.png" % split)
    png = plot(rows, os.path.join(run_dir, plot_name), split)
    paper = markdown_table(["paper (PyTorch, WFLW)", "accuracy %", "size MB", "quant. time"],
                           [[m, "%.2f" % a, "%.2f" % s, t] for m, a, s, t in PAPER])
    faces = {r["faces"] for r in rows if r["faces"]}
    body = [
        "Measured on the %s split (%s faces) through the runtime's backends; accuracy = 100·(1 − NME); "
        "ΔNME = NME − NME of this run's FP32 Keras model, in percentage points; size = bytes on disk / 1e6; "
        "compression = FP32 file of the same format / this file; quant. time = wall time of calibration + "
        "conversion (PTQ) or of calibration + fine-tuning + export (QAT), from quant.json. "
        "'DPU emulation' rows run the pof2 fake-quant Keras model (power-of-two scales, DPU rounding and "
        "average-pooling gain) through the same evaluation."
        % (split, ", ".join(str(f) for f in sorted(faces))),
        table(rows),
        "![Table 2](%s)" % plot_name if png else "",
        paper,
        _notes(rows, run_dir),
    ]
    title = SECTION if split == "test" else "%s, %s split" % (SECTION, split)
    path = update_report_section(run_dir, title, "\n\n".join(b for b in body if b))
    log("\n" + table(rows))
    log("wrote the %r section of %s and %s" % (title, path, plot_name))
    return path
