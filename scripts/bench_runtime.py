#!/usr/bin/env python
"""Benchmark the flm-dpu runtime: backend-only INT8/FP32 latency and throughput (batch 1 and 8),
end-to-end FPS of the threaded pipeline on a 640x480 one-face video with tracking, and memory
(RSS at the start and end of a long run). Prints a table; speed claims live here, not in tests.

    .venv/bin/python scripts/bench_runtime.py --int8 runs/NAME/ptq_int8.onnx --fp32 runs/NAME/fp32.onnx
    .venv/bin/python scripts/bench_runtime.py --run runs/NAME --frames 10000

Without --video, a synthetic 300-frame face video is rendered once (keras_flm.synth) into
--cache; the end-to-end run loops it for --frames frames. Targets on the 2-core dev VM with
the full-size model: INT8 backend-only >= 200 faces/s, end-to-end >= 150 FPS.
"""
import argparse
import json
import os
import sys
import time
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.backends import load_backend  # noqa: E402
from runtime.cli import bench_backend, bench_video  # noqa: E402
from runtime.stats import format_table, rss_mb  # noqa: E402


def _find(run: Optional[str], names: List[str]) -> Optional[str]:
    if not run:
        return None
    for n in names:
        p = os.path.join(run, n)
        if os.path.isfile(p):
            return p
    return None


def synthetic_video(cache: str, frames: int = 300) -> str:
    """A 640x480 one-face video (blinks, drifts, turns a little); rendered once, then reused."""
    path = os.path.join(cache, "bench_face_640x480_%d.mp4" % frames)
    if not os.path.isfile(path):
        from keras_flm.synth import write_face_video

        os.makedirs(cache, exist_ok=True)
        print("rendering %s ..." % path, file=sys.stderr)
        write_face_video(path, frames, size=(640, 480), fps=30.0, seed=0, progress=True)
    return path


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="run directory to take ptq_int8.onnx / fp32.onnx from")
    ap.add_argument("--int8", help="INT8 model (ONNX QDQ, TFLite or xmodel)")
    ap.add_argument("--fp32", help="FP32 model (ONNX, TFLite or H5)")
    ap.add_argument("--video", help="640x480 one-face video (default: render a synthetic one)")
    ap.add_argument("--cache", default=os.path.join("runs", "_bench"),
                    help="where the synthetic video is kept")
    ap.add_argument("--iters", type=int, default=300, help="backend-only calls per batch size")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads of the CPU engines")
    ap.add_argument("--frames", type=int, default=3000, help="end-to-end frames (the video loops)")
    ap.add_argument("--detect-every", type=int, default=30)
    ap.add_argument("--no-overlay", action="store_true", help="end-to-end without drawing")
    ap.add_argument("--json", help="also write the results as JSON")
    a = ap.parse_args(argv)

    int8 = a.int8 or _find(a.run, ["ptq_int8.onnx", "qat_int8.onnx", "ptq_int8.tflite"])
    fp32 = a.fp32 or _find(a.run, ["fp32.onnx", "fp32.tflite"])
    if not int8 and not fp32:
        ap.error("no model: pass --int8/--fp32 or --run DIR holding ptq_int8.onnx / fp32.onnx")
    rss0 = rss_mb()
    results = {"rss_start_mb": rss0, "backend_only": [], "end_to_end": None}  # type: Dict[str, Any]
    rows = []
    for label, path in (("INT8", int8), ("FP32", fp32)):
        if not path:
            continue
        be = load_backend(path, threads=a.threads)
        sizes = [be.batch_size] if be.batch_size else a.batches
        for b in sizes:
            r = bench_backend(be, b, a.iters, warmup=20)
            r.update(model=label, path=path, backend=be.name, threads=a.threads)
            results["backend_only"].append(r)
            rows.append(["%s %s" % (label, be.name), os.path.basename(path), b, "%.2f" % r["p50_ms"],
                         "%.2f" % r["p95_ms"], "%.0f" % r["faces_per_s"], "%.2f" % r["cpu_ms_per_call"],
                         "%.0f" % (b * 1e3 / r["cpu_ms_per_call"])])
        be.close()
    print("load average before: %.2f %.2f %.2f (the VM is shared: compare rows of one run)" % os.getloadavg())
    print(format_table(["model", "file", "batch", "p50 ms/call", "p95 ms/call", "faces/s", "CPU ms/call",
                        "faces/CPU-s"], [[str(c) for c in r] for r in rows]))

    video = a.video or synthetic_video(a.cache)
    e2e_model = int8 or fp32
    be = load_backend(e2e_model, threads=a.threads)
    t0 = time.perf_counter()
    s = bench_video(be, video, frames=a.frames, loop=True, detect_every=a.detect_every,
                    overlay=not a.no_overlay)
    wall = time.perf_counter() - t0
    be.close()
    table = s.pop("table")
    results["end_to_end"] = dict(s, model=e2e_model, video=video, wall_s=wall)
    c = s["counters"]
    print("\nend-to-end: %s on %s (640x480, tracking, detect every %d, overlay %s), threads %d"
          % (os.path.basename(e2e_model), os.path.basename(video), a.detect_every,
             "off" if a.no_overlay else "on", a.threads))
    print(table)
    cpu = s["cpu_ms_per_frame"]
    total = s["process_cpu_ms_per_frame"]
    cores = os.cpu_count() or 1
    # an idle machine runs each stage thread on its own core until the cores run out
    bound = 1e3 / max(max(cpu.values()), total / cores)
    results["end_to_end"]["idle_fps_bound"] = bound
    print("CPU ms/frame: %s; whole process %.2f -> idle-machine bound %.0f FPS on %d cores"
          % (", ".join("%s %.2f" % kv for kv in sorted(cpu.items())), total, bound, cores))
    print(format_table(["frames", "FPS", "detector runs", "tracked frames", "no-face frames", "RSS start MB",
                        "RSS end MB", "load avg"],
                       [[str(s["frames_out"]), "%.1f" % s["fps"], str(c.get("detector_runs", 0)),
                         str(c.get("tracked_frames", 0)), str(s["no_face_frames"]),
                         "%.0f" % s["rss_start_mb"], "%.0f" % s["rss_end_mb"], "%.2f" % os.getloadavg()[0]]]))
    if a.json:
        with open(a.json + ".partial", "w") as f:
            json.dump(results, f, indent=2, default=str)
        os.replace(a.json + ".partial", a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
