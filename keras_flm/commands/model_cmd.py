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
