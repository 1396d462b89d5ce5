#!/usr/bin/env python
"""The paper's Table 3 on this machine: every artifact of a run (Keras, TFLite, ONNX Runtime,
VART on a board) plus foreign ONNX models, timed by the same code as `flm bench`
(quant.bench.run_benchmark); prints the table and writes RUN/bench.json, RUN/bench.png and
the "Benchmark (Table 3)" section of RUN/report.md.

    .venv/bin/python scripts/bench_backends.py --run runs/NAME
    .venv/bin/python scripts/bench_backends.py --run runs/NAME --iters 3 --repeats 1 --frames 30
    .venv/bin/python scripts/bench_backends.py --run runs/NAME --foreign pfld.onnx \\
        --foreign-spec channels=3,size=112,norm=0-1,layout=nchw,out=flat,frame=crop01,output=1
"""
import argparse
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from quant.config import BenchConfig  # noqa: E402


def main(argv: Optional[List[str]] = None) -> int:
    d = BenchConfig()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run directory (runs/NAME)")
    ap.add_argument("--video", help="video for the pipeline FPS (default: RUN/bench_video.mp4, rendered)")
    ap.add_argument("--iters", type=int, default=d.iters, help="timed calls per batch size and repeat")
    ap.add_argument("--warmup", type=int, default=d.warmup)
    ap.add_argument("--repeats", type=int, default=d.repeats)
    ap.add_argument("--threads", type=int, default=d.threads)
    ap.add_argument("--pipeline-threads", type=int, default=d.pipeline_threads,
                    help="engine threads inside the end-to-end pipeline (flm-dpu run's default)")
    ap.add_argument("--frames", type=int, default=d.frames, help="pipeline frames per repeat (0: skip)")
    ap.add_argument("--only", action="append", default=[], help="time only this artifact (repeatable)")
    ap.add_argument("--foreign", action="append", default=[], help="foreign ONNX model (repeatable)")
    ap.add_argument("--foreign-spec", action="append", default=[], help="spec of each --foreign model")
    ap.add_argument("--foreign-name", action="append", default=[], help="row name of each --foreign model")
    ap.add_argument("--data", help="dataset root for evaluating foreign models")
    ap.add_argument("--no-eval-foreign", action="store_true")
    ap.add_argument("--eval-limit", type=int, default=None)
    a = ap.parse_args(argv)
    for name in ("iters", "repeats", "threads", "pipeline_threads"):
        if getattr(a, name) < 1:
            ap.error("--%s must be >= 1" % name.replace("_", "-"))
    if a.warmup < 0 or a.frames < 0:
        ap.error("--warmup and --frames must be >= 0")

    import click

    from quant import bench as B

    cfg = BenchConfig(iters=a.iters, warmup=a.warmup, repeats=a.repeats, threads=a.threads,
                      pipeline_threads=a.pipeline_threads, frames=a.frames, eval_limit=a.eval_limit)
    log = lambda s: print(s, file=sys.stderr)  # noqa: E731
    try:
        if not os.path.isdir(a.run):
            raise B.BenchError("run directory not found: %s" % a.run)
        arts, _ = B.discover(a.run, a.only)
        foreign = B.foreign_artifacts(a.foreign, a.foreign_spec, a.foreign_name, [x.name for x in arts])
        result = B.run_benchmark(a.run, cfg, video=a.video, foreign=foreign, only=a.only, data_root=a.data,
                                 eval_foreign=not a.no_eval_foreign, log=log)
    except (B.BenchError, click.ClickException) as e:
        msg = e.format_message() if isinstance(e, click.ClickException) else str(e)
        print("error: %s" % msg, file=sys.stderr)
        return 2
    print(B.text_table(result))
    for note in result["notes"]:
        print("note: " + note)
    m = result["machine"]
    print("machine: %s, %s cores, threads %d; load average %s -> %s"
          % (m["cpu"], m["cores"], a.threads, result["load_before"], result["load_after"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
