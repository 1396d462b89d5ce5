"""`flm bench`: the paper's Table 3 regenerated on this machine (entry point in pyproject).

No TensorFlow at import: the logic (quant.bench) is imported inside the command, and TF
only loads when a Keras artifact is timed.
"""
from typing import Optional, Tuple

import click

from quant.config import BenchConfig
from runtime.backends.foreign import SPEC_HELP


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


@click.command("bench")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False),
              help="Run directory (runs/NAME): every artifact in it is timed (fp32.h5, *.tflite, *.onnx, "
                   "xmodels when VART is importable).")
@click.option("--video", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Video for the end-to-end pipeline FPS [default: render RUN/bench_video.mp4, a synthetic "
                   "640x480 one-face video, once].")
@click.option("--iters", type=click.IntRange(1), default=BenchConfig.iters, show_default=True,
              help="Timed calls per batch size and repeat.")
@click.option("--warmup", type=click.IntRange(0), default=BenchConfig.warmup, show_default=True,
              help="Untimed calls before each timed loop.")
@click.option("--repeats", type=click.IntRange(1), default=BenchConfig.repeats, show_default=True,
              help="Interleaved passes over all artifacts; cells are medians, their spread is the noise.")
@click.option("--threads", type=click.IntRange(1, 64), default=BenchConfig.threads, show_default=True,
              help="Intra-op threads of ONNX Runtime / TFLite / TensorFlow.")
@click.option("--pipeline-threads", type=click.IntRange(1, 64), default=BenchConfig.pipeline_threads,
              show_default=True, help="Intra-op threads of the engines inside the end-to-end pipeline "
                                      "(`flm-dpu run`'s default; the other core decodes, detects and draws).")
@click.option("--frames", type=click.IntRange(0), default=BenchConfig.frames, show_default=True,
              help="End-to-end pipeline frames per repeat (the video loops); 0 skips the pipeline.")
@click.option("--only", multiple=True, metavar="ARTIFACT",
              help="Time only these run artifacts (file name or metrics name; repeatable).")
@click.option("--mirror", multiple=True, metavar="ARTIFACT",
              help="Also time and score this run artifact with mirror averaging (a second inference per "
                   "face on the mirrored crop, as `flm-dpu run --mirror`): row NAME_mirror (repeatable).")
@click.option("--foreign", "foreign_paths", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A foreign ONNX landmark model (e.g. a PFLD-pytorch export) to put beside flm's rows "
                   "(repeatable).")
@click.option("--foreign-spec", "foreign_specs", multiple=True, metavar="SPEC",
              help="Spec of each --foreign model (one for all, or one per model, in order). " + SPEC_HELP)
@click.option("--foreign-name", "foreign_names", multiple=True, metavar="NAME",
              help="Row / metrics.json name of each --foreign model [default: foreign_<file stem>].")
@click.option("--data", "data_root", type=click.Path(file_okay=False), default=None,
              help="WFLW-layout root to evaluate foreign models on [default: the run's data root].")
@click.option("--eval-foreign/--no-eval-foreign", default=True, show_default=True,
              help="Score foreign models on the test split (runtime.evaluate, like `flm eval`) when "
                   "metrics.json has no up-to-date entry for them.")
@click.option("--eval-missing", is_flag=True,
              help="Also evaluate run artifacts that have no (or a stale) metrics.json entry.")
@click.option("--eval-limit", type=click.IntRange(1), default=None,
              help="Evaluate foreign models on the first N test faces only (a quick look; marked in "
                   "the report).")
def bench(run_dir: str, video: Optional[str], iters: int, warmup: int, repeats: int, threads: int,
          pipeline_threads: int, frames: int, only: Tuple[str, ...], mirror: Tuple[str, ...],
          foreign_paths: Tuple[str, ...],
          foreign_specs: Tuple[str, ...],
          foreign_names: Tuple[str, ...], data_root: Optional[str], eval_foreign: bool, eval_missing: bool,
          eval_limit: Optional[int]) -> None:
    """Table 3 on this machine: latency (p50/p95, batch 1), throughput (batch 1 and 8), pipeline FPS,
    size and accuracy of every artifact of a run (+ foreign ONNX models).

    Writes RUN/bench.json, RUN/bench.png and the "Benchmark (Table 3)" section of RUN/report.md.
    """
    from quant import bench as B
    from quant import run as R

    R.require_run(run_dir)
    cfg = BenchConfig(iters=iters, warmup=warmup, repeats=repeats, threads=threads,
                      pipeline_threads=pipeline_threads, frames=frames, eval_limit=eval_limit)
    try:
        arts, _ = B.discover(run_dir, only)
        taken = [a.name for a in arts + B.mirrored_artifacts(run_dir, mirror)]
        foreign = B.foreign_artifacts(foreign_paths, foreign_specs, foreign_names, taken)
        result = B.run_benchmark(run_dir, cfg, video=video, foreign=foreign, only=only, mirror=mirror,
                                 data_root=data_root,
                                 eval_foreign=eval_foreign, eval_missing=eval_missing, log=_echo)
    except B.BenchError as e:
        raise click.ClickException(str(e)) from None
    click.echo(B.text_table(result))
    for note in result["notes"]:
        click.echo("note: " + note)
    click.echo("wrote %s, %s and the %r section of %s"
               % (B.JSON_FILE, B.PLOT_FILE, B.SECTION, "report.md"))
