"""`flm release`: a trained and quantized run -> models/NAME, the model flm-dpu runs by default.

A release holds the FP32 H5 and the INT8 PTQ/QAT TFLite and ONNX exports, the run's
config.json, a metrics.json measured here on the release's own files (so a test can
reproduce it from them), MODEL_CARD.md and a meta.json in the board-bundle format
(runtime/bundle.py): `flm-dpu --model models/NAME` and the default model resolution
(runtime/release.py) read it like a bundle, and `flm vitis ... --run models/NAME` treats it
like a run directory (config.json + fp32.h5).

It is built in a scratch directory beside the target and swapped in whole: a failed release
leaves the previous one untouched, and a new one replaces it rather than adding a copy.
"""
import datetime
import json
import os
import shutil
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from keras_flm import evaluate as kev
from keras_flm.config import RunConfig, describe_augment
from keras_flm.lineage import lineage, training_summary
from keras_flm.report_md import (
    METRICS_FILE,
    atomic_write_json,
    atomic_write_text,
    markdown_table,
    read_json,
    read_metrics,
    replace_path,
    scratch_dir,
)
from keras_flm.shared_tree import display_path
from quant.bench import FOREIGN_METHOD
from runtime.bundle import FORMAT, FORMAT_VERSION, META, file_md5
from runtime.landmarks import ATTRIBUTES
from runtime.metrics import SUBSET_NAMES
from runtime.release import RELEASE_NAME
from runtime.stability import recrop_verdict

#: (file, precision, format) of every model a release carries, in table order. "{granularity}" is
#: filled from the file itself (format_label): a release built from an older run says what it holds.
MODEL_FILES: Tuple[Tuple[str, str, str], ...] = (
    ("fp32.h5", "FP32", "Keras H5"),
    ("ptq_int8.tflite", "PTQ INT8", "TFLite"),
    ("ptq_int8.onnx", "PTQ INT8", "ONNX QDQ (U8S8, 7-bit weights{granularity})"),
    ("qat_int8.tflite", "QAT INT8", "TFLite"),
    ("qat_int8.onnx", "QAT INT8", "ONNX QDQ (U8S8, 7-bit weights{granularity})"),
)
#: The files each host engine may run (bundle "models"), first = the choice when validation cannot
#: decide. ONNX Runtime is the default host engine (runtime.bundle.HOST_ORDER); both INT8 ONNX files
#: are ORT U8S8 QDQ (its fast kernels), so accuracy on the validation split decides (host_models).
HOST_CANDIDATES = {"onnx": ("ptq_int8.onnx", "qat_int8.onnx"),
                   "tflite": ("qat_int8.tflite", "ptq_int8.tflite"),
                   "keras": ("fp32.h5",)}
#: DPU emulation rows copied from the run's metrics.json (no file: a fake-quant Keras model).
EMULATIONS = (("ptq_pof2_dpu", "PTQ pof2 (DPU emulation)"), ("qat_pof2_dpu", "QAT pof2 (DPU emulation)"))
#: Extra files copied when the run has them: ptq_pof2.tflite is the DPU's power-of-two PTQ as a
#: full-integer TFLite (`flm-dpu run --model models/NAME/ptq_pof2.tflite`); its MSE-searched ranges
#: kept the wing-loss release within 0.02 pp of FP32 on validation where the default PTQ lost 2 pp.
EXTRA_FILES = ("training_curves.png", "ptq_pof2.tflite")
MAX_BYTES = 15 * 1024 * 1024
MISSING_HINT = {
    "fp32.h5": "flm train --run RUN",
    "ptq_int8.tflite": "flm quantize ptq --run RUN",
    "ptq_int8.onnx": "flm export onnx --run RUN && flm quantize ptq --run RUN",
    "qat_int8.tflite": "flm quantize qat --run RUN",
    "qat_int8.onnx": "flm quantize qat --run RUN",
    "config.json": "flm train --run RUN",
}

Log = Callable[[str], Any]


class ReleaseError(ValueError):
    """The run cannot be released as asked (missing artifacts, data, too large)."""


def check_run(run_dir: str) -> None:
    """Every file a release needs is in the run, or a ReleaseError listing what makes each."""
    missing = [f for f in [m[0] for m in MODEL_FILES] + ["config.json"]
               if not os.path.isfile(os.path.join(run_dir, f))]
    if missing:
        raise ReleaseError("%s lacks %s; make them with:\n%s" % (
            run_dir, ", ".join(missing),
            "\n".join("  %s: %s" % (f, MISSING_HINT[f].replace("RUN", run_dir)) for f in missing)))


def format_label(fmt: str, path: str) -> str:
    """`fmt` (a MODEL_FILES format) with its "{granularity}" placeholder filled from the ONNX file at
    `path` (" per channel" / " per tensor"; runs quantized before stop 37 hold per-tensor weights)."""
    if "{granularity}" not in fmt:
        return fmt
    from quant.inspect_model import onnx_weight_granularity
    granularity = onnx_weight_granularity(path)
    return fmt.replace("{granularity}", " " + granularity.replace("-", " ") if granularity else "")


def _scores(result: Dict[str, Any]) -> Dict[str, Any]:
    m = result["metrics"]
    out = {k: m.get(k) for k in ("count", "nme", "failure_rate", "auc")}
    out["attributes"] = {k: {kk: v.get(kk) for kk in ("count", "nme", "failure_rate", "auc")}
                         for k, v in (m.get("attributes") or {}).items() if isinstance(v, dict)}
    return out


def evaluate_release_models(root: str, spec: Any, test: Sequence[Any], val: Optional[Sequence[Any]],
                            log: Log = print) -> Dict[str, Dict[str, Any]]:
    """{file: {precision, format, bytes, test: scores, val_nme}} from the files in `root` (each loaded
    once for both splits; their md5 sums go to meta.json)."""
    from runtime import evaluate as rev
    from runtime.backends import BackendError, load_backend

    out = {}  # type: Dict[str, Dict[str, Any]]
    for fname, precision, fmt in MODEL_FILES:
        path = os.path.join(root, fname)
        entry = {"precision": precision, "format": format_label(fmt, path), "bytes": os.path.getsize(path)}
        try:
            be = load_backend(path, spec=spec)
        except BackendError as e:
            raise ReleaseError(str(e)) from None
        try:
            entry["test"] = _scores(rev.evaluate(be, test, spec=spec))
            if val:
                entry["val_nme"] = rev.evaluate(be, val, spec=spec)["metrics"]["nme"]
        finally:
            be.close()
        log("  %-16s test NME %.3f %%%s" % (fname, 100 * entry["test"]["nme"],
                                           "" if not val else ", val NME %.3f %%" % (100 * entry["val_nme"])))
        out[fname] = entry
    return out


def mirror_scores(root: str, fname: str, spec: Any, test: Sequence[Any], val: Optional[Sequence[Any]],
                  log: Log = print) -> Dict[str, Any]:
    """The host default's scores with mirror averaging (`flm-dpu run|eval --mirror`, two inferences
    per face): the card states what the second inference buys, measured on the released file."""
    from runtime import evaluate as rev
    from runtime.backends import load_backend

    be = load_backend(os.path.join(root, fname), spec=spec, mirror=True)
    try:
        out = {"model": fname, "test": _scores(rev.evaluate(be, test, spec=spec))}  # type: Dict[str, Any]
        if val:
            out["val_nme"] = rev.evaluate(be, val, spec=spec)["metrics"]["nme"]
    finally:
        be.close()
    log("  %-16s test NME %.3f %% with --mirror" % (fname, 100 * out["test"]["nme"]))
    return out


def emulation_rows(run_metrics: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """The run's pof2 DPU-emulation scores (test, and val when recorded), by artifact name."""
    out = {}
    for key, label in EMULATIONS:
        e = run_metrics.get(key)
        if not e or e.get("nme") is None:
            continue
        row = {"label": label, "test": {k: e.get(k) for k in ("count", "nme", "failure_rate", "auc")}}
        v = run_metrics.get(key + "_val")
        if v and v.get("nme") is not None:
            row["val_nme"] = v["nme"]
        out[key] = row
    return out


def speed_rows(run_dir: str) -> Optional[Dict[str, Any]]:
    """Batch-1 latency and pipeline FPS per artifact (and foreign model) from the run's bench.json."""
    bench = read_json(os.path.join(run_dir, "bench.json"), None)
    if bench is None:
        return None
    rows = []
    for r in bench.get("rows", []):
        if r.get("p50_ms") is None:
            continue
        rows.append({"name": r.get("name"), "method": r.get("method"),
                     "engine": "%s / %s" % (r.get("format"), r.get("engine_label")),
                     "size_mb": r.get("size_mb"),
                     "nme": (r.get("accuracy") or {}).get("nme"), "p50_ms": r.get("p50_ms"),
                     "images_per_s_b1": (r.get("images_per_s") or {}).get("1"),
                     "pipeline_fps": r.get("pipeline_fps"), "foreign_spec": r.get("foreign_spec")})
    return {"machine": bench.get("machine"), "created": bench.get("created"), "rows": rows}


def host_models(models: Dict[str, Dict[str, Any]]) -> Dict[str, str]:
    """{engine: file} -- per engine, the candidate with the lowest validation NME among the scored
    `models` (evaluate_release_models); the first candidate when none has a validation score."""
    out = {}
    for engine, candidates in HOST_CANDIDATES.items():
        scored = [c for c in candidates if (models.get(c) or {}).get("val_nme") is not None]
        out[engine] = min(scored, key=lambda c: models[c]["val_nme"]) if scored else candidates[0]
    return out


def run_default_int8(run_dir: str) -> str:
    """The INT8 ONNX a release of `run_dir` will default to, from the run's own validation scores
    (metrics.json): scripts/release_full.sh measures tracking and video on that file."""
    scores = read_metrics(run_dir)
    models = {}
    for f in HOST_CANDIDATES["onnx"]:
        val = scores.get(kev.artifact_name(os.path.join(run_dir, f), "val"))
        models[f] = {"val_nme": (val or {}).get("nme")}
    return host_models(models)["onnx"]


def _file_records(root: str) -> Dict[str, Dict[str, Any]]:
    """meta.json's "files": md5 and size of every file in `root` but meta.json itself."""
    return {f: {"md5": file_md5(os.path.join(root, f)), "bytes": os.path.getsize(os.path.join(root, f))}
            for f in sorted(os.listdir(root)) if f != META}


def _meta(name: str, cfg: RunConfig, files: Dict[str, Dict[str, Any]], run_dir: str,
          hosts: Dict[str, str]) -> Dict[str, Any]:
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "crop": cfg.crop.to_dict(),
            "models": dict(hosts), "files": files,
            "release": {"name": name, "source_run": os.path.abspath(run_dir), "created": created}}


def release_faces(cfg: RunConfig, data_root: Optional[str] = None,
                  log: Log = print) -> Tuple[str, List[Any], Optional[List[Any]]]:
    """(root, test faces, validation faces or None) a release is scored on: `data_root`, else the
    root the run was trained on. ReleaseError without a root; EvalError without a test split."""
    root = data_root or cfg.data.get("root")
    if not root or not os.path.isdir(root):
        raise ReleaseError("data root %r not found: pass --data (the WFLW-layout root the run was trained on)"
                           % root)
    test, _ = kev.load_split(root, "test", cfg)
    try:
        val, _ = kev.load_split(root, "val", cfg)
    except kev.EvalError as e:
        log("no validation numbers: %s" % e)
        val = None
    return root, test, val


def build_release(run_dir: str, name: str = RELEASE_NAME, out_root: str = "models",
                  data_root: Optional[str] = None, tracking: Optional[Dict[str, Any]] = None,
                  weaknesses: Sequence[str] = (), log: Log = print) -> str:
    """Write out_root/name from run_dir (see the module docstring); returns the release path."""
    check_run(run_dir)
    cfg = RunConfig.load(os.path.join(run_dir, "config.json"))
    root, test, val = release_faces(cfg, data_root, log)
    target = os.path.join(out_root, name)
    with scratch_dir(out_root) as tmp:  # swapped in whole at the end; removed on any error
        for fname in [m[0] for m in MODEL_FILES] + ["config.json"] + list(EXTRA_FILES):
            src = os.path.join(run_dir, fname)
            if os.path.isfile(src):
                shutil.copy2(src, os.path.join(tmp, fname))
        log("scoring the release's models on %d test and %d val faces" % (len(test), len(val or [])))
        models = evaluate_release_models(tmp, cfg.crop, test, val, log)
        hosts = host_models(models)
        log("host default: %s (ONNX Runtime), %s (TFLite)%s"
            % (hosts["onnx"], hosts["tflite"], "" if val else ", no validation to choose by"))
        metrics = {
            "release": name, "test_data": {"root": os.path.basename(os.path.normpath(root)), "split": "test",
                                           "faces": len(test)},
            "val_faces": len(val or []), "models": models,
            "emulation": emulation_rows(read_metrics(run_dir)),
            "training": training_summary(run_dir, cfg), "speed": speed_rows(run_dir),
            "tracking": tracking, "default_int8": hosts["onnx"], "host_models": hosts,
            "mirror": mirror_scores(tmp, hosts["onnx"], cfg.crop, test, val, log),
            "weaknesses": list(weaknesses),  # kept so the card re-renders from metrics.json alone
        }
        atomic_write_json(os.path.join(tmp, METRICS_FILE), metrics)
        atomic_write_text(os.path.join(tmp, "MODEL_CARD.md"), model_card(metrics, cfg))
        files = _file_records(tmp)
        atomic_write_json(os.path.join(tmp, META), _meta(name, cfg, files, run_dir, hosts))
        total = sum(r["bytes"] for r in files.values()) + os.path.getsize(os.path.join(tmp, META))
        if total > MAX_BYTES:
            raise ReleaseError("release would be %.1f MB, over the %.0f MB limit" % (total / 2 ** 20,
                                                                                  MAX_BYTES / 2 ** 20))
        replace_path(tmp, target)
    log("wrote %s (%.2f MB)" % (target, total / 2 ** 20))
    return target


# ------------------------------------------------------------------------------ model card

def _lineage_lines(tr: Dict[str, Any]) -> List[str]:
    prior = tr.get("init_training")
    if not prior:
        return []
    epochs, seconds = lineage(tr)
    steps, p, oldest = [], prior, prior
    while p:
        steps.append("%s epochs (%.1f h)%s" % (p.get("epochs_done"), (p.get("train_seconds") or 0) / 3600.0,
                                               "" if not p.get("init") else ", from `%s`"
                                               % display_path(p["init"])))
        oldest, p = p, p.get("init_training")
    # the oldest recorded step started from weights whose own schedule was not kept (an .h5, or
    # a run directory gone before snapshots existed): the sum is a lower bound, and says so
    unknown = oldest.get("init")
    total = "%s%d epochs, %.1f CPU-hours%s" % ("at least " if unknown else "", epochs, seconds / 3600.0,
                                               " (the schedule behind `%s` was not recorded)"
                                               % display_path(unknown)
                                               if unknown else "")
    return ["- Before that, newest first: %s. In all: %s." % ("; ".join(steps), total)]


def _pct(v: Optional[float]) -> str:
    return "–" if v is None else "%.2f" % (100.0 * v)


def _results_table(metrics: Dict[str, Any]) -> str:
    rows = []  # type: List[List[Any]]
    for fname, e in metrics["models"].items():
        t = e["test"]
        rows.append(["`%s`" % fname, e["precision"], e["format"], _pct(t["nme"]), _pct(t["failure_rate"]),
                     "%.3f" % t["auc"], _pct(e.get("val_nme")), "%.2f" % (e["bytes"] / 1e6)])
    for _, e in (metrics.get("emulation") or {}).items():
        t = e["test"]
        rows.append([e["label"], "INT8 pof2", "Keras fake-quant", _pct(t["nme"]), _pct(t["failure_rate"]),
                     "–" if t.get("auc") is None else "%.3f" % t["auc"], _pct(e.get("val_nme")), "–"])
    return markdown_table(["model", "precision", "format", "test NME %", "FR@0.1 %", "AUC@0.1", "val NME %",
                           "size MB"], rows)


def _mirror_lines(mirror: Optional[Dict[str, Any]]) -> List[str]:
    if not mirror:  # releases built before `flm release` measured it
        return []
    t = mirror["test"]
    return ["With mirror averaging (`flm-dpu run|eval --mirror`: each face also read from its mirrored crop, "
            "two inferences per face, half the model throughput), `%s` scores test NME %s %% (FR@0.1 %s %%, "
            "AUC@0.1 %.3f)%s." % (mirror["model"], _pct(t["nme"]), _pct(t["failure_rate"]), t["auc"],
                                  "" if mirror.get("val_nme") is None
                                  else ", val NME %s %%" % _pct(mirror["val_nme"])), ""]


def _attribute_table(metrics: Dict[str, Any]) -> str:
    cols = ["fp32.h5", metrics["default_int8"]]
    rows = []
    for attr in ("all",) + tuple(SUBSET_NAMES[a] for a in ATTRIBUTES):  # metrics use WFLW's subset names
        row = [attr]
        count = None
        for c in cols:
            t = metrics["models"][c]["test"]
            a = t if attr == "all" else t["attributes"].get(attr) or {}
            count = a.get("count", count)
            row.append(_pct(a.get("nme")))
        rows.append([row[0], count if count is not None else "–"] + row[1:])
    return markdown_table(["subset", "faces", "FP32 NME %", "INT8 (%s) NME %%" % cols[1]], rows)


def _speed_table(speed: Optional[Dict[str, Any]]) -> str:
    if not speed or not speed.get("rows"):
        return "No `flm bench` results in the source run."

    def f(v: Any, fmt: str) -> str:
        return "–" if v is None else fmt % v

    rows = [[r["name"], r["engine"], f(r["size_mb"], "%.2f"), f(r["nme"] and 100 * r["nme"], "%.2f"),
             f(r["p50_ms"], "%.2f"), f(r["pipeline_fps"], "%.0f")] for r in speed["rows"]]
    return markdown_table(["model", "format / engine", "size MB", "test NME %", "p50 ms (batch 1)",
                           "pipeline FPS"], rows) + "\n\n`flm bench --run RUN --foreign ...` on %s, %s." % (
        (speed.get("machine") or {}).get("cpu", "this machine"), speed.get("created"))


def _tracking_text(tracking: Optional[Dict[str, Any]]) -> str:
    if not tracking:
        return "Not measured for this release."
    return tracking.get("markdown") or "```\n%s\n```" % json.dumps(tracking, indent=2)


FACES98_DATA = [
    "- Trained on the train list of `faces98` ({train} train / {val} validation faces): LFW photos "
    "and crops of "
    "WFLW (WIDER FACE) scenes. Labels are **machine labels** from a teacher, an ensemble of three "
    "WFLW-trained "
    "PFLD models of the PyTorch flow (AnthonyF333/PFLD_GhostOne, Apache-2.0), flip-averaged, box "
    "refined twice; "
    "no human labelled these training faces (the teacher scores ~5 % NME on WFLW test faces, so a student "
    "should not expect to beat it by much).",
    "- Evaluated on {test} real WFLW **test** faces (WIDER FACE scenes) with WFLW's human ground "
    "truth, cropped "
    "from the ground-truth landmarks' box (PFLD protocol); NME is inter-ocular (points 60/72).",
    "- **Licences: research only.** WFLW, WIDER FACE and LFW are for non-commercial research; a "
    "model trained "
    "on them inherits that restriction. The teacher models are Apache-2.0.",
]
OTHER_DATA = [
    "- Trained on the train list of `{root}` ({train} train / {val} validation faces) and evaluated "
    "on its {test} "
    "test faces, cropped from the ground-truth landmarks' box (PFLD protocol); NME is inter-ocular (points "
    "60/72). The model inherits the licence of that data.",
]


EXTRA_DATA = ("- Of the {train} training faces, {extra} come from `flm train --extra-train` roots ({roots}): "
              "e.g. synthetic turned copies of training faces (scripts/make_pose_data.py), teacher-labelled. "
              "Validation and test faces are real and untouched.")


TURNED_VAL = ("- The best epoch was chosen by validation NME with {faces} turned copies of the validation "
              "faces (scripts/make_pose_data.py --part val: synthetic, teacher-labelled) weighted at "
              "{share:.0f} %, WFLW's large-pose share: real faces {real} %, turned {turned} %."
              " The validation split itself has few turned faces.")


def _data_lines(metrics: Dict[str, Any], tr: Dict[str, Any]) -> List[str]:
    root = metrics["test_data"]["root"]
    lines = FACES98_DATA if root == "faces98" else OTHER_DATA
    out = [line.format(root=root, train=tr.get("train_faces"), val=tr.get("val_faces"),
                       test=metrics["test_data"]["faces"]) for line in lines]
    extra = tr.get("extra_train") or []
    if extra:  # the last run's own extra faces (the start's are in its init_training)
        faces = sum(e.get("faces") or 0 for e in extra)
        roots = ", ".join(os.path.basename(str(e.get("root"))) for e in extra)
        out.insert(1, EXTRA_DATA.format(train=tr.get("train_faces"), extra=faces, roots=roots))
    turned = tr.get("turned_val")
    if turned:
        from runtime.metrics import POSE_SHARE

        out.insert(1 + bool(extra), TURNED_VAL.format(faces=turned.get("faces"), share=100 * POSE_SHARE,
                                                      real=_pct(tr.get("best_val_nme")),
                                                      turned=_pct(tr.get("best_turned_val_nme"))))
    return out


def measured_weaknesses(metrics: Dict[str, Any]) -> List[str]:
    """The weaknesses the release's own measurements show, so the card cannot say "none" while its
    tables say otherwise: a foreign model of the same bench more accurate than the host default, re-crop
    drift over its target, and the attribute on which the host default is worst."""
    out = []
    default = metrics["models"][metrics["default_int8"]]["test"]
    foreign = [r for r in (metrics.get("speed") or {}).get("rows", ()) if r.get("method") == FOREIGN_METHOD]
    for r in foreign:
        if r.get("nme") is not None and r["nme"] < default["nme"]:
            out.append("Less accurate than %s on the same %d test faces: %s %% (`%s`) against %s %%."
                       % (r["name"], default["count"], _pct(default["nme"]), metrics["default_int8"],
                          _pct(r["nme"])))
    tracking = metrics.get("tracking") or {}
    if tracking.get("recrop_ok") is False:
        out.append("Drifts when re-cropped from its own landmarks on the test faces: %s."
                   % recrop_verdict(tracking))
    attrs = default.get("attributes") or {}
    if attrs and default["nme"]:
        name, worst = max(attrs.items(), key=lambda kv: kv[1]["nme"])
        out.append("Weakest on %s faces: %s %% test NME (%d faces), %.1f× its overall %s %%."
                   % (name, _pct(worst["nme"]), worst["count"], worst["nme"] / default["nme"],
                      _pct(default["nme"])))
    return out


def model_card(metrics: Dict[str, Any], cfg: RunConfig) -> str:
    tr = metrics["training"]
    m = cfg.model
    hours = (tr.get("train_seconds") or 0) / 3600.0
    over = ", ".join("%s x%d" % kv for kv in sorted((tr.get("oversample") or {}).items())) or "none"
    lines = [
        "# flm release `%s`: MobileNetV2-PFLD, 98 WFLW landmarks, 112×112×1 gray" % metrics["release"], "",
        "## Model",
        "- MobileNetV2-PFLD (width %g, %s, %d extra 3×3 Conv-BN-ReLU before the pooled multi-scale head, "
        "1×1-conv regression head of 196 outputs); the auxiliary pose head is training-only and not in these "
        "files. `flm model summary --width %g` prints every layer."
        % (m.width, m.activation.upper(), m.extra_convs, m.width),
        "- Input: uint8 gray crop, 112×112, a square of %.1f× the face box's longer side, zero-padded; "
        "x = (u8 − %g)·%g (outside the model). Output: 98 (x, y) in crop-normalised [0, 1]. The crop "
        "contract is `meta.json[\"crop\"]` (runtime/preprocess.py)." % (cfg.crop.scale, cfg.crop.input_mean,
                                                                      cfg.crop.input_scale),
        "- Files: `fp32.h5` (Keras, built-in layers only: loads in the Vitis AI docker), INT8 PTQ and QAT as "
        "TFLite and ONNX QDQ. `flm-dpu` runs `%s` by default on a host (the INT8 ONNX with the lower "
        "validation NME); `flm vitis quantize|compile|bundle --run models/%s` makes the KV260 xmodel."
        % (metrics["default_int8"], metrics["release"]), "",
        "## Data, labels and licences",
    ] + _data_lines(metrics, tr) + [
        "## Training",
        "- %s epochs (best at %s, best val NME %s %%), %.1f h on a 2-core CPU, batch %s, AdamW lr %g → %g "
        "cosine%s, %s landmark loss, BN momentum %s%s, weight EMA %s, oversampling %s%s%s."
        % (tr.get("epochs_done"), tr.get("best_epoch"), _pct(tr.get("best_val_nme")), hours,
           tr.get("batch_size"), tr.get("lr"), tr.get("lr_min"),
           "" if not tr.get("time_budget_min") else " over a %g-min budget" % tr["time_budget_min"],
           {"wing": "Wing", "l2": "L2"}.get(tr.get("landmark_loss") or "l2", tr.get("landmark_loss")),
           tr.get("bn_momentum", "–"), " (BatchNorm frozen)" if tr.get("freeze_bn") else "",
           tr.get("ema") or "off", over,
           "" if tr.get("policy") in (None, "float32") else ", %s compute (float32 weights)" % tr["policy"],
           "" if not tr.get("init") else ", started from `%s`" % display_path(tr["init"])),
        "- Augmentation (`config.json` `augment`): %s." % describe_augment(cfg.augment),
    ] + _lineage_lines(tr) + ["",
        "## Accuracy (measured on these files by `flm release`)", "",
        _results_table(metrics), "",
    ] + _mirror_lines(metrics.get("mirror")) + [
        "Per attribute (test):", "", _attribute_table(metrics), "",
        "## Speed", "", _speed_table(metrics.get("speed")), "",
        "## Tracking stability", "", _tracking_text(metrics.get("tracking")), "",
        "## Known weaknesses",
    ]
    known = measured_weaknesses(metrics) + list(metrics.get("weaknesses") or ())
    lines += ["- %s" % w for w in known] or ["- none recorded"]
    n = metrics["test_data"]["faces"]
    lines += ["- %d test faces is a small benchmark: one face moves the mean NME by ~%.1f pp per 10 pp "
              "of its own error." % (n, 10.0 / max(n, 1))]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ refreshing a release

#: seeded inputs on which a refreshed ONNX file must give bit-identical outputs
REFRESH_CHECK_BATCH = 8


def _same_outputs(a: str, b: str, seed: int = 0) -> bool:
    import numpy as np
    import onnxruntime as ort

    sessions = [ort.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in (a, b)]
    inp = sessions[0].get_inputs()[0]
    shape = [d if isinstance(d, int) else REFRESH_CHECK_BATCH for d in inp.shape]
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, shape).astype(np.float32)
    outs = [s.run(None, {inp.name: x}) for s in sessions]
    return all(np.array_equal(p, q) for p, q in zip(*outs))


def refresh_release(release_dir: str, data_root: Optional[str] = None,
                    log: Log = print) -> Dict[str, Tuple[int, int]]:
    """Bring a release up to what today's `flm release` writes, without re-training or
    re-quantizing: its ONNX files re-written through today's `quant.onnx_save.save_onnx` passes (e.g.
    `drop_bias_zero_points`) and the records that name their sizes (metrics.json's models and speed
    rows, meta.json's file records); a record `build_release` now adds and the release lacks measured
    on its own files (the host default's `--mirror` scores, on `data_root` or the release's data
    root); MODEL_CARD.md re-rendered from metrics.json and config.json. Returns {ONNX file: (old
    bytes, new bytes)}. Why: the runs a release came from live in runs/, which is not in git.

    ONNX Runtime must give bit-identical outputs before and after on seeded inputs, and the card must
    be the one `model_card` renders from the release's metrics (no hand edits it would lose);
    otherwise ReleaseError, and the release is left as it was (the new one is built beside it and
    swapped in whole)."""
    import onnx

    from quant.onnx_save import save_onnx

    cfg = RunConfig.load(os.path.join(release_dir, "config.json"))
    metrics = read_json(os.path.join(release_dir, METRICS_FILE))
    with open(os.path.join(release_dir, "MODEL_CARD.md"), encoding="utf-8") as f:
        if f.read() != model_card(metrics, cfg):
            raise ReleaseError("%s/MODEL_CARD.md is not what its metrics.json renders (edited by hand, "
                               "or --weakness lines from before metrics.json kept them?): re-release the "
                               "run instead" % release_dir)
    meta = read_json(os.path.join(release_dir, META))
    changed = {}  # type: Dict[str, Tuple[int, int]]
    with scratch_dir(os.path.dirname(os.path.abspath(release_dir))) as tmp:
        for fname in os.listdir(release_dir):
            shutil.copy2(os.path.join(release_dir, fname), os.path.join(tmp, fname))
        for fname in sorted(f for f in os.listdir(tmp) if f.endswith(".onnx")):
            path = os.path.join(tmp, fname)
            before = os.path.getsize(path)
            save_onnx(onnx.load(path), path, shorten=False)
            if not _same_outputs(os.path.join(release_dir, fname), path):
                raise ReleaseError("%s: the re-written file's outputs differ from the release's" % fname)
            after = os.path.getsize(path)
            changed[fname] = (before, after)
            log("%s: %d -> %d bytes, outputs bit-identical" % (fname, before, after))
            if fname in metrics.get("models", {}):
                metrics["models"][fname]["bytes"] = after
            for row in (metrics.get("speed") or {}).get("rows", []):
                if row.get("name") == fname.replace(".", "_"):
                    row["size_mb"] = after / 1e6
        if "mirror" not in metrics:
            try:
                _, test, val = release_faces(cfg, data_root, log)
            except kev.EvalError as e:
                raise ReleaseError(str(e)) from None
            metrics["mirror"] = mirror_scores(tmp, metrics["default_int8"], cfg.crop, test, val, log)
        atomic_write_json(os.path.join(tmp, METRICS_FILE), metrics)
        atomic_write_text(os.path.join(tmp, "MODEL_CARD.md"), model_card(metrics, cfg))
        meta["files"] = _file_records(tmp)
        atomic_write_json(os.path.join(tmp, META), meta)
        replace_path(tmp, release_dir)
    return changed
