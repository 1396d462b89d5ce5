"""Table 3 of the paper regenerated on this machine: every artifact of a run, timed alike.

For each artifact present in the run (Keras FP32 through a traced tf.function, TFLite
FP32/INT8, ONNX Runtime FP32/INT8 incl. per-channel and pof2 variants, the DPU xmodel when
VART is importable) and each foreign ONNX model given with a `ForeignSpec` (e.g. a
PFLD-pytorch export), it measures with the runtime's own code:

- backend-only latency at batch 1 (median and p95 per call) and throughput at batch 1 and
  8 (images/s): `runtime.cli.bench_backend` on preallocated real crops (warm-up excluded);
- end-to-end pipeline FPS on a video (detect, track, crop, infer, decode, DMS, overlay):
  `runtime.cli.bench_video`, the code `flm-dpu bench --video` runs;
- model size (bytes on disk) and accuracy (metrics.json, keyed like `flm eval`); foreign
  models are evaluated here through `runtime.evaluate.evaluate` on the run's test split.

All backends are loaded first and the repeats are interleaved (repeat 1 of every artifact,
then repeat 2, ...), so slow drifts of a shared VM hit every row alike. Each number is the
median over repeats; the spread between repeats is reported as the noise. Results go to
run/bench.json, run/bench.png and the "Benchmark (Table 3)" section of run/report.md.
"""
import datetime
import glob
import os
import platform
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from keras_flm import evaluate as kev
from keras_flm.report_md import (
    atomic_write_json,
    markdown_table,
    read_json,
    read_metrics,
    update_report_section,
)
from quant import run as R
from quant.config import BenchConfig
from runtime.backends.foreign import ForeignSpec
from runtime.preprocess import DEFAULT_SPEC, CropSpec

SECTION = "Benchmark (Table 3)"
JSON_FILE = "bench.json"
PLOT_FILE = "bench.png"
VIDEO_FILE = "bench_video.mp4"
FOREIGN_FORMAT = "ONNX (foreign)"
#: the `method` of a foreign model's row (read back by the release card)
FOREIGN_METHOD = "foreign"

#: The paper's Table 3 (docs/pfld-wflw.md): device, FPS, power W, accuracy % (only KV260 given).
PAPER_TABLE3: Tuple[Tuple[str, float, float, Optional[float]], ...] = (
    ("RTX 4060 (GPU)", 430.0, 110.0, None),
    ("Intel i9 (CPU)", 108.0, 80.0, None),
    ("Jetson Nano", 8.95, 10.0, None),
    ("Raspberry Pi 4", 6.0, 7.0, None),
    ("KV260 DPU (INT8 QAT)", 30.0, 3.0, 91.74),
)
#: Reference lines drawn on the chart: the CPU and the DPU of the paper.
PAPER_LINES = (("paper: Intel i9", 108.0), ("paper: KV260", 30.0))

#: Row order of engines in the table.
ENGINE_ORDER = ("keras", "tflite", "onnx", "vart", "onnx-foreign")
ENGINE_LABEL = {"keras": "tf.function", "tflite": "TFLite", "onnx": "ORT", "vart": "VART DPU",
                "onnx-foreign": "ORT"}
#: TFLite interpreter providers (runtime.backends.tflite_backend.interpreter_class) as shown.
TFLITE_PROVIDER = {"ai_edge_litert": "LiteRT", "tflite_runtime": "tflite-runtime", "tensorflow": "TF Lite"}

HEADER = ["model", "method", "format / engine", "size MB", "NME %", "accuracy %", "p50 ms b1", "p95 ms b1",
          "img/s b1", "img/s b8", "pipeline FPS", "noise %"]

Log = Callable[[str], Any]


class BenchError(Exception):
    """A user-facing problem (bad foreign options, nothing to benchmark)."""


@dataclass
class Artifact:
    """One row of Table 3: a model file and how to load it."""

    name: str  # metrics.json key (flm eval's artifact name) or the foreign model's name
    path: str
    method: str  # FP32, PTQ INT8, ... or "foreign"
    fmt: str  # Keras H5, TFLite, ONNX QDQ, xmodel, ONNX (foreign)
    engine: str  # runtime backend name, "onnx-foreign" for foreign models
    foreign: Optional[ForeignSpec] = None
    notes: List[str] = field(default_factory=list)
    mirror: bool = False  # averaged with the mirrored crop (runtime.backends.mirror)

    @property
    def label(self) -> str:
        return self.name if self.foreign is not None else "%s · %s" % (self.method, self.fmt)


#: suffix of a mirror-averaged row's name (and its metrics.json key)
MIRROR_SUFFIX = "_mirror"


def mirrored_artifacts(run_dir: str, wanted: Sequence[str]) -> List[Artifact]:
    """Rows of the run's artifacts named in `wanted` (metrics name or file name), each run with mirror
    averaging: a second inference per face on the mirrored crop, so the table shows what it buys in
    NME and costs in latency beside the plain row."""
    if not wanted:
        return []
    arts, _ = discover(run_dir)
    out = []
    for w in dict.fromkeys(wanted):
        hit = [a for a in arts if w in (a.name, os.path.basename(a.path))]
        if not hit:
            raise BenchError("--mirror %s: not in %s (present: %s)"
                             % (w, run_dir, ", ".join(os.path.basename(a.path) for a in arts) or "none"))
        a = hit[0]
        out.append(Artifact(a.name + MIRROR_SUFFIX, a.path, a.method + " + mirror", a.fmt, a.engine,
                            mirror=True))
    return out


# ---------------------------------------------------------------------------- what to time
def vart_available() -> Optional[str]:
    """None when xir + vart import (a board), else why not."""
    from runtime.backends import BackendError
    from runtime.backends.vart_backend import import_vitis

    try:
        import_vitis()
    except BackendError:
        return "the Vitis AI runtime (vart, xir) is not importable here (board only)"
    return None


def xmodels(run_dir: str) -> List[str]:
    """Compiled DPU models of a run: vitis/*/*.xmodel (flm vitis compile) and bundle/*.xmodel."""
    found = sorted(glob.glob(os.path.join(run_dir, "vitis", "*", "*.xmodel")))
    found += sorted(glob.glob(os.path.join(run_dir, "bundle", "*.xmodel")))
    return found


def discover(run_dir: str, only: Sequence[str] = ()) -> Tuple[List[Artifact], List[str]]:
    """flm artifacts present in the run (Table 2's file list + xmodels), and notes on skipped ones."""
    from quant.report import ROWS
    from runtime.backends import backend_for_path

    arts, notes = [], []
    for fname, method, fmt, _ in ROWS:
        path = os.path.join(run_dir, fname)
        if "." not in fname or not os.path.isfile(path):
            continue
        arts.append(Artifact(kev.artifact_name(path), path, method, fmt, backend_for_path(path)))
    xs = xmodels(run_dir)
    if xs:
        why = vart_available()
        if why:
            notes.append("not timed: %s (%s)" % (", ".join(os.path.relpath(x, run_dir) for x in xs), why))
        else:
            for x in xs:
                method = "QAT INT8" if "qat" in x.lower() else "PTQ INT8" if "ptq" in x.lower() else "INT8"
                arts.append(Artifact(kev.artifact_name(x), x, method, "xmodel", "vart"))
    if only:
        want = set(only)
        unknown = want - {a.name for a in arts} - {os.path.basename(a.path) for a in arts}
        if unknown:
            present = ", ".join(os.path.basename(a.path) for a in arts) or "none"
            raise BenchError("--only %s: not in %s (present: %s)"
                             % (", ".join(sorted(unknown)), run_dir, present))
        arts = [a for a in arts if a.name in want or os.path.basename(a.path) in want]
    arts.sort(key=lambda a: ENGINE_ORDER.index(a.engine))
    return arts, notes


def foreign_artifacts(paths: Sequence[str], specs: Sequence[str], names: Sequence[str],
                      taken: Sequence[str] = ()) -> List[Artifact]:
    """Pair --foreign PATH with --foreign-spec SPEC and --foreign-name NAME (by position; one spec
    or none applies to all). Raises BenchError naming the bad option."""
    if not paths:
        if specs or names:
            raise BenchError("--foreign-spec/--foreign-name given without --foreign MODEL.onnx")
        return []
    if len(specs) not in (0, 1, len(paths)):
        raise BenchError("%d --foreign models but %d --foreign-spec: give one spec for all or one per model"
                         % (len(paths), len(specs)))
    if len(names) not in (0, len(paths)):
        raise BenchError("%d --foreign models but %d --foreign-name: give one name per model or none"
                         % (len(paths), len(names)))
    out = []  # type: List[Artifact]
    used = set(taken)
    for i, path in enumerate(paths):
        if not os.path.isfile(path):
            raise BenchError("--foreign %s: file not found" % path)
        if not path.lower().endswith(".onnx"):
            raise BenchError("--foreign %s: only ONNX models are supported (torch.onnx.export them)" % path)
        text = specs[i] if len(specs) == len(paths) else (specs[0] if specs else "")
        try:
            spec = ForeignSpec.parse(text)
        except ValueError as e:
            raise BenchError("--foreign-spec %r: %s" % (text, e)) from None
        name = names[i] if names else "foreign_" + os.path.splitext(os.path.basename(path))[0]
        try:
            kev.check_name(name)
        except kev.EvalError as e:
            raise BenchError("--foreign-name: %s" % e) from None
        if name in used:
            raise BenchError("--foreign-name %r is already used by another row: pick another" % name)
        used.add(name)
        out.append(Artifact(name, os.path.abspath(path), FOREIGN_METHOD, FOREIGN_FORMAT, "onnx-foreign",
                            spec))
    return out


def load(a: Artifact, spec: CropSpec, threads: int) -> Any:
    from runtime.backends import load_backend
    from runtime.backends.foreign import ForeignOnnxBackend

    if a.foreign is not None:
        return ForeignOnnxBackend(a.path, a.foreign, spec, threads=threads)
    return load_backend(a.path, backend=a.engine, spec=spec, threads=threads, mirror=a.mirror)


# ---------------------------------------------------------------------------- inputs
def ensure_video(run_dir: str, cfg: BenchConfig, log: Log) -> str:
    """run/bench_video.mp4: a synthetic one-face video (keras_flm.synth), rendered once."""
    from keras_flm.synth import ground_truth_path, write_face_video

    path = os.path.join(run_dir, VIDEO_FILE)
    if os.path.isfile(path) and os.path.isfile(ground_truth_path(path)):
        return path
    log("rendering %s (%d frames %dx%d) ..." % (path, cfg.video_frames, cfg.video_size[0], cfg.video_size[1]))
    write_face_video(path, cfg.video_frames, size=cfg.video_size, fps=30.0, seed=cfg.video_seed,
                     progress=True)
    return path


def bench_crops(video: Optional[str], n: int, spec: CropSpec = DEFAULT_SPEC) -> Tuple[np.ndarray, str]:
    """n real crops (uint8 (n, size, size)) from the first frames of `video`, cut with
    runtime.preprocess.crop_face from the ground-truth box (synthetic videos) or a Haar detection;
    random pixels without a video (the engines' speed does not depend on the pixels)."""
    import cv2

    from keras_flm.synth import ground_truth_path
    from runtime.preprocess import crop_face

    if not video:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (n, spec.size, spec.size), dtype=np.uint8), "random pixels (no video)"
    boxes = {}  # type: Dict[int, Any]
    gt = ground_truth_path(video)
    if os.path.isfile(gt):
        boxes = {fr["index"]: fr["box"] for fr in read_json(gt).get("frames", [])}
    detector = None
    crops = np.zeros((n, spec.size, spec.size), np.uint8)
    cap = cv2.VideoCapture(video)
    got, index, source = 0, 0, "ground-truth boxes" if boxes else "Haar detections"
    try:
        while got < n and index < 10 * n + 50:
            ok, frame = cap.read()
            if not ok:
                break
            box = boxes.get(index)
            if box is None and not boxes:
                if detector is None:
                    from runtime.detect import HaarDetector

                    detector = HaarDetector()
                dets = detector(frame)
                box = dets[0].box if dets else None
            if box is not None:
                crop_face(frame, box, spec, out=crops[got])
                got += 1
            index += 1
    finally:
        cap.release()
    if got == 0:
        rng = np.random.default_rng(0)
        crops[:] = rng.integers(0, 256, crops.shape, dtype=np.uint8)
        return crops, "random pixels (no face found in %s)" % video
    for i in range(got, n):  # a short video: repeat the crops found
        crops[i] = crops[i % got]
    return crops, "%d face crops of %s (%s)" % (got, os.path.basename(video), source)


# ---------------------------------------------------------------------------- machine
def _version(dist: str) -> Optional[str]:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info(threads: Optional[int] = None) -> Dict[str, Any]:
    """CPU model and flags (/proc/cpuinfo), cores, memory, and the versions of the engines."""
    import cv2

    cpu, flags = platform.processor() or platform.machine(), []  # type: str, List[str]
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, val = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "Hardware") and cpu in ("", platform.machine(),
                                                                           platform.processor()):
                    cpu = val.strip()
                elif key in ("flags", "Features") and not flags:
                    have = set(val.split())
                    flags = [x for x in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8",
                                         "asimd", "asimddp", "neon") if x in have]
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = round(int(line.split()[1]) / 1e6, 1)
                    break
    except (OSError, ValueError):
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    versions = {"python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__}
    for dist in ("onnxruntime", "tensorflow", "tf-keras", "ai-edge-litert", "tflite-runtime"):
        v = _version(dist)
        if v:
            versions[dist] = v
    return {"cpu": cpu, "cpu_flags": flags, "cores": os.cpu_count(), "usable_cores": usable,
            "memory_gb": mem, "platform": platform.platform(), "machine": platform.machine(),
            "threads": threads, "versions": versions}


def _load_avg() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# ---------------------------------------------------------------------------- timing
def measure(artifacts: Sequence[Artifact], backends: Sequence[Any], crops: np.ndarray, video: Optional[str],
            cfg: BenchConfig, log: Log = print,
            pipeline_backends: Optional[Sequence[Any]] = None) -> List[Dict[str, Any]]:
    """Raw per-repeat results of every artifact: {"batches": {"1": [bench_backend...], ...}, "e2e": [...]}.

    `pipeline_backends` (default: `backends`) serve the end-to-end runs: the same models loaded
    with the pipeline's thread count."""
    pipeline_backends = pipeline_backends or backends
    from runtime.cli import bench_backend, bench_video

    raw = [{"batches": {}, "e2e": []} for _ in artifacts]  # type: List[Dict[str, Any]]
    steps = cfg.repeats * len(artifacts)
    step = 0
    for rep in range(cfg.repeats):
        for a, be, pbe, out in zip(artifacts, backends, pipeline_backends, raw):
            step += 1
            if be is None:
                continue
            log("[%d/%d] repeat %d/%d: %s" % (step, steps, rep + 1, cfg.repeats, a.label))
            for b in cfg.batches:
                r = bench_backend(be, b, cfg.iters, warmup=cfg.warmup, crops=crops[:b])
                out["batches"].setdefault(str(b), []).append(r)
            if video and cfg.frames:
                s = bench_video(pbe or be, video, frames=cfg.frames, loop=True, detect_every=cfg.detect_every)
                s.pop("table", None)
                out["e2e"].append({k: s.get(k) for k in ("fps", "frames_out", "no_face_frames", "stages",
                                                         "cpu_ms_per_frame", "process_cpu_ms_per_frame",
                                                         "counters")})
    return raw


def _spread(values: Sequence[float]) -> Optional[float]:
    """(max - min) / median in %, over repeats; None for fewer than 2 values."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if len(v) < 2 or np.median(v) == 0:
        return None
    return float(100.0 * (v.max() - v.min()) / np.median(v))


def _median(values: Sequence[float]) -> Optional[float]:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.median(v)) if v else None


def summarize(raw: Dict[str, Any], cfg: BenchConfig) -> Dict[str, Any]:
    """Medians over repeats and the repeat-to-repeat spread (noise) of one artifact."""
    out = {}  # type: Dict[str, Any]
    noise = {}  # type: Dict[str, Optional[float]]
    b1 = raw["batches"].get("1", [])
    out["p50_ms"] = _median([r["p50_ms"] for r in b1])
    out["p95_ms"] = _median([r["p95_ms"] for r in b1])
    noise["p50_ms"] = _spread([r["p50_ms"] for r in b1])
    out["images_per_s"] = {}
    for b, rs in raw["batches"].items():
        vals = [r["faces_per_s"] for r in rs]
        out["images_per_s"][b] = _median(vals)
        noise["images_per_s_b%s" % b] = _spread(vals)
    out["cpu_ms_per_call_b1"] = _median([r["cpu_ms_per_call"] for r in b1])
    fps = [e["fps"] for e in raw["e2e"]]
    out["pipeline_fps"] = _median(fps)
    noise["pipeline_fps"] = _spread(fps)
    infer = [((e.get("stages") or {}).get("infer") or {}).get("p50_ms") for e in raw["e2e"]]
    out["pipeline_infer_p50_ms"] = _median([v for v in infer if v is not None])
    out["pipeline_frames"] = _median([e.get("frames_out") for e in raw["e2e"]])
    runs = [(e.get("counters") or {}).get("detector_runs", 0) for e in raw["e2e"]]
    out["pipeline_detector_runs"] = _median(runs)
    out["noise_pct"] = noise
    known = [v for v in noise.values() if v is not None]
    out["noise_max_pct"] = max(known) if known else None
    return out


# ---------------------------------------------------------------------------- accuracy
def accuracy(run_dir: str, a: Artifact, metrics: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """NME/accuracy of an artifact from metrics.json (flagged stale if it no longer matches the file)."""
    from quant.evaluation import is_stale

    e = metrics.get(a.name)
    if not e or not isinstance(e.get("nme"), (int, float)):
        return {"nme": None, "accuracy": None, "faces": None, "stale": False}
    stale = is_stale(run_dir, e, a.path)
    if a.foreign is not None and e.get("foreign_spec") not in (None, a.foreign.compact()):
        stale = True
    return {"nme": e["nme"], "accuracy": e.get("accuracy"), "faces": e.get("count"),
            "failure_rate": e.get("failure_rate"), "auc": e.get("auc"), "split": e.get("split", "test"),
            "stale": bool(stale)}


def evaluate_artifact(run_dir: str, a: Artifact, backend: Any, data_root: Optional[str], run_cfg: Any,
                      limit: Optional[int], log: Log = print) -> Optional[str]:
    """Score an artifact (foreign or flm) with its already loaded backend on the run's test split
    through runtime.evaluate (the code every flm artifact is scored with) and record it in
    metrics.json and the report like `flm eval` / `flm report` do. Returns a note when it cannot
    (no dataset)."""
    from quant.evaluation import sha256
    from runtime import evaluate as rev

    root = data_root or (run_cfg.data or {}).get("root")
    if not root or not os.path.isdir(root):
        return ("%s not evaluated: no dataset (the run's config has %s; pass --data WFLW_ROOT)"
                % (a.name, "no data root" if not root else "data root %s, which does not exist" % root))
    try:
        records, _ = kev.load_split(root, "test", run_cfg)
    except kev.EvalError as e:
        return "%s not evaluated: %s" % (a.name, e)
    total = len(records)
    if limit:
        records = records[:limit]
    try:
        from tqdm import tqdm

        bar = tqdm(total=len(records), unit="face", desc=a.name, disable=None, leave=False)
    except ImportError:
        bar = None
    try:
        result = rev.evaluate(backend, records, spec=run_cfg.crop, batch_size=32,
                              progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    model = a.path if a.foreign is not None else os.path.relpath(a.path, run_dir)
    meta = {"model": model, "split": "test", "model_bytes": os.path.getsize(a.path),
            "model_sha256": sha256(a.path), "foreign_spec": a.foreign.compact() if a.foreign else None,
            "data": os.path.abspath(root), "limit": limit if limit and limit < total else None,
            "faces_in_split": total}
    if a.mirror:
        meta["mirror"] = True  # averaged with the mirrored crop: not the file's own one-shot number
    if getattr(getattr(backend, "foreign", None), "channels", None) == 3:
        meta["note"] = "foreign model fed gray crops replicated into 3 channels"
    kev.record_evaluation(run_dir, a.name, result, meta)
    m = result["metrics"]
    log("%-18s NME %.3f%%  FR@0.1 %.2f%%  AUC@0.1 %.4f  (%d test faces)"
        % (a.name, 100 * m["nme"], 100 * m["failure_rate"], m["auc"], m["count"]))
    return None


# ---------------------------------------------------------------------------- output
def engine_label(engine: str, backend: Any) -> str:
    """Short engine name for the table (which TFLite interpreter actually ran)."""
    if engine == "tflite" and backend is not None:
        return TFLITE_PROVIDER.get(getattr(backend, "provider", ""), ENGINE_LABEL[engine])
    return ENGINE_LABEL.get(engine, engine)


def _loads(v: Optional[List[float]]) -> str:
    return "–" if not v else " / ".join("%.2f" % x for x in v)


def _f(v: Optional[float], fmt: str) -> Optional[str]:
    return None if v is None else fmt % v


def table_rows(rows: List[Dict[str, Any]]) -> List[List[Any]]:
    out = []
    for r in rows:
        acc = r["accuracy"]
        stale = " (stale)" if acc.get("stale") else ""
        ips = r.get("images_per_s") or {}
        out.append([r["name"], r["method"], "%s / %s" % (r["format"], r["engine_label"]),
                    _f(r["size_mb"], "%.3f"),
                    None if acc.get("nme") is None else "%.3f%s" % (100.0 * acc["nme"], stale),
                    None if acc.get("accuracy") is None else "%.2f%s" % (acc["accuracy"], stale),
                    _f(r.get("p50_ms"), "%.2f"), _f(r.get("p95_ms"), "%.2f"), _f(ips.get("1"), "%.0f"),
                    _f(ips.get("8"), "%.0f"), _f(r.get("pipeline_fps"), "%.1f"),
                    _f(r.get("noise_max_pct"), "%.0f")])
    return out


def markdown(result: Dict[str, Any]) -> str:
    """Body of the report's "Benchmark (Table 3)" section."""
    m, c = result["machine"], result["config"]
    v = m["versions"]
    parts = ["Measured on **%s** (%s cores, %s usable; %s GB RAM; flags %s), %d intra-op threads; Python %s, "
             "numpy %s, onnxruntime %s, TensorFlow %s, OpenCV %s%s. Load average %s before, %s after "
             "(a shared machine: compare rows of one run)."
             % (m["cpu"], m["cores"], m["usable_cores"], m["memory_gb"], ", ".join(m["cpu_flags"]) or "–",
                c["threads"], v.get("python"), v.get("numpy"), v.get("onnxruntime", "–"),
                v.get("tensorflow", "–"), v.get("opencv"),
                ", LiteRT %s" % v["ai-edge-litert"] if v.get("ai-edge-litert") else "",
                _loads(result["load_before"]), _loads(result["load_after"])),
             markdown_table(HEADER, table_rows(result["rows"])),
             "p50/p95 ms b1: backend-only latency per call at batch 1 (uint8 crop in, landmarks out, "
             "input quantisation included); img/s: backend-only throughput at batch 1 and 8 (images × "
             "calls / wall time: unlike p50 it pays for every preemption on a busy machine); pipeline FPS: "
             "the whole `flm-dpu` pipeline (Haar detection every %d frames + tracking, crop, inference "
             "with %d intra-op thread(s) as `flm-dpu run` uses; Keras keeps the process-wide TF pool), "
             "decode, DMS, overlay drawn, no display) on %s for %d frames; size: bytes on disk / 1e6; "
             "NME/accuracy: metrics.json (test split, accuracy = 100·(1 − NME)). Timing: %d warm-up calls "
             "excluded, %d timed calls per batch size, %d interleaved repeats; each cell is the median over "
             "repeats and **noise %%** is the largest (max − min)/median between repeats among p50, img/s "
             "and FPS of that row. Crops: %s."
             % (c["detect_every"], c["pipeline_threads"],
                os.path.basename(result["video"]) if result.get("video") else "–",
                c["frames"], c["warmup"], c["iters"], c["repeats"], result["crops"])]
    paper = [[d, "%g" % fps, "%g" % w, "%.1f" % (fps / w), "–" if acc is None else "%.2f" % acc]
             for d, fps, w, acc in PAPER_TABLE3]
    parts.append("The paper's Table 3 (PyTorch PFLD, its own pipeline; not measured here):\n\n"
                 + markdown_table(["device", "FPS", "power W", "FPS/W", "accuracy %"], paper))
    notes = list(result.get("notes") or [])
    for r in result["rows"]:
        if r.get("foreign_spec"):
            rgb = "channels=3" in r["foreign_spec"]
            notes.append("`%s` (%s) is a foreign model fed flm's gray 112-px crops with spec `%s`%s."
                         % (r["name"], os.path.basename(r["path"]), r["foreign_spec"],
                            "; the gray crop is replicated into its 3 channels" if rgb else ""))
        if r.get("error"):
            notes.append("`%s` failed: %s" % (r["name"], r["error"]))
        acc = r["accuracy"]
        if acc.get("stale"):
            notes.append("`%s`: metrics.json no longer matches the file (re-run `flm report` / `flm eval`)."
                         % r["name"])
    runs = [(r["name"], r.get("pipeline_detector_runs"), r.get("pipeline_frames")) for r in result["rows"]
            if r.get("pipeline_frames")]
    if len({n for _, n, _ in runs}) > 1:
        notes.append("pipeline FPS depends on the model too: the tracker re-runs the face detector when it "
                     "rejects a model's landmarks as implausible (detector runs / frames: %s)."
                     % ", ".join("%s %.0f/%.0f" % r for r in runs))
    counts = {r["accuracy"].get("faces") for r in result["rows"] if r["accuracy"].get("faces")}
    if len(counts) > 1:
        notes.append("accuracy rows were scored on different numbers of faces (%s): compare with care."
                     % ", ".join(str(n) for n in sorted(counts)))
    if notes:
        parts.append("\n".join("- " + n for n in notes))
    if os.path.isfile(os.path.join(result["run"], PLOT_FILE)):
        parts.append("![Table 3: throughput and pipeline FPS](%s)" % PLOT_FILE)
    return "\n\n".join(parts)


def text_table(result: Dict[str, Any]) -> str:
    from runtime.stats import format_table

    rows = table_rows(result["rows"])
    return format_table(HEADER, [["–" if c is None else str(c) for c in r] for r in rows])


def plot(result: Dict[str, Any], path: str) -> Optional[str]:
    """Horizontal bars per artifact: pipeline FPS (with the repeat range) and backend img/s at
    batch 1; vertical lines at the paper's i9 (108 FPS) and KV260 (30 FPS)."""
    from keras_flm.plots import _figure, _save

    rows = [r for r in result["rows"] if r.get("p50_ms") is not None]
    if not rows:
        return None
    fig = _figure(9.5, 0.55 * len(rows) + 1.9)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(rows))[::-1].astype(float)
    h = 0.38
    ips = [(r["images_per_s"] or {}).get("1") or 0.0 for r in rows]
    ax.barh(y + h / 2, ips, h, color="#c6d4e8", label="backend only, batch 1 (img/s)")
    fps = [r.get("pipeline_fps") or 0.0 for r in rows]
    lo = [max(0.0, f - min(r.get("pipeline_fps_repeats") or [f])) for f, r in zip(fps, rows)]
    hi = [max(0.0, max(r.get("pipeline_fps_repeats") or [f]) - f) for f, r in zip(fps, rows)]
    colors = ["#8172b3" if r.get("foreign_spec") else "#4c72b0" if r["method"] == "FP32" else "#dd8452"
              for r in rows]
    ax.barh(y - h / 2, fps, h, color=colors, xerr=[lo, hi], ecolor="#333333", capsize=2,
            label="end-to-end pipeline FPS (range over repeats; blue FP32, orange INT8, purple foreign)")
    for yi, f, up in zip(y, fps, hi):
        if f:
            ax.text(f + up, yi - h / 2, " %.0f" % f, va="center", fontsize=7)
    for yi, v in zip(y, ips):
        if v:
            ax.text(v, yi + h / 2, " %.0f" % v, va="center", fontsize=7, color="#555555")
    for (label, ref), style in zip(PAPER_LINES, ("--", ":")):
        ax.axvline(ref, color="#c44e52", ls=style, lw=1.2, label="%s %g FPS" % (label, ref))
    ax.set_yticks(y)
    ax.set_yticklabels(["%s\n%s" % (r["name"], r["engine_label"]) for r in rows], fontsize=7)
    ax.set_xlabel("images / frames per second (higher is better)")
    m = result["machine"]
    ax.set_title("Table 3 on %s (%s threads)" % (m["cpu"], result["config"]["threads"]), fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


# ---------------------------------------------------------------------------- the whole thing
def run_benchmark(run_dir: str, cfg: Optional[BenchConfig] = None, video: Optional[str] = None,
                  foreign: Sequence[Artifact] = (), only: Sequence[str] = (), data_root: Optional[str] = None,
                  mirror: Sequence[str] = (),
                  eval_foreign: bool = True, eval_missing: bool = False, write: bool = True,
                  log: Log = print) -> Dict[str, Any]:
    """Benchmark every artifact of `run_dir` (+ foreign models); write bench.json, bench.png and the
    report section (unless write=False). Returns the result dict (also what bench.json holds)."""
    cfg = cfg or BenchConfig()
    run_cfg = R.load_config(run_dir)
    spec = run_cfg.crop
    arts, notes = discover(run_dir, only)
    arts += mirrored_artifacts(run_dir, mirror) + list(foreign)
    if not arts:
        raise BenchError("nothing to benchmark in %s: no fp32.h5 / *.tflite / *.onnx%s (train, quantize and "
                         "export the run first, or pass --foreign MODEL.onnx)"
                         % (run_dir, " matching --only" if only else ""))
    if 1 not in cfg.batches:
        raise BenchError("batches %s must include 1 (the latency columns are batch 1)" % (cfg.batches,))
    backends = [None] * len(arts)  # type: List[Any]
    errors = {}  # type: Dict[str, str]
    pipeline = []  # type: List[Any]
    try:
        # foreign models first: a spec that does not fit its model fails before anything slow
        for i in sorted(range(len(arts)), key=lambda k: arts[k].foreign is None):
            a = arts[i]
            log("loading %s (%s)" % (a.path if a.foreign is not None else os.path.basename(a.path), a.engine))
            try:
                backends[i] = load(a, spec, cfg.threads)
            except Exception as e:  # noqa: BLE001 - one bad artifact must not hide the others' numbers
                if a.foreign is not None:
                    raise BenchError("--foreign %s: %s" % (a.path, e)) from None
                errors[a.name] = str(e)
                log("  cannot load %s: %s" % (a.path, e))
        if cfg.frames:
            video = video or ensure_video(run_dir, cfg, log)
            if not os.path.isfile(video):
                raise BenchError("video not found: %s" % video)
        else:
            video = video or None
        crops, crop_source = bench_crops(video, max(cfg.batches), spec)
        pipeline = list(backends)
        if video and cfg.frames and cfg.pipeline_threads != cfg.threads:
            for i, a in enumerate(arts):  # TF's thread pool is per process: Keras keeps its backend
                if backends[i] is not None and a.engine != "keras":
                    pipeline[i] = load(a, spec, cfg.pipeline_threads)
        load_before = _load_avg()
        metrics = read_metrics(run_dir)
        for a, be in zip(arts, backends):
            acc = accuracy(run_dir, a, metrics)
            if be is None or (acc["nme"] is not None and not acc["stale"]):
                continue
            if (eval_foreign if a.foreign is not None else eval_missing or a.mirror):
                note = evaluate_artifact(run_dir, a, be, data_root, run_cfg,
                                         cfg.eval_limit if a.foreign is not None else None, log)
                if note:
                    notes.append(note)
                    log(note)
        metrics = read_metrics(run_dir)
        raw = measure(arts, backends, crops, video, cfg, log, pipeline)
    finally:
        for be in backends + [p for p in pipeline if all(p is not b for b in backends)]:
            if be is not None:
                be.close()
    rows = []
    for a, be, r in zip(arts, backends, raw):
        row = {"name": a.name, "path": a.path, "file": os.path.relpath(a.path, run_dir) if a.foreign is None
               else a.path, "method": a.method, "format": a.fmt, "engine": a.engine,
               "engine_label": engine_label(a.engine, be), "bytes": os.path.getsize(a.path),
               "size_mb": os.path.getsize(a.path) / 1e6, "accuracy": accuracy(run_dir, a, metrics),
               "foreign_spec": (be.foreign.compact() if be is not None and hasattr(be, "foreign")
                                else a.foreign.compact()) if a.foreign is not None else None,
               "backend_info": be.info() if be is not None else None, "error": errors.get(a.name),
               "raw": r}
        if be is not None:
            row.update(summarize(r, cfg))
            row["pipeline_fps_repeats"] = [e["fps"] for e in r["e2e"]]
        rows.append(row)
    now = datetime.datetime.now().isoformat(timespec="seconds")
    result = {"run": os.path.abspath(run_dir), "created": now,
              "machine": machine_info(cfg.threads), "config": _cfg_dict(cfg), "video": video,
              "crops": crop_source, "load_before": load_before, "load_after": _load_avg(), "rows": rows,
              "notes": notes, "paper_table3": [{"device": d, "fps": f, "power_w": w, "accuracy": acc}
                                               for d, f, w, acc in PAPER_TABLE3]}
    if write:
        write_outputs(run_dir, result)
    return result


def _cfg_dict(cfg: BenchConfig) -> Dict[str, Any]:
    from dataclasses import asdict

    d = asdict(cfg)
    d["batches"] = list(cfg.batches)
    d["video_size"] = list(cfg.video_size)
    return d


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)


def write_outputs(run_dir: str, result: Dict[str, Any]) -> Dict[str, str]:
    """bench.json, bench.png and the report section (each written atomically)."""
    paths = {"json": os.path.join(run_dir, JSON_FILE)}
    png = plot(result, os.path.join(run_dir, PLOT_FILE))
    if png:
        paths["png"] = png
    atomic_write_json(paths["json"], _clean(result))
    paths["report"] = update_report_section(run_dir, SECTION, markdown(result))
    return paths
