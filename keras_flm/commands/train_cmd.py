"""`flm train`: train the FP32 model into a run directory (see keras_flm/train.py)."""
import os

import click

from keras_flm.config import AUGMENT_PRESETS, AUGMENT_UNIT_FIELDS, LANDMARK_LOSSES, PRECISIONS


@click.command("train")
@click.option("--data", "data_root", type=click.Path(file_okay=False), default=None,
              help="WFLW-layout data root (default with --resume: the run's own).")
@click.option("--extra-train", "extra_train", multiple=True, type=click.Path(file_okay=False), metavar="ROOT",
              help="Extra WFLW-layout roots whose train lists are added to the training faces only; "
                   "validation stays the --data root's split. Repeatable; recorded in config.json, so "
                   "--resume reuses them.")
@click.option("--turned-val", "turned_val", type=click.Path(file_okay=False), default=None, metavar="ROOT",
              help="Turned copies of this split's validation faces (scripts/make_pose_data.py --part val): "
                   "the best epoch is then the one with the lowest validation NME with those faces at "
                   "WFLW's large-pose share (runtime.metrics.pose_weighted).")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False),
              help="Run directory, e.g. runs/NAME.")
@click.option("--width", type=float, default=None, help="Width multiplier (default 1.0).")
@click.option("--s1-channels", type=click.IntRange(min=1), default=None,
              help="Channels of S1, the 14x14 bottleneck every landmark passes through (default 16, "
                   "as published). With --init from a narrower model, training starts from its function.")
@click.option("--activation", type=click.Choice(["relu", "relu6"]), default=None)
@click.option("--bn-momentum", type=click.FloatRange(0.0, 1.0, max_open=True), default=None,
              help="BatchNorm moving-average momentum (default 0.9, PyTorch's 0.1); 0.99 gives steadier "
                   "statistics on long full-size runs.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epoch cap (default 100).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Global batch (default 64).")
@click.option("--lr", type=float, default=None, help="Initial learning rate (cosine to lr_min).")
@click.option("--patience", type=click.IntRange(min=1), default=None,
              help="Early-stopping patience: epochs without a better val NME, counted in the second half "
                   "of the cosine schedule only (a warm restart's high-LR start is expected to be worse).")
@click.option("--max-images", type=click.IntRange(min=2), default=None,
              help="Use a deterministic subset of the train list (quick runs).")
@click.option("--steps-per-epoch", type=click.IntRange(min=1), default=None)
@click.option("--seed", type=int, default=None)
@click.option("--time-budget", "time_budget_min", type=float, default=None,
              help="Wall-clock minutes: LR anneals to lr_min by then and training stops in time.")
@click.option("--strategy", type=click.Choice(["auto", "mirrored", "multiworker"]), default=None,
              help="tf.distribute strategy (multiworker reads TF_CONFIG).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Crop cache directory (default $FLM_CACHE_DIR or ~/.cache/flm/crops).")
@click.option("--augment", type=click.Choice(list(AUGMENT_PRESETS)), default=None,
              help="Augmentation strength (default full, the paper's; light suits short runs on "
                   "synthetic data).")
@click.option("--augment-set", "augment_set", multiple=True, metavar="FIELD=VALUE",
              help="Change one field of the augmentation preset, e.g. turn_prob=0.3 or lowres_prob=0.2 "
                   "(fields: keras_flm/config.py AugmentConfig). Repeatable; written to config.json.")
@click.option("--oversample", multiple=True, metavar="KEY=N",
              help="Repeat matching faces N times per epoch; KEY is a WFLW attribute (pose, occlusion, ...), "
                   "yaw>=DEGREES (the labels' head yaw either way) or an image-path prefix (wflw_pseudo/). "
                   "Repeatable.")
@click.option("--ema", type=click.FloatRange(0.0, 1.0, max_open=True), default=None,
              help="Weight EMA momentum (default 0 = off); validation and fp32.h5 use the average. BN "
                   "statistics follow the raw weights, so keep the horizon short (e.g. 0.99): 0.998 lagged "
                   "so far early on that val NME read 23 % where the raw weights had 12 %.")
@click.option("--init", "init", type=click.Path(exists=True), default=None,
              help="Start from these weights: a release (models/NAME), a run directory or an .h5.")
@click.option("--loss", "landmark_loss", type=click.Choice(list(LANDMARK_LOSSES)), default=None,
              help="Landmark term of the PFLD loss: l2 (default, as published) or wing (Wing loss, w=10 px, "
                   "eps=2 px: L1-like, fits NME's mean distance better than squared error).")
@click.option("--freeze-bn", "freeze_bn", is_flag=True, default=None,
              help="Freeze every BatchNormalization layer (its moving statistics and gamma/beta) while the "
                   "convolutions train: for a warm restart (--init) under strong augmentation.")
@click.option("--precision", type=click.Choice(list(PRECISIONS)), default=None,
              help="Compute precision (default auto: mixed_float16 on a GPU, float32 on a CPU). "
                   "mixed_bfloat16 trains faster on CPUs with AVX512-BF16 or AMX; weights stay float32.")
@click.option("--resume", is_flag=True, help="Continue a killed run: epoch count, optimizer, patience.")
@click.option("--overwrite", is_flag=True, help="Delete an existing run directory and start over.")
def train(data_root, run_dir, width, s1_channels, activation, bn_momentum, epochs, batch_size, lr, patience,
          max_images, steps_per_epoch, seed, time_budget_min, strategy, cache_dir, augment, augment_set,
          oversample, ema, init, landmark_loss, freeze_bn, precision, resume, overwrite, extra_train,
          turned_val) -> None:
    """Train MobileNetV2-PFLD (FP32); writes config.json, log.csv, checkpoints/, train.h5, fp32.h5."""
    from keras_flm.config import RunConfig, augment_preset, override
    from keras_flm.train import CONFIG_JSON, RunDirError
    from keras_flm.train import train as run_training
    from runtime.wflw import AnnotationError

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    cfg_path = os.path.join(run_dir, CONFIG_JSON)
    if resume:
        if not os.path.isfile(cfg_path):
            raise click.ClickException("cannot resume: %s not found" % cfg_path)
        cfg = RunConfig.load(cfg_path)
        fixed = {"width": width, "s1_channels": s1_channels, "activation": activation,
                 "bn_momentum": bn_momentum,
                 "batch_size": batch_size, "max_images": max_images, "seed": seed, "augment": augment,
                 "augment_set": augment_set or None,
                 "oversample": oversample or None, "ema": ema, "init": init, "loss": landmark_loss,
                 "freeze_bn": freeze_bn, "extra_train": extra_train or None, "turned_val": turned_val}
        changed = [k for k, v in fixed.items() if v is not None]
        if changed:
            raise click.UsageError("--resume keeps the run's %s; only --epochs/--lr/--patience/"
                                   "--time-budget/--strategy/--precision may change" % ", ".join(changed))
        data_root = data_root or cfg.data.get("root")
    else:
        cfg = RunConfig(augment=augment_preset(augment or "full"))
        if augment_set:
            override(cfg.augment, **parse_augment_set(augment_set, cfg.augment))
    if not data_root:
        raise click.UsageError("--data is required")
    try:
        override(cfg.model, width=width, s1_channels=s1_channels, activation=activation,
                 bn_momentum=bn_momentum)
        override(cfg.train, epochs=epochs, batch_size=batch_size, lr=lr, patience=patience,
                 max_images=max_images, steps_per_epoch=steps_per_epoch, seed=seed, strategy=strategy,
                 time_budget_min=time_budget_min, ema=ema, init=init, landmark_loss=landmark_loss,
                 freeze_bn=freeze_bn, precision=precision,
                 oversample=_parse_oversample(oversample) if oversample else None,
                 extra_train=tuple(extra_train) or None,  # made absolute by keras_flm.train.check_extra_train
                 turned_val=turned_val)
        state = run_training(cfg, data_root, run_dir, resume=resume, overwrite=overwrite, cache_dir=cache_dir)
    except (AnnotationError, RunDirError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    turned = state.get("best_turned_val_nme")
    click.echo("best val NME %.4f%s at epoch %d (%d epochs%s); wrote %s"
               % (state["best_val_nme"], "" if turned is None else
                  " (turned %.4f, weighted %.4f)" % (turned, state["best_select"]),
                  state["best_epoch"], state["epochs_done"],
                  ", stopped by " + state["stop_reason"] if state.get("stop_reason") else "",
                  os.path.join(run_dir, "fp32.h5")))
    policy = (cfg.data or {}).get("policy", "float32")
    if policy != "float32":
        # stop 29 compared runs by these numbers and misread a pass of the gate's check 1 as a tie
        click.echo("(validation scored inside training by the %s model; the release gate reads FP32: "
                   "flm eval --run %s --split val)" % (policy, run_dir))


def parse_augment_set(items, augment) -> dict:
    """("turn_prob=0.3",) -> {"turn_prob": 0.3}, typed like the AugmentConfig field, or a usage
    error naming the item (unknown field, bad value)."""
    from dataclasses import fields

    kinds = {f.name: type(getattr(augment, f.name)) for f in fields(augment)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in kinds:
            raise click.BadParameter("%r: expected FIELD=VALUE with FIELD one of %s"
                                     % (item, ", ".join(sorted(kinds))), param_hint="--augment-set")
        kind = kinds[key]
        try:
            if kind is bool:
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                out[key] = value.lower() in ("true", "1")
            else:
                out[key] = kind(value)
        except ValueError:
            raise click.BadParameter("%r: %s must be a %s" % (item, key, kind.__name__),
                                     param_hint="--augment-set") from None
        if kind is bool:
            continue
        low, high, says = 0.0, float("inf"), ">= 0"
        if key in AUGMENT_UNIT_FIELDS:
            high, says = 1.0, "in [0, 1]"
        elif key == "cache_margin":
            low, says = 1.0, ">= 1"
        if key == "zoom_min":  # a factor the window is scaled by: 0 would be no window at all
            low, says = 1e-3, "in (0, 1]"
        if not low <= out[key] <= high:
            raise click.BadParameter("%r: %s must be %s" % (item, key, says), param_hint="--augment-set")
    return out


def _parse_oversample(items) -> dict:
    """("wflw_pseudo/=3", "pose=2") -> {"wflw_pseudo/": 3, "pose": 2}, or a usage error naming the item."""
    rules = {}
    for item in items:
        key, sep, value = item.rpartition("=")
        if not sep or not key:
            raise click.BadParameter("%r: expected KEY=N, e.g. wflw_pseudo/=3 or pose=2" % item,
                                     param_hint="--oversample")
        try:
            rules[key] = int(value)
        except ValueError:
            raise click.BadParameter("%r: N must be a whole number" % item,
                                     param_hint="--oversample") from None
        if rules[key] < 1:
            raise click.BadParameter("%r: N must be >= 1" % item, param_hint="--oversample")
    return rules
