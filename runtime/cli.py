"""`flm-dpu`: run the landmark detector on the KV260 (VART DPU) or a host (ONNX/TFLite/Keras).

    flm-dpu run   --camera 0 | --video FILE | --images DIR  --model BUNDLE|.xmodel|.onnx|.tflite|.h5
    flm-dpu bench --model PATH [--video FILE]     backend-only and end-to-end speed
    flm-dpu eval  --model PATH --data WFLW_ROOT   NME/FR/AUC through the serving code path
    flm-dpu info  [--model PATH]                  engines, versions, DPU details

numpy + OpenCV + click at import time; every engine is imported only when used.
"""
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

import click
import numpy as np

from runtime.backends import BACKENDS, Backend, BackendError, load_backend
from runtime.backends.foreign import foreign_spec_options, load_foreign, spec_from_options
from runtime.release import RELEASE_NAME

MODEL_HELP = ("board bundle directory (meta.json + models, from `flm vitis bundle`), a release "
              "(models/NAME), a compiled .xmodel (VART, on the board), or an .onnx / .tflite / .h5 export. "
              "Env: FLM_DPU_MODEL. "
              "Default: the released model (its bundle's xmodel on a board once compiled, else its INT8 "
              "ONNX/TFLite)")
NO_MODEL = ("no model given and no released model installed (models/%s): pass --model with one of\n"
            "  - a board bundle directory (runs/NAME/bundle from `flm vitis bundle`),\n"
            "  - a compiled DPU model NET.xmodel (board only),\n"
            "  - an ONNX or TFLite export (runs/NAME/ptq_int8.onnx, runs/NAME/ptq_int8.tflite, fp32.onnx),\n"
            "  - a Keras H5 model (runs/NAME/fp32.h5, needs TensorFlow),\n"
            "or set FLM_DPU_MODEL." % RELEASE_NAME)


def _err(msg: str) -> None:
    click.echo(msg, err=True)


def _default_model(foreign_spec: Optional[str] = None) -> str:
    """The released model when no --model is given (and says so), or the NO_MODEL usage error."""
    from runtime.release import default_model

    if foreign_spec is not None:
        raise click.UsageError("--foreign-spec describes a foreign ONNX model: pass it with --model")
    path = default_model()
    if path is None:
        raise click.UsageError(NO_MODEL)
    _err("flm-dpu: no --model given: using the released model %s" % path)
    return path


def _load(model: Optional[str], backend: Optional[str], threads: Optional[int],
          foreign_spec: Optional[str] = None, mirror: bool = False) -> Backend:
    if not model:
        model = _default_model(foreign_spec)
    try:
        if foreign_spec is not None:  # a foreign ONNX landmark model (e.g. a PFLD-pytorch export)
            if backend not in (None, "onnx"):
                raise click.UsageError("--foreign-spec takes an ONNX model (--backend onnx), not %s"
                                       % backend)
            return load_foreign(model, spec_from_options(foreign_spec), threads=threads, mirror=mirror)
        return load_backend(model, backend=backend, threads=threads, mirror=mirror)
    except BackendError as e:
        raise click.ClickException(str(e)) from e


def _model_option(f: Any) -> Any:
    return click.option("--model", "model", envvar="FLM_DPU_MODEL", type=click.Path(), help=MODEL_HELP)(f)


def _mirror_option(f: Any) -> Any:
    return click.option("--mirror", is_flag=True,
                        help="average each face's landmarks with those of its mirrored crop (two "
                             "inferences per face: more accurate, half the model throughput; "
                             "runtime.backends.mirror)")(f)


def _backend_options(f: Any) -> Any:
    f = click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True,
                     help="CPU threads per inference call (ONNX/TFLite/Keras; one core is left for "
                          "video decode and overlay)")(f)
    f = click.option("--backend", type=click.Choice(BACKENDS), default=None,
                     help="engine; default: from the model file suffix / the bundle (vart on the board)")(f)
    return _model_option(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """flm-dpu: run the landmark detector on a camera, video or images (VART DPU, ONNX, TFLite, Keras)."""


# --------------------------------------------------------------------------- run
def _detector(name: str, yunet_model: Optional[str], detect_size: int) -> Any:
    from runtime.detect import DetectConfig, DetectorError, make_detector

    try:
        return make_detector(DetectConfig(name=name, yunet_model=yunet_model, max_side=detect_size))
    except DetectorError as e:
        raise click.ClickException(str(e)) from e


def _pipeline_config(max_faces: int, detect_every: int, no_smooth: bool, no_dms: bool, overlay: bool,
                     frames: Optional[int], independent: bool = False, live: bool = False) -> Any:
    from runtime.dms import DmsConfig
    from runtime.pipeline import PipelineConfig
    from runtime.smoothing import SmoothConfig
    from runtime.track import TrackConfig

    # live: merge background detections as soon as they are ready; files: at a fixed lag (deterministic)
    track = TrackConfig(max_faces=max_faces, detect_every=detect_every,
                        detect_lag=None if live else TrackConfig.detect_lag)
    return PipelineConfig(track=track,
                          smooth=SmoothConfig(enabled=not no_smooth), dms=None if no_dms else DmsConfig(),
                          overlay=overlay, max_frames=frames, independent_frames=independent)


@cli.command()
@click.option("--camera", type=int, default=None, help="camera index (/dev/videoN)")
@click.option("--video", type=click.Path(), default=None, help="video file")
@click.option("--images", type=click.Path(), default=None, help="folder of images (processed in name order)")
@_backend_options
@_mirror_option
@click.option("--no-display", is_flag=True, help="do not open a window (headless boards, batch runs)")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="write the annotated video (.mp4)")
@click.option("--jsonl", type=click.Path(dir_okay=False), default=None,
              help="write per-frame landmarks, boxes, DMS state and timings (one JSON object per line)")
@click.option("--max-faces", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option("--detect-every", type=click.IntRange(0), default=30, show_default=True,
              help="also run the face detector every K frames while tracking (0: only when a track is lost)")
@click.option("--no-smooth", is_flag=True, help="disable One-Euro smoothing of the landmarks")
@click.option("--no-dms", is_flag=True, help="disable driver-monitoring analytics")
@click.option("--detector", type=click.Choice(["haar", "yunet"]), default="haar", show_default=True)
@click.option("--yunet-model", type=click.Path(), default=None, help="YuNet ONNX file for --detector yunet")
@click.option("--detect-size", type=click.IntRange(64), default=320, show_default=True,
              help="longer side of the downscaled frame the detector sees")
@click.option("--frames", type=click.IntRange(1), default=None, help="stop after N frames")
@click.option("--quiet", is_flag=True, help="no per-event messages, only the summary")
@foreign_spec_options
def run(camera: Optional[int], video: Optional[str], images: Optional[str], model: Optional[str],
        backend: Optional[str], threads: int, mirror: bool, no_display: bool, output: Optional[str],
        jsonl: Optional[str],
        max_faces: int, detect_every: int, no_smooth: bool, no_dms: bool, detector: str,
        yunet_model: Optional[str], detect_size: int, frames: Optional[int], quiet: bool,
        foreign_spec: Optional[str]) -> None:
    """Detect, track and landmark faces live; overlay, video, JSONL and DMS output."""
    from runtime.pipeline import STAGES, FaceEngine, Pipeline
    from runtime.stats import Stats
    from runtime.video import DisplaySink, JsonlSink, SourceError, VideoSink, display_available, open_source

    if sum(x is not None for x in (camera, video, images)) != 1:
        raise click.UsageError("give exactly one source: --camera INDEX, --video FILE or --images DIR")
    if not no_display:
        why = display_available()
        if why:
            raise click.UsageError("cannot open a window: %s. Pass --no-display (with --output out.mp4 "
                                   "and/or --jsonl out.jsonl to keep the results)" % why)
    for path in (output, jsonl):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            folder = os.path.dirname(os.path.abspath(path))
            raise click.UsageError("output folder does not exist: %s" % folder)
    be = _load(model, backend, threads, foreign_spec, mirror)
    det = _detector(detector, yunet_model, detect_size)
    try:
        source = open_source(camera, video, images)
    except SourceError as e:
        raise click.ClickException(str(e)) from e
    cfg = _pipeline_config(max_faces, detect_every, no_smooth, no_dms, overlay=bool(output) or not no_display,
                           frames=frames, independent=images is not None, live=source.live)
    stats = Stats(STAGES)
    engine = FaceEngine(be, det, cfg, stats)
    sinks = []  # type: List[Any]
    js = None
    ok = False
    log = (lambda s: None) if quiet else _err
    try:
        h, w = source.shape[:2]
        if output:
            sinks.append(VideoSink(output, source.fps, (w, h)))
        if not no_display:
            sinks.append(DisplaySink())
        if jsonl:
            js = JsonlSink(jsonl)
        _err("flm-dpu: %s -> %s (%s, crop %s), detector %s%s"
             % (source.name, be.path, be.name, be.spec.size, detector,
                "" if source.frame_count is None else ", %d frames" % source.frame_count))
        summary = Pipeline(source, engine, sinks, js, log, cfg).run()
        ok = True
    except SourceError as e:
        raise click.ClickException(str(e)) from e
    except (BackendError, RuntimeError, ValueError, OSError) as e:  # engine/DPU/IO failure mid-run
        raise click.ClickException("processing %s stopped: %s: %s (partial outputs removed)"
                                   % (source.name, type(e).__name__, e)) from e
    finally:
        for s in sinks + ([js] if js else []):
            s.close(ok)
        source.close()
        engine.close()
        be.close()
    _print_summary(summary, stats, source, output, jsonl)
    if summary["frames_out"] == 0:
        raise click.ClickException("no frames were processed")
    if summary.get("interrupted") and not source.live:
        sys.exit(130)  # a file run cut short (Ctrl-C); stopping a camera this way is the normal end


def _print_summary(summary: Dict[str, Any], stats: Any, source: Any, output: Optional[str],
                   jsonl: Optional[str]) -> None:
    c = summary["counters"]
    n = summary["frames_out"]
    click.echo(stats.table())
    click.echo("frames %d, %.1f fps end-to-end, detector ran on %d frames, faces found in %d frames, "
               "no face in %d%s%s"
               % (n, summary["fps"], c.get("detector_runs", 0), n - summary["no_face_frames"],
                  summary["no_face_frames"],
                  ", %d stale frames dropped" % c["dropped"] if c.get("dropped") else "",
                  ", face at frame edge %d time(s)" % c["edge_events"] if c.get("edge_events") else ""))
    skipped = getattr(source, "skipped", None)
    if skipped:
        click.echo("skipped %d unreadable image(s): %s" % (len(skipped), ", ".join(skipped[:5])))
    if summary.get("interrupted"):
        click.echo("interrupted: outputs hold the frames processed so far")
    for path in (output, jsonl):
        if path:
            click.echo("wrote %s" % path)


# --------------------------------------------------------------------------- bench
def bench_backend(be: Backend, batch: int, iters: int, warmup: int = 10, workers: int = 1,
                  crops: Optional[np.ndarray] = None) -> Dict[str, float]:
    """Backend-only latency (p50/p95 per call), throughput (faces/s) and CPU per call at a batch size.

    With workers > 1, that many threads call `infer` at once (VART: one runner each). CPU time
    counts only the calling threads: exact for 1 intra-op thread, a lower bound otherwise."""
    rng = np.random.default_rng(0)
    size = be.spec.size
    x = crops if crops is not None else rng.integers(0, 256, (batch, size, size), dtype=np.uint8)
    if len(x) != batch:
        x = np.resize(x, (batch, size, size))
    for _ in range(warmup):
        be.infer(x)
    lat = [[] for _ in range(workers)]  # type: List[List[float]]

    cpu = [0.0] * workers

    def loop(k: int) -> None:
        c0 = time.thread_time()
        for _ in range(iters):
            a = time.perf_counter()
            be.infer(x)
            lat[k].append(time.perf_counter() - a)
        cpu[k] = time.thread_time() - c0

    t0 = time.perf_counter()
    if workers == 1:
        loop(0)
    else:
        ts = [threading.Thread(target=loop, args=(k,)) for k in range(workers)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    wall = time.perf_counter() - t0
    all_lat = np.concatenate([np.asarray(v) for v in lat])
    return {"batch": batch, "workers": workers, "calls": len(all_lat),
            "p50_ms": float(np.percentile(all_lat, 50) * 1e3),
            "p95_ms": float(np.percentile(all_lat, 95) * 1e3),
            "faces_per_s": batch * len(all_lat) / wall,
            # CPU time of the calling threads (= all of it with 1 intra-op thread): load-independent
            "cpu_ms_per_call": sum(cpu) * 1e3 / len(all_lat)}


def bench_video(be: Backend, video: str, frames: Optional[int] = None, loop: bool = False,
                detect_every: int = 30, max_faces: int = 1, overlay: bool = True,
                dms: bool = True) -> Dict[str, Any]:
    """End-to-end pipeline on a video file without display or writers (overlay still drawn)."""
    from runtime.detect import HaarDetector
    from runtime.pipeline import STAGES, FaceEngine, Pipeline
    from runtime.stats import Stats, rss_mb
    from runtime.video import VideoFileSource

    source = VideoFileSource(video, loop=loop)
    cfg = _pipeline_config(max_faces, detect_every, False, not dms, overlay, frames)
    stats = Stats(STAGES)
    engine = FaceEngine(be, HaarDetector(), cfg, stats)
    rss0 = rss_mb()

    class _NullSink:  # overlay is drawn only for sinks: measure its cost without writing
        def write(self, frame: np.ndarray) -> bool:
            return True

    try:
        summary = Pipeline(source, engine, [_NullSink()] if overlay else [], None, None, cfg).run()
    finally:
        source.close()
        engine.close()
    summary.update(rss_start_mb=rss0, rss_end_mb=rss_mb(), table=stats.table())
    return summary


@cli.command()
@_backend_options
@_mirror_option
@foreign_spec_options
@click.option("--video", type=click.Path(exists=True, dir_okay=False), default=None,
              help="also measure end-to-end FPS on this video (no display, no writers)")
@click.option("--iters", type=click.IntRange(1), default=200, show_default=True, help="calls per batch size")
@click.option("--batch", "batches", type=click.IntRange(1), multiple=True, default=(1, 8), show_default=True,
              help="batch size(s) to time (repeatable); a fixed-batch engine (VART) uses its own")
@click.option("--workers", type=click.IntRange(1, 16), default=1, show_default=True,
              help="threads calling the backend at once (VART: one runner per thread)")
@click.option("--frames", type=click.IntRange(1), default=None, help="end-to-end: stop after N frames "
              "(the video loops if it is shorter)")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="write results as JSON")
def bench(model: Optional[str], backend: Optional[str], threads: int, mirror: bool,
          foreign_spec: Optional[str],
          video: Optional[str], iters: int, batches: List[int], workers: int, frames: Optional[int],
          json_out: Optional[str]) -> None:
    """Backend-only latency/throughput and (with --video) end-to-end FPS."""
    from runtime.stats import format_table

    be = _load(model, backend, threads, foreign_spec, mirror)
    fixed = be.batch_size
    sizes = [fixed] if fixed else list(dict.fromkeys(batches))
    rows, results = [], {"model": be.info(), "backend_only": []}  # type: List[List[str]], Dict[str, Any]
    for b in sizes:
        r = bench_backend(be, b, iters, workers=workers)
        results["backend_only"].append(r)
        rows.append([be.name, str(b), str(workers), "%.2f" % r["p50_ms"], "%.2f" % r["p95_ms"],
                     "%.0f" % r["faces_per_s"], "%.2f" % r["cpu_ms_per_call"]])
    click.echo(format_table(["backend", "batch", "workers", "p50 ms", "p95 ms", "faces/s", "CPU ms/call"],
                            rows))
    if video:
        try:
            s = bench_video(be, video, frames=frames, loop=frames is not None)
        except Exception as e:
            raise click.ClickException("end-to-end run on %s failed: %s" % (video, e)) from e
        click.echo("\nend-to-end on %s: %d frames, %.1f fps, RSS %.0f -> %.0f MB; CPU ms/frame: %s"
                   % (video, s["frames_out"], s["fps"], s["rss_start_mb"], s["rss_end_mb"],
                      ", ".join("%s %.2f" % kv for kv in sorted(s["cpu_ms_per_frame"].items()))))
        click.echo(s.pop("table"))
        results["end_to_end"] = s
    be.close()
    if json_out:
        _write_json(json_out, results)


def _write_json(path: str, obj: Any) -> None:
    tmp = path + ".partial"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=str)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- eval
@cli.command("eval")
@_backend_options
@_mirror_option
@foreign_spec_options
@click.option("--data", type=click.Path(), required=True,
              help="WFLW-layout root (WFLW_annotations/, WFLW_images/)")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--box", type=click.Choice(["landmarks", "annotation"]), default="landmarks", show_default=True,
              help="crop from the ground-truth landmarks' box (PFLD protocol) or the annotation box")
@click.option("--limit", type=click.IntRange(1), default=None, help="evaluate only the first N faces")
@click.option("--recrop", type=click.IntRange(0), default=0, show_default=True,
              help="also measure tracking stability: re-crop each face from the model's own landmarks N "
                   "times, from the true box and from jittered boxes (runtime.stability; 0: off)")
@click.option("--jitter", default="0.1,0.2", show_default=True,
              help="with --recrop: start-box jitters, fractions of the face size")
@click.option("--jitter-mode", type=click.Choice(["uniform", "exact"]), default="uniform", show_default=True,
              help="with --recrop: shift and scale each up to the jitter (uniform) or by all of it (exact)")
@click.option("--draws", type=click.IntRange(1), default=4, show_default=True,
              help="with --recrop: jittered start boxes per face and jitter (seeded by --seed)")
@click.option("--seed", type=int, default=0, show_default=True, help="with --recrop: jitter seed")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="write the metrics as JSON")
def eval_cmd(model: Optional[str], backend: Optional[str], threads: int, mirror: bool,
             foreign_spec: Optional[str],
             data: str, split: str, batch_size: int, box: str, limit: Optional[int], recrop: int,
             jitter: str, jitter_mode: str, draws: int, seed: int, json_out: Optional[str]) -> None:
    """NME / failure rate / AUC on a WFLW-layout dataset, through the same crop and backend as `run`."""
    from runtime import evaluate as ev
    from runtime.stats import format_table
    from runtime.wflw import AnnotationError, read_annotations

    try:
        records = read_annotations(data, split)
    except (AnnotationError, OSError) as e:
        raise click.ClickException(str(e)) from e
    if limit:
        records = records[:limit]
    from runtime import stability

    try:
        jitters = stability.parse_jitters(jitter)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--jitter") from None
    be = _load(model, backend, threads, foreign_spec, mirror)
    study = None
    try:
        from tqdm import tqdm

        bar = tqdm(total=len(records), desc="eval", unit="face", file=sys.stderr)
        progress = bar.update  # type: Any
    except ImportError:
        bar, progress = None, None
    try:
        result = ev.evaluate(be, records, be.spec, batch_size, box=box, progress=progress)
        if recrop:
            study = stability.summarize_study(
                stability.recrop_study(be, records, recrop, jitters, draws, seed, jitter_mode, be.spec))
    except (AnnotationError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    finally:
        if bar is not None:
            bar.close()
        be.close()
    out = ev.summary(result)
    scalars = [(k, v) for k, v in out.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    regions = {k: v for k, v in (out.get("regions") or {}).items() if v is not None}
    for k, v in scalars:
        click.echo("%-28s %s" % (k, "%.5f" % v if isinstance(v, float) else v))
    subsets = out.get("attributes") or {}
    if subsets:
        def num(v: Any) -> str:
            return "-" if v is None else "%.4f" % v

        rows = [[k, str(v.get("count", "")), num(v.get("nme")), num(v.get("failure_rate")), num(v.get("auc"))]
                for k, v in subsets.items() if isinstance(v, dict)]
        click.echo(format_table(["subset", "faces", "nme", "failure_rate", "auc"], rows))
    if regions:
        click.echo("region nme: " + ", ".join("%s %.4f" % kv for kv in regions.items()))
    t = out.get("timing") or {}
    if t:
        click.echo("%-28s %.2f ms/face (batch %s)" % ("inference", t.get("infer_ms_per_face", float("nan")),
                                                     t.get("batch")))
    if study is not None:
        click.echo("re-crop stability (true box = ground-truth landmarks' box; NME in %):")
        click.echo(format_table(*stability.study_rows(study)))
        click.echo(stability.study_verdict(study))
        out["recrop"] = study
    if json_out:
        _write_json(json_out, out)
        click.echo("wrote %s" % json_out)


# --------------------------------------------------------------------------- info
def _version(dist: str) -> Optional[str]:
    try:
        from importlib import metadata
    except ImportError:  # pragma: no cover - Python < 3.8
        return None
    try:
        return metadata.version(dist)
    except Exception:  # noqa: BLE001 - PackageNotFoundError and friends
        return None


def _importable(mod: str) -> Optional[str]:
    import importlib

    try:
        m = importlib.import_module(mod)
    except ImportError as e:
        return "not importable (%s)" % e
    return getattr(m, "__version__", "importable")


def engines() -> List[List[str]]:
    """[name, status/version, provider] per backend, without importing TensorFlow."""
    import cv2

    rows = []
    ort = _version("onnxruntime")
    rows.append(["onnx", ort or "missing (pip install onnxruntime)", "onnxruntime"])
    lite = [(d, _version(d)) for d in ("ai-edge-litert", "tflite-runtime", "tensorflow")]
    have = [(d, v) for d, v in lite if v]
    rows.append(["tflite", have[0][1] if have else "missing (pip install ai-edge-litert)",
                 have[0][0] if have else "-"])
    tf = _version("tensorflow")
    rows.append(["keras", tf or "missing (needs tensorflow)", "tensorflow + tf_keras" if tf else "-"])
    vx = _importable("vart"), _importable("xir")
    ok = not any(str(v).startswith("not importable") for v in vx)
    rows.append(["vart", str(vx[0]) if ok else "missing: Vitis AI runtime (board image only)", "vart + xir"])
    from runtime.xmodel import xir_status

    rows.append(["xir (reads .xmodel)", xir_status(), "XIR"])
    haar = getattr(getattr(cv2, "data", None), "haarcascades", None)
    haar_ok = bool(haar) and hasattr(cv2, "CascadeClassifier")
    rows.append(["detector haar", "ok" if haar_ok else "missing (OpenCV 5?)",
                 "opencv %s" % cv2.__version__])
    return rows


def dpu_query() -> Optional[Dict[str, Any]]:
    """`xdputil query` on a board (DPU arch, fingerprint, versions), or None elsewhere."""
    exe = shutil.which("xdputil")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "query"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as e:
        return {"error": str(e)}
    try:
        return json.loads(out.stdout)
    except ValueError:
        return {"raw": out.stdout.strip()[:2000], "returncode": out.returncode}


def board_fingerprints(query: Any) -> List[str]:
    """Every "fingerprint" value in `xdputil query` output (its layout differs between releases)."""
    found = []  # type: List[str]
    if isinstance(query, dict):
        for k, v in query.items():
            if "fingerprint" in str(k).lower() and isinstance(v, (str, int)):
                found.append(str(v))
            else:
                found.extend(board_fingerprints(v))
    elif isinstance(query, list):
        for v in query:
            found.extend(board_fingerprints(v))
    return found


def _norm_fp(v: Any) -> str:
    try:
        return hex(int(str(v), 0))
    except ValueError:
        return str(v).lower()


def _check_fingerprint(model_fp: Any, board: List[str]) -> None:
    if model_fp is None or not board:
        return
    if _norm_fp(model_fp) in {_norm_fp(b) for b in board}:
        click.echo("DPU fingerprint %s matches this board" % model_fp)
    else:
        _err("WARNING: the model was compiled for DPU fingerprint %s but this board's DPU reports %s: VART "
             "will refuse it (CHECK fingerprint fail). Recompile with `flm vitis compile --fingerprint %s`."
             % (model_fp, ", ".join(board), board[0]))


@cli.command()
@_backend_options
def info(model: Optional[str], backend: Optional[str], threads: int) -> None:
    """Engines available (with versions), DPU details on a board, a model's I/O (fix points of xmodels)."""
    from runtime.stats import format_table

    click.echo("python %s, numpy %s, platform %s"
               % (platform.python_version(), np.__version__, platform.machine()))
    click.echo(format_table(["engine", "version / status", "provider"], engines()))
    q = dpu_query()
    if q is not None:
        click.echo("xdputil query:")
        click.echo(json.dumps(q, indent=2)[:4000])
    else:
        click.echo("DPU: xdputil not found (not a Vitis AI board image)")
    if not model:
        return
    from runtime.backends import resolve_model

    try:
        path, name, spec = resolve_model(model, backend)
    except BackendError as e:
        raise click.ClickException(str(e)) from e
    board = board_fingerprints(q)
    if os.path.isdir(model):
        from runtime.bundle import load_bundle

        b = load_bundle(model)
        click.echo("bundle %s: models %s; compiled for DPU fingerprint %s"
                   % (model, ", ".join("%s=%s" % (k, os.path.basename(v))
                                       for k, v in sorted(b.files.items())), b.fingerprint))
        _check_fingerprint(b.fingerprint, board)
    click.echo("model %s (%s), crop %s" % (path, name, json.dumps(spec.to_dict())))
    if name == "vart":
        from runtime.backends.vart_backend import describe_xmodel

        try:
            d = describe_xmodel(path, spec)
        except BackendError as e:
            raise click.ClickException(str(e)) from e
        click.echo("\n".join(d.pop("text")))  # every subgraph; the JSON below summarises the DPU one
        click.echo(json.dumps({k: v for k, v in d.items() if k not in ("subgraphs", "problems")}, indent=2,
                              default=str))
        _check_fingerprint(d.get("dpu_fingerprint"), board)
        if d["problems"]:
            raise click.ClickException("flm cannot run %s: %s" % (path, "; ".join(d["problems"])))
        return
    be = _load(path, name, threads)
    click.echo(json.dumps(be.info(), indent=2, default=str))
    be.close()


def main(argv: Optional[List[str]] = None) -> None:
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="flm-dpu")
