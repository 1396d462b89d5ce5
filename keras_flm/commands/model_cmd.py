"""`flm model ...`: inspect the architecture without training."""
import json

import click


@click.group()
def model() -> None:
    """Build and inspect the MobileNetV2-PFLD model."""


@model.command("summary")
@click.option("--width", type=float, default=None, help="Width multiplier (default: config's 1.0).")
@click.option("--activation", type=click.Choice(["relu", "relu6"]), default=None)
@click.option("--extra-convs", type=int, default=None, help="Extra 3x3 Conv-BN-ReLU layers.")
@click.option("--s1-channels", type=click.IntRange(min=1), default=None, help="S1 bottleneck channels (16).")
@click.option("--layers", "show_layers", is_flag=True, help="Also print Keras' per-layer summary.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def summary(width, activation, extra_convs, s1_channels, show_layers, as_json) -> None:
    """Params, FP32 size and MACs of the training and inference models."""
    from keras_flm.config import ModelConfig, override
    from keras_flm.model import build_training_model, inference_model, summarize

    cfg = ModelConfig()
    override(cfg, width=width, activation=activation, extra_convs=extra_convs, s1_channels=s1_channels)
    train = build_training_model(cfg)
    infer = inference_model(train)
    rows = {"training": summarize(train), "inference": summarize(infer)}
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if show_layers:
        infer.summary(print_fn=click.echo)
    click.echo("%-10s %12s %10s %12s" % ("model", "params", "FP32 MB", "MMACs"))
    for name, r in rows.items():
        click.echo("%-10s %12d %10.2f %12.1f" % (name, r["params"], r["fp32_mb"], r["macs"] / 1e6))
    click.echo("paper: FP32 6.59 MB, INT8 1.65 MB (config: width=%g activation=%s extra_convs=%d "
               "s1_channels=%d)" % (cfg.width, cfg.activation, cfg.extra_convs, cfg.s1_channels))


@model.command("refit-head")
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="A finished run directory (config.json, train.h5).")
@click.option("--data", "data_root", type=click.Path(exists=True, file_okay=False), default=None,
              help="WFLW-layout root (default: the run's own).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Crop cache directory.")
def refit_head_cmd(run_dir, data_root, cache_dir) -> None:
    """Refit the landmark head of a trained run by least squares on its training crops, exact and
    under the run's box jitter (what `flm train` does at the end with TrainConfig.head_refit, off by
    default; keras_flm/head_refit.py);
    train.h5 and fp32.h5 are rewritten only if validation NME (exact and jittered crops) improves.
    Re-export and re-quantize afterwards."""
    import os

    from keras_flm.config import RunConfig
    from keras_flm.model import build_training_model
    from keras_flm.run_files import CONFIG_JSON, TRAIN_H5, read_state, write_state
    from keras_flm.train import check_extra_train, load_data, record_head_refit, refit_best_head

    for name in (CONFIG_JSON, TRAIN_H5):
        if not os.path.isfile(os.path.join(run_dir, name)):
            raise click.ClickException("%s: %s not found (a finished `flm train` run is needed)"
                                       % (run_dir, name))
    cfg = RunConfig.load(os.path.join(run_dir, CONFIG_JSON))
    root = data_root or cfg.data.get("root")
    if not root or not os.path.isdir(root):
        raise click.ClickException("data root %r not found: pass --data" % (root,))
    try:  # the run's --extra-train roots join the fit's training crops, as they joined training
        check_extra_train(cfg.train.extra_train, root, cfg.train)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    train_c, val_c, _ = load_data(cfg, root, cache_dir, progress=True)
    rec = refit_best_head(build_training_model(cfg.model), cfg, run_dir, train_c, val_c)
    state = read_state(run_dir)
    record_head_refit(state, rec, state.get("epochs_done"))
    write_state(run_dir, state)
