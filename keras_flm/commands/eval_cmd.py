"""`flm eval`: score a run's model file (H5, TFLite, ONNX, ...) on WFLW and record it in the run.

No TensorFlow at import: `flm --help` stays light; the keras backend imports it only
when an H5 model is evaluated.
"""
import os

import click

from runtime.backends import BACKENDS
from runtime.evaluate import BOX_SOURCES


@click.command("eval")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False),
              help="Run directory (runs/NAME): config.json, models; metrics.json and report.md are updated.")
@click.option("--model", default=None,
              help="Model file to score (.h5/.tflite/.onnx/.xmodel), as a path or a name inside the run "
                   "dir. Default: RUN/fp32.h5.")
@click.option("--backend", type=click.Choice(BACKENDS), default=None,
              help="Engine to run it with (default: from the file suffix).")
@click.option("--data", "data_root", default=None, type=click.Path(),
              help="WFLW-layout data root (default: the run config's data root).")
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True,
              help="test = the WFLW test list; val = the run's own held-out split (same seed as training).")
@click.option("--name", default=None,
              help="Artifact name in metrics.json (default: file stem, e.g. fp32, ptq_int8; "
                   "fp32.tflite beside fp32.h5 becomes fp32_tflite; '_val' is appended for --split val).")
@click.option("--baseline", is_flag=True,
              help="Also score the mean-shape baseline (mean training shape in every crop) as 'mean_shape'.")
@click.option("--box", type=click.Choice(BOX_SOURCES), default="landmarks", show_default=True,
              help="Crop box: GT landmarks' bounding box (PFLD protocol) or the annotation's box.")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None, help="Inference threads (backend default).")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Score only the first N faces (quick checks; recorded in metrics.json).")
def eval_cmd(run_dir, model, backend, data_root, split, name, baseline, box, batch_size, threads,
             limit) -> None:
    """Evaluate a model file with the runtime's own crop/infer/decode code (NME, FR@0.1, AUC@0.1).

    Writes RUN/metrics.json[NAME] (other artifacts' entries are kept), RUN/eval/NAME.csv
    (per-face NME), ced.png, attributes.png, regions.png over all artifacts evaluated so far,
    and the Evaluation section of RUN/report.md.
    """
    from tqdm import tqdm

    from keras_flm import evaluate as kev
    from runtime import evaluate as rev

    try:
        if not os.path.isdir(run_dir):
            raise kev.EvalError("run directory not found: %s (create it with `flm train --run %s`)"
                                % (run_dir, run_dir))
        cfg, warning = kev.run_config(run_dir, required=(split == "val"))
        if warning:
            click.echo("warning: " + warning, err=True)
        model_path = kev.resolve_model(run_dir, model)
        data_root = data_root or cfg.data.get("root")
        if not data_root:
            raise kev.EvalError("no data root: pass --data ROOT (the run config records none)")
        kev.current_metrics(run_dir)  # a corrupt metrics.json fails now, not after the evaluation
        records, train = kev.load_split(data_root, split, cfg, need_train=baseline)
        total = len(records)
        records = records[:limit] if limit else records
        name = kev.check_name(name or kev.artifact_name(model_path, split))
        click.echo("evaluating %s as %r on %d %s faces of %s" % (model_path, name, len(records), split,
                                                                 data_root), err=True)
        meta = {"model": os.path.relpath(model_path, run_dir), "split": split,
                "model_bytes": os.path.getsize(model_path) if os.path.isfile(model_path) else None,
                "data": os.path.abspath(data_root), "limit": limit, "faces_in_split": total}
        with tqdm(total=len(records), unit="face", desc=name, disable=None) as bar:
            result = kev.evaluate_model(model_path, records, spec=cfg.crop, backend=backend,
                                        batch_size=batch_size, threads=threads, box=box, progress=bar.update)
        all_metrics = kev.record_evaluation(run_dir, name, result, meta)
        if baseline:
            bname = kev.BASELINE if split == "test" else "%s_%s" % (kev.BASELINE, split)
            res = rev.mean_shape_baseline(train, records, spec=cfg.crop, box=box)
            all_metrics = kev.record_evaluation(run_dir, bname, res, dict(meta, model=None, model_bytes=None))
    except kev.EvalError as e:
        raise click.ClickException(str(e)) from None

    entries = kev.evaluation_entries(all_metrics, split)
    click.echo(kev.format_text_table(*kev.table_rows(entries)))
    click.echo("")
    click.echo(kev.format_text_table(*kev.attribute_rows(entries)))
    click.echo("\nwrote %s (%r), %s, plots and the %r section of %s"
               % (os.path.join(run_dir, "metrics.json"), name,
                  os.path.join(run_dir, kev.EVAL_DIR, name + ".csv"), kev.SECTION,
                  os.path.join(run_dir, "report.md")))
