#!/usr/bin/env python
"""The main job end to end: synthetic data -> train -> eval -> export -> PTQ/QAT -> report
-> flm-dpu on a generated face video -> DPU lint -> board bundle -> benchmark.

`make demo` runs this on built-in synthetic data (<= 15 min on 2 cores);
`DATA=/path/to/WFLW make demo` runs the same chain on real WFLW with the paper's schedule.
Each step is a real `flm`/`flm-dpu` command, printed before it runs, so a user can
copy any step and re-run it alone.
"""
import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

# the names `flm report` looks for by default when it adds the DMS stills
from keras_flm.run_report import DEFAULT_JSONL, DEFAULT_VIDEO

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Schedules. `budget` is training's wall-clock budget in minutes (`flm train --time-budget`). The demo
# uses a fixed epoch schedule instead: with a 4-minute budget a machine shared with another job got
# through 17 epochs and learnt little (test NME 14.8 % vs 16.7 % for the mean shape). 35 epochs take
# ~4 min on an idle 2-core machine (make demo ~9 min); a loaded machine takes longer but learns as much.
PROFILES = {
    "demo": dict(n_faces=2000, width=0.25, epochs=35, budget=None, augment="light", qat_epochs=1,
                 qat_steps=60,
                 calib=200, frames=300, bench=["--iters", "100", "--frames", "200"]),
    "smoke": dict(n_faces=160, width=0.25, epochs=1, budget=None, augment="light", qat_epochs=1, qat_steps=4,
                  calib=32, frames=30, bench=["--iters", "20"]),
    "wflw": dict(n_faces=0, width=1.0, epochs=100, budget=None, augment="full", qat_epochs=10, qat_steps=None,
                 calib=500, frames=600, bench=[]),
}


def step(title: str, argv, log: list) -> None:
    """Run one command, streaming its output; stop the demo with its exit code on failure."""
    print("\n\033[1m== %s\033[0m\n$ %s" % (title, " ".join(shlex.quote(str(a)) for a in argv)), flush=True)
    t0 = time.time()
    rc = subprocess.call([str(a) for a in argv], cwd=str(REPO))
    dt = time.time() - t0
    log.append((title, dt, rc))
    if rc != 0:
        print("\nstep '%s' failed (exit %d) after %.0f s" % (title, rc, dt), file=sys.stderr)
        sys.exit(rc)
    print("-- %s: %.0f s" % (title, dt), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="WFLW root (default: generate synthetic data)")
    ap.add_argument("--run", help="run directory (default runs/demo, runs/wflw or runs/demo-smoke)")
    ap.add_argument("--width", type=float, help="width multiplier override")
    ap.add_argument("--epochs", type=int, help="training epochs override")
    ap.add_argument("--smoke", action="store_true", help="tiny chain for CI (a few minutes)")
    ap.add_argument("--data-dir", help="where to write/reuse the synthetic data (default data/synth)")
    args = ap.parse_args()

    prof = dict(PROFILES["smoke" if args.smoke else "wflw" if args.data else "demo"])
    if args.width:
        prof["width"] = args.width
    if args.epochs:
        prof["epochs"] = args.epochs
    run = Path(args.run or ("runs/demo-smoke" if args.smoke else "runs/wflw" if args.data else "runs/demo"))
    flm, dpu = BIN / "flm", BIN / "flm-dpu"
    log = []  # type: list
    t_start = time.time()

    if args.data:
        data = Path(args.data)
    else:
        data = Path(args.data_dir or ("data/synth-smoke" if args.smoke else "data/synth"))
        marker = REPO / data / "WFLW_annotations"
        if marker.is_dir():
            print("using existing synthetic data in %s" % data)
        else:
            step("generate synthetic WFLW-layout data", [flm, "data", "synth", "--out", data,
                                                         "--n", prof["n_faces"]], log)
    step("check data", [flm, "data", "check", "--data", data], log)
    step("train (width %g, %d epochs)" % (prof["width"], prof["epochs"]),
         [flm, "train", "--data", data, "--run", run, "--width", prof["width"], "--epochs", prof["epochs"],
          "--augment", prof["augment"], "--overwrite"]
         + (["--time-budget", prof["budget"]] if prof["budget"] else []), log)
    step("evaluate FP32 (+ mean-shape baseline)",
         [flm, "eval", "--run", run, "--data", data, "--baseline"], log)
    step("export FP32 ONNX", [flm, "export", "onnx", "--run", run], log)
    step("export FP32 TFLite", [flm, "export", "tflite", "--run", run], log)
    step("PTQ INT8", [flm, "quantize", "ptq", "--run", run, "--calib", prof["calib"]], log)
    step("QAT INT8", [flm, "quantize", "qat", "--run", run, "--epochs", prof["qat_epochs"],
                      "--calib", prof["calib"]]
         + (["--steps-per-epoch", prof["qat_steps"]] if prof["qat_steps"] else []), log)

    video = run / "demo_face.mp4"
    step("render a synthetic face video", [sys.executable, "-c",
         "from keras_flm.synth import write_face_video; write_face_video(%r, %d, seed=3)"
         % (str(video), prof["frames"])], log)
    model = run / "ptq_int8.onnx" if (REPO / run / "ptq_int8.onnx").exists() else run / "fp32.onnx"
    step("flm-dpu run on the video",
         [dpu, "run", "--video", video, "--model", model, "--no-display",
          "--output", run / DEFAULT_VIDEO, "--jsonl", run / DEFAULT_JSONL], log)
    step("report: Table 2, run config + training curves, DMS stills", [flm, "report", "--run", run], log)
    step("DPU compatibility lint", [flm, "vitis", "lint", "--run", run], log)
    step("board bundle", [flm, "vitis", "bundle", "--run", run], log)
    step("benchmark (Table 3)", [flm, "bench", "--run", run, "--video", video] + prof["bench"], log)

    total = time.time() - t_start
    print("\n\033[1m== done in %.1f min\033[0m" % (total / 60))
    for title, dt, _ in log:
        print("  %6.0f s  %s" % (dt, title))
    print("\nreport: %s" % (REPO / run / "report.md"))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
