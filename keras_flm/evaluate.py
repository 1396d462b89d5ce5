"""Run-level evaluation: score a model file of a run and record it in the run's report.

The scoring itself is `runtime.evaluate` (the code the board runs too); this module
picks the records (test list, or the training run's own validation split), names
the artifact, and writes metrics.json, eval/<artifact>.csv (per-face NMEs), the
plots and the "Evaluation" section of report.md. Other steps (quantization) call
`evaluate_model` + `record_evaluation` to add their artifacts the same way.

No TensorFlow here: a Keras model is loaded by the keras backend only when asked.
"""
import csv
import datetime
import io
import os
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from keras_flm.config import RunConfig
from keras_flm.report_md import (
    atomic_write_text,
    markdown_table,
    read_metrics,
    update_metrics,
    update_report_section,
)
from runtime import evaluate as rev
from runtime.landmarks import ATTRIBUTES
from runtime.metrics import subset_order
from runtime.preprocess import DEFAULT_SPEC, CropSpec

SECTION = "Evaluation"
EVAL_DIR = "eval"
BASELINE = "mean_shape"
SPLITS = ("test", "val")
DEFAULT_MODEL = "fp32.h5"

#: Formats in order of precedence for the plain artifact name (see `artifact_name`).
FORMATS = ((".h5", "keras"), (".keras", "keras"), (".tflite", "tflite"), (".onnx", "onnx"),
           (".xmodel", "dpu"))


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class EvalError(Exception):
    """A user-facing problem (missing run, model, data); the CLI shows the message."""


def artifact_name(model_path: str, split: str = "test") -> str:
    """Default metrics.json key of a model file.

    The file stem (fp32, ptq_int8, qat_int8, ...), unless a sibling with the same stem
    and a higher-precedence format exists (h5 > tflite > onnx > xmodel): then the
    format is appended, so fp32.h5 -> "fp32" but fp32.tflite -> "fp32_tflite" and
    ptq_int8.onnx -> "ptq_int8_onnx". Non-test splits get a suffix ("fp32_val") so
    validation numbers never overwrite test numbers.
    """
    d, base = os.path.split(os.path.abspath(model_path))
    stem, ext = os.path.splitext(base)
    exts = [e for e, _ in FORMATS]
    tag = dict(FORMATS).get(ext.lower(), ext.lower().lstrip(".") or "model")
    higher = exts[:exts.index(ext.lower())] if ext.lower() in exts else exts
    name = stem
    if any(os.path.isfile(os.path.join(d, stem + e)) for e in higher if e != ext.lower()):
        name = "%s_%s" % (stem, tag)
    return name if split == "test" else "%s_%s" % (name, split)


def check_name(name: str) -> str:
    """An artifact name must be usable as a file name (eval/<name>.csv) and a JSON key."""
    if not _NAME.match(name or ""):
        raise EvalError("artifact name %r: use letters, digits and . _ - + only" % (name,))
    return name


def run_config(run_dir: str, required: bool) -> Tuple[RunConfig, Optional[str]]:
    """The run's config.json; without one, defaults and a warning (or an error when required)."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        if required:
            raise EvalError("%s not found: the validation split needs the run's seed and val_fraction "
                            "(was the run created by `flm train`?)" % path)
        return RunConfig(), "no %s: using default crop spec and settings" % path
    try:
        return RunConfig.load(path), None
    except (ValueError, TypeError, KeyError) as e:
        raise EvalError("%s is not a valid run config: %s" % (path, e)) from None


def resolve_model(run_dir: str, model: Optional[str]) -> str:
    """Model file: --model as given, else inside the run dir, else RUN/fp32.h5."""
    if model is None:
        path = os.path.join(run_dir, DEFAULT_MODEL)
        if not os.path.isfile(path):
            raise EvalError("model file not found: %s (train the run first, or pass --model FILE)" % path)
        return path
    for cand in (model, os.path.join(run_dir, model)):
        if os.path.exists(cand):  # a file, or a board bundle directory
            return cand
    raise EvalError("model file not found: %s (also looked in %s)" % (model, run_dir))


def split_faces(data_root: str, split: str, run: Optional[str] = None) -> List[Any]:
    """The faces of `split` for a script: "val" = the validation faces of the training run (or
    release) `run`, rebuilt from its config.json; "test"/"train" = that list (no run). Why one
    place: the tracking and video scripts choose on validation faces exactly as training held them
    out. Raises EvalError naming what is wrong."""
    from runtime import wflw

    if (split == "val") != (run is not None):
        raise EvalError("split 'val' needs a run (whose validation faces to use), "
                        "and a run goes only with it")
    if split == "val":
        cfg_path = os.path.join(run, "config.json")
        if not os.path.isfile(cfg_path):
            raise EvalError("%s not found (the run must be a training run or release directory)" % cfg_path)
        return load_split(data_root, "val", RunConfig.load(cfg_path))[0]
    try:
        return wflw.read_annotations(data_root, split)
    except wflw.AnnotationError as e:
        raise EvalError(str(e)) from None


def load_split(data_root: str, split: str, cfg: RunConfig,
               need_train: bool = False) -> Tuple[List[Any], Optional[List[Any]]]:
    """(faces to evaluate, training faces or None) for `split`.

    "val" rebuilds the training run's validation split from the train list with the
    run's seed and val_fraction (runtime.wflw.split_train_val), so it is the same
    faces training held out. `need_train` also returns the training faces (for the
    mean-shape baseline): the whole train list for "test", the train part for "val".
    """
    from runtime import wflw

    if split not in SPLITS:
        raise EvalError("split must be one of %s, got %r" % (", ".join(SPLITS), split))
    try:
        if split == "test":
            faces = wflw.read_annotations(data_root, "test")
            # the mean-shape baseline is the --data root's alone (not cfg.train.extra_train): runs compare
            train = wflw.read_annotations(data_root, "train", check_images=False) if need_train else None
            return faces, train
        all_train = wflw.read_annotations(data_root, "train")
    except wflw.AnnotationError as e:
        raise EvalError(str(e)) from None
    # The same selection as keras_flm.train.load_data: optional deterministic subset, then the split.
    t = cfg.train
    _, train, val = wflw.run_split(all_train, t.seed, t.val_fraction, t.max_images)
    if not val:
        raise EvalError("the run's val_fraction=%r leaves no validation faces" % t.val_fraction)
    expected = cfg.data.get("val_faces")
    if expected is not None and int(expected) != len(val):
        raise EvalError("rebuilt validation split has %d faces but training used %s: is --data the root "
                        "the run was trained on (%s)?" % (len(val), expected, cfg.data.get("root")))
    return val, (train if need_train else None)


def evaluate_model(model_path: str, records: Sequence[Any], spec: CropSpec = DEFAULT_SPEC,
                   backend: Optional[str] = None, batch_size: int = 32, threads: Optional[int] = None,
                   box: str = "landmarks", progress: Optional[Callable[[int], Any]] = None) -> Dict[str, Any]:
    """Load `model_path` with runtime.backends and score it with runtime.evaluate.evaluate."""
    from runtime.backends import BackendError, load_backend

    try:
        be = load_backend(model_path, backend=backend, spec=spec, threads=threads)
    except BackendError as e:
        raise EvalError(str(e)) from None
    try:
        return rev.evaluate(be, records, spec=spec, batch_size=batch_size, box=box, progress=progress)
    finally:
        be.close()


def write_per_face(run_dir: str, name: str, result: Dict[str, Any]) -> str:
    """eval/<name>.csv: image, NME and attribute flags of every face (find the failures here)."""
    d = os.path.join(run_dir, EVAL_DIR)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, name + ".csv")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["index", "image", "nme"] + list(ATTRIBUTES))
    attrs = result.get("attributes")
    for i, (img, n) in enumerate(zip(result["images"], result["nmes"])):
        flags = [""] * len(ATTRIBUTES) if attrs is None else [int(v) for v in attrs[i]]
        w.writerow([i, img, "%.6f" % float(n)] + flags)
    atomic_write_text(path, buf.getvalue())
    return path


def read_per_face_nmes(run_dir: str, entry: Dict[str, Any]) -> Optional[np.ndarray]:
    """Per-face NMEs of a metrics.json entry from its CSV, or None if it has none."""
    rel = entry.get("per_face")
    path = os.path.join(run_dir, rel) if rel else None
    if not path or not os.path.isfile(path):
        return None
    with open(path, newline="", encoding="utf-8") as f:
        return np.array([float(r["nme"]) for r in csv.DictReader(f)], np.float64)


def evaluation_entries(all_metrics: Dict[str, Dict[str, Any]],
                       split: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
    """The metrics.json entries that hold an evaluation (optionally of one split), in file order."""
    return {k: v for k, v in all_metrics.items()
            if isinstance(v.get("nme"), (int, float)) and "regions" in v
            and (split is None or v.get("split", "test") == split)}


def _pct(v: Optional[float], digits: int = 2) -> Optional[str]:
    return None if v is None else "%.*f" % (digits, 100.0 * v)


def table_rows(entries: Dict[str, Dict[str, Any]]) -> Tuple[List[str], List[List[Any]]]:
    header = ["artifact", "split", "faces", "NME %", "accuracy %", "FR@0.1 %", "AUC@0.1", "backend",
              "ms/face"]
    rows = []
    for name, e in entries.items():
        ms = (e.get("timing") or {}).get("infer_ms_per_face")
        rows.append([name, e.get("split", "?"), e.get("count"), _pct(e.get("nme")),
                     None if e.get("accuracy") is None else "%.2f" % e["accuracy"],
                     _pct(e.get("failure_rate")), None if e.get("auc") is None else "%.4f" % e["auc"],
                     (e.get("source") or {}).get("backend"), None if not ms else "%.2f" % ms])
    return header, rows


def attribute_rows(entries: Dict[str, Dict[str, Any]]) -> Tuple[List[str], List[List[Any]]]:
    subsets = list(subset_order())
    header = ["artifact (NME %)", "full"] + subsets
    rows = []
    for name, e in entries.items():
        a = e.get("attributes", {})
        rows.append([name, _pct(e.get("nme"))] + [_pct(a.get(s, {}).get("nme")) for s in subsets])
    return header, rows


def format_text_table(header: List[str], rows: List[List[Any]]) -> str:
    """Fixed-width console table."""
    cells = [[("-" if v is None else str(v)) for v in r] for r in [header] + rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]])


def plot_names(split: str) -> Dict[str, str]:
    suffix = "" if split == "test" else "_" + split
    return {"ced": "ced%s.png" % suffix, "attributes": "attributes%s.png" % suffix,
            "regions": "regions%s.png" % suffix}


def render_plots(run_dir: str, all_metrics: Dict[str, Dict[str, Any]]) -> List[str]:
    """ced/attributes/regions PNGs per split, over every artifact evaluated so far."""
    from keras_flm import plots

    written = []
    for split in SPLITS:
        entries = evaluation_entries(all_metrics, split)
        if not entries:
            continue
        names = plot_names(split)
        curves = {}
        for k, e in entries.items():
            nmes = read_per_face_nmes(run_dir, e)
            if nmes is not None and nmes.size:
                curves[k] = nmes
        if curves:
            written.append(plots.plot_ced(curves, os.path.join(run_dir, names["ced"]),
                                          title="CED on the %s split" % split))
        written.append(plots.plot_attributes(entries, os.path.join(run_dir, names["attributes"])))
        written.append(plots.plot_regions(entries, os.path.join(run_dir, names["regions"])))
    return written


def evaluation_markdown(run_dir: str, all_metrics: Dict[str, Dict[str, Any]]) -> str:
    """Body of the report's Evaluation section: tables and plots per split."""
    parts = ["WFLW protocol: NME normalised by the outer eye corners (points 60/72); FR@0.1 = share of "
             "faces with NME > 0.1; AUC@0.1 = Simpson area under the CED on [0, 0.1] / 0.1; "
             "accuracy = 100·(1 − NME). Every artifact is cropped, run and decoded by the same runtime "
             "code (`runtime.evaluate`), so FP32 and INT8 rows compare like for like. `%s` predicts the "
             "mean training shape in every crop: a model must beat it by a wide margin. Per-face NMEs: "
             "`%s/<artifact>.csv`. ms/face is the inference time seen during evaluation on a shared CPU, "
             "not a benchmark (see `flm bench`)." % (BASELINE, EVAL_DIR)]
    for split in SPLITS:
        entries = evaluation_entries(all_metrics, split)
        if not entries:
            continue
        first = next(iter(entries.values()))
        parts.append("### %s split (%s faces, boxes from %s)" % (split, first.get("count"), first.get("box")))
        parts.append(markdown_table(*table_rows(entries)))
        parts.append(markdown_table(*attribute_rows(entries)))
        names = plot_names(split)
        imgs = [("CED", names["ced"]), ("NME per subset", names["attributes"]),
                ("NME per region", names["regions"])]
        parts.append("\n".join("![%s](%s)" % (alt, f) for alt, f in imgs
                               if os.path.isfile(os.path.join(run_dir, f))))
    return "\n\n".join(p for p in parts if p)


def record_evaluation(run_dir: str, name: str, result: Dict[str, Any],
                      meta: Optional[Dict[str, Any]] = None) -> Dict[str, Dict[str, Any]]:
    """Write one evaluation into the run: eval/<name>.csv, metrics.json[name], plots, report section.

    Returns the whole metrics.json after the merge.
    """
    csv_path = write_per_face(run_dir, name, result)
    entry = rev.summary(result)
    entry.update(meta or {})
    entry["per_face"] = os.path.relpath(csv_path, run_dir)
    entry["evaluated_at"] = datetime.datetime.now().isoformat(timespec="seconds")
    all_metrics = update_metrics(run_dir, name, entry)
    render_plots(run_dir, all_metrics)
    update_report_section(run_dir, SECTION, evaluation_markdown(run_dir, all_metrics))
    return all_metrics


def current_metrics(run_dir: str) -> Dict[str, Dict[str, Any]]:
    try:
        return read_metrics(run_dir)
    except ValueError as e:
        raise EvalError(str(e)) from None
