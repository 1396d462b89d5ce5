"""`flm quantize ptq|qat`, `flm export onnx|tflite`, `flm report` (entry points in pyproject).

No TensorFlow at import: every command imports its machinery inside the function, so
`flm --help` stays fast and TF-free.
"""
import click

from keras_flm.config import AUGMENT_PRESETS
from quant.config import CALIBRATIONS, GRANULARITIES, IO_TYPES, SCHEMES, ExportConfig, PtqConfig, QatConfig

_RUN = click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False),
                    help="Run directory (runs/NAME) holding config.json and fp32.h5 from `flm train`.")
_EVAL = click.option("--eval/--no-eval", "evaluate", default=True, show_default=True,
                     help="Score every artifact written on the test split (metrics.json, like `flm eval`).")
_IO = click.option("--io", type=click.Choice(IO_TYPES), default=PtqConfig.io, show_default=True,
                   help="TFLite input/output tensor type (the inside is INT8 either way).")
_SCHEME = click.option("--scheme", type=click.Choice(SCHEMES), default="default", show_default=True,
                       help="default = TFLite 8-bit (per-tensor weights, asymmetric activations); "
                            "pof2 = the DPU's symmetric power-of-two scales.")


def _set(obj, **kwargs):
    for k, v in kwargs.items():
        if v is not None:
            setattr(obj, k, v)
    return obj


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


@click.group()
def quantize() -> None:
    """INT8 quantization of a trained run: PTQ and QAT, TFLite and ONNX."""


@quantize.command("ptq")
@_RUN
@click.option("--calib", type=click.IntRange(1), default=PtqConfig.calib_images, show_default=True,
              help="Calibration images from the run's training split (paper: 500).")
@_IO
@_SCHEME
@click.option("--granularity", type=click.Choice(GRANULARITIES), default=PtqConfig.granularity,
              show_default=True, help="TFLite weight scales of ptq_int8.tflite (the other granularity "
                                      "is written too, as ptq_int8_pc.tflite or _pt, for comparison).")
@click.option("--onnx-granularity", type=click.Choice(GRANULARITIES), default=PtqConfig.onnx_granularity,
              show_default=True, help="ONNX weight scales of ptq_int8.onnx (7-bit weights; the other "
                                      "granularity is written too, as ptq_int8_pt.onnx or _pc).")
@click.option("--calibration", type=click.Choice(CALIBRATIONS), default=PtqConfig.act_calibration,
              show_default=True,
              help="Activation ranges (default scheme): MIN_MSE search on the quantized network (as "
                   "the DPU's calibration), percentile clipping, min/max, or the TFLite converter's own "
                   "calibrator. pof2 always searches MIN_MSE positions.")
@click.option("--percentile", type=click.FloatRange(90, 100), default=PtqConfig.act_percentile,
              show_default=True, help="Upper percentile kept by --calibration percentile.")
@click.option("--onnx/--no-onnx", default=True, show_default=True,
              help="Also ONNX Runtime static QDQ (both granularities) from fp32.onnx.")
@click.option("--seed", type=int, default=PtqConfig.calib_seed, show_default=True,
              help="Which calibration images are drawn.")
@_EVAL
def ptq_cmd(run_dir, calib, io, scheme, granularity, onnx_granularity, calibration, percentile, onnx, seed,
            evaluate) -> None:
    """Post-training quantization: RUN/ptq_int8.tflite (+ _pc), ptq_int8.onnx (+ _pt), or ptq_pof2.tflite.

    Calibration time and settings go to RUN/quant.json, parity to RUN/parity.json.
    """
    from quant import flows

    pcfg = _set(PtqConfig(), calib_images=calib, io=io, granularity=granularity,
                onnx_granularity=onnx_granularity, calib_seed=seed,
                act_calibration=calibration, act_percentile=percentile)
    flows.ptq(run_dir, pcfg, ExportConfig(), scheme, onnx=onnx, evaluate=evaluate, log=_echo)


@quantize.command("qat")
@_RUN
@_SCHEME
@click.option("--epochs", type=click.IntRange(1), default=QatConfig.epochs, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=QatConfig.lr, show_default=True,
              help="Initial fine-tuning learning rate (cosine decay to --lr-min).")
@click.option("--lr-min", type=click.FloatRange(min=0, min_open=True), default=QatConfig.lr_min,
              show_default=True)
@click.option("--patience", type=click.IntRange(1), default=QatConfig.patience, show_default=True,
              help="Early stopping on validation NME (epochs).")
@click.option("--batch-size", type=click.IntRange(1), default=QatConfig.batch_size, show_default=True)
@click.option("--steps-per-epoch", type=click.IntRange(0), default=QatConfig.steps_per_epoch,
              show_default=True, help="0 = one pass over the training split.")
@click.option("--max-images", type=click.IntRange(0), default=QatConfig.max_images, show_default=True,
              help="Fine-tune on a deterministic subset (quick runs); 0 = the run's own selection.")
@click.option("--calib", type=click.IntRange(1), default=QatConfig.calib_images, show_default=True,
              help="Calibration images that initialise the activation ranges.")
@click.option("--augment", type=click.Choice(["run"] + list(AUGMENT_PRESETS)), default=QatConfig.augment,
              show_default=True,
              help="Augmentation of the fine-tuning crops: the run's own recipe or a preset.")
@_IO
@click.option("--onnx/--no-onnx", default=True, show_default=True, help="Also export ONNX QDQ.")
@_EVAL
def qat_cmd(run_dir, scheme, epochs, lr, lr_min, patience, batch_size, steps_per_epoch, max_images, calib,
            augment, io, onnx, evaluate) -> None:
    """Quantization-aware fine-tuning from RUN/train.h5: RUN/qat_int8.{tflite,onnx} (or qat_pof2.*)."""
    from quant import flows

    if lr_min > lr:
        raise click.BadParameter("--lr-min %g is above --lr %g" % (lr_min, lr), param_hint="--lr-min")
    qcfg = _set(QatConfig(), epochs=epochs, lr=lr, lr_min=lr_min, patience=patience, batch_size=batch_size,
                steps_per_epoch=steps_per_epoch, max_images=max_images, calib_images=calib, augment=augment)
    flows.qat(run_dir, qcfg, _set(PtqConfig(), io=io), ExportConfig(), scheme, onnx=onnx, evaluate=evaluate,
              log=_echo)


@click.group()
def export() -> None:
    """FP32 exports of RUN/fp32.h5 with parity checks against Keras on real crops."""


@export.command("onnx")
@_RUN
@click.option("--opset", type=click.IntRange(13), default=ExportConfig.onnx_opset, show_default=True)
@_EVAL
def export_onnx(run_dir, opset, evaluate) -> None:
    """RUN/fp32.onnx (tf2onnx, fixed opset, dynamic batch); parity in RUN/parity.json."""
    from quant import flows

    xcfg = _set(ExportConfig(), onnx_opset=opset)
    out = flows.export_onnx(run_dir, xcfg, _echo)
    _fail_on_parity(out)
    if evaluate:
        flows._evaluate(run_dir, [out["path"]], flows.R.load_config(run_dir), _echo)


@export.command("tflite")
@_RUN
@_EVAL
def export_tflite(run_dir, evaluate) -> None:
    """RUN/fp32.tflite; parity in RUN/parity.json."""
    from quant import flows

    out = flows.export_tflite(run_dir, ExportConfig(), _echo)
    _fail_on_parity(out)
    if evaluate:
        flows._evaluate(run_dir, [out["path"]], flows.R.load_config(run_dir), _echo)


def _fail_on_parity(out) -> None:
    p = out["parity"]
    if not p.get("ok", True):
        raise click.ClickException("parity check failed for %s: max |diff| %.3g > %.3g (see parity.json)"
                                   % (out["path"], p["max_abs_diff"], p["tolerance"]))


@click.command("report")
@_RUN
@click.option("--evaluate/--no-evaluate", default=True, show_default=True,
              help="Score artifacts whose metrics.json entry is missing or older than the file.")
@click.option("--compare", "compare", multiple=True, type=click.Path(file_okay=False),
              help="Other run(s) to add as rows (e.g. the relu6 run beside the relu one).")
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True,
              help="test = the WFLW test list; val = the run's held-out validation faces.")
@click.option("--video", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Overlay video of `flm-dpu run --output` for the DMS stills "
                   "[default: RUN/demo_overlay.mp4].")
@click.option("--jsonl", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Its `--jsonl` results for the DMS summary [default: RUN/demo.jsonl].")
def report(run_dir, evaluate, compare, split, video, jsonl) -> None:
    """Table 2 (NME, accuracy, FR, AUC, size, quantization time, compression) -> RUN/report.md + PNG,
    plus the run's config, data summary and training curves, and DMS stills when a demo video exists."""
    from keras_flm.run_report import write_run_sections
    from quant.report import write_report

    try:
        path = write_report(run_dir, evaluate=evaluate, compare=list(compare), log=_echo, split=split)
        for title in write_run_sections(run_dir, video, jsonl):
            _echo("wrote the %r section of %s" % (title, path))
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    click.echo(path)


@click.command("release")
@_RUN
@click.option("--name", default=None, help="Release name (default: runtime.release.RELEASE_NAME).")
@click.option("--out", "out_root", type=click.Path(file_okay=False), default="models", show_default=True,
              help="Folder of releases; models/NAME is replaced, never copied beside.")
@click.option("--data", "data_root", type=click.Path(file_okay=False), default=None,
              help="WFLW-layout root for the test/val numbers (default: the run's own).")
@click.option("--tracking", "tracking_json", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Tracking-stability results (JSON with a \"markdown\" table) for the model card.")
@click.option("--weakness", "weaknesses", multiple=True,
              help="A known weakness for the model card (repeatable).")
def release(run_dir, name, out_root, data_root, tracking_json, weaknesses) -> None:
    """models/NAME: FP32 H5 + PTQ/QAT INT8 TFLite/ONNX, config.json, metrics.json (measured on these
    files), MODEL_CARD.md and a bundle meta.json; `flm-dpu` runs it when no --model is given."""

    from keras_flm.evaluate import EvalError
    from quant.release import ReleaseError, build_release
    from runtime.json_files import read_json
    from runtime.release import RELEASE_NAME

    tracking = None
    if tracking_json:
        try:
            tracking = read_json(tracking_json)
        except ValueError as e:
            raise click.ClickException(str(e)) from None
    try:
        path = build_release(run_dir, name or RELEASE_NAME, out_root, data_root, tracking, weaknesses,
                             log=_echo)
    except (ReleaseError, EvalError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(path)
