"""`flm vitis ...`: the Vitis AI flow for the KV260 DPU.

lint runs anywhere; inspect (target-aware vai_q_tensorflow2) and compile (vai_c_tensorflow2)
need the Vitis AI docker (the repository's Dockerfile); quantize runs there or, on a plain
host, in the vai_q_tensorflow2 build of `make vai-q` (vitis.vai_q_env); bundle runs anywhere.
No TensorFlow at module level: `flm --help` stays light.
"""
import os
import time
from typing import Any, Dict, List, Optional

import click

from vitis.config import (
    ARCH_PRESETS,
    BUNDLE_DIR,
    DEFAULT_TARGET,
    FINGERPRINTS,
    QUANT_OUTPUTS,
    VITIS_AI_IMAGE,
    VITIS_DIR,
    VitisConfig,
)


def _option_args(ctx: click.Context, defaults: bool = False) -> List[str]:
    """The command's options as arguments (`defaults`: also those left at their default)."""
    parts: List[str] = []
    for p in ctx.command.params:
        v = ctx.params.get(p.name)
        if not isinstance(p, click.Option) or v is None or (v == p.default and not defaults):
            continue
        opt = max(p.opts, key=len)
        if p.is_flag:
            if v or p.secondary_opts:  # --flag, or the --no-flag of an on/off pair
                parts.append(opt if v else max(p.secondary_opts, key=len))
        else:
            parts += [opt, str(v)]
    return parts


def _cmdline(ctx: click.Context) -> str:
    """The command as the user would type it inside the docker (for error messages)."""
    return " ".join(x for x in ["flm vitis", ctx.info_name or ""] + _option_args(ctx) if x)


def _require_run(run_dir: str) -> str:
    if not os.path.isdir(run_dir):
        raise click.ClickException("run directory not found: %s (train one with `flm train --run %s`)"
                                   % (run_dir, run_dir))
    return run_dir


def _require_file(path: str, hint: str) -> str:
    if not os.path.isfile(path):
        raise click.ClickException("%s not found (%s)" % (path, hint))
    return path


def _load_keras_model(path: str) -> Any:
    from vitis.quantize import load_float_model

    try:
        return load_float_model(path)
    except Exception as e:  # noqa: BLE001 - name the file whatever Keras raised
        raise click.ClickException("cannot load the Keras model %s: %s: %s"
                                   % (path, type(e).__name__, e)) from e


@click.group()
def vitis() -> None:
    """Vitis AI flow for the KV260 DPU: lint, inspect, quantize, compile, check, bundle.

    lint, check and bundle run anywhere; inspect and compile need the Vitis AI docker (build the
    repository's Dockerfile: docker build -t flm-vitis .); quantize runs there or, without it, in the
    vai_q_tensorflow2 that `make vai-q` builds on the host.
    """


# ----------------------------------------------------------------------------- lint

@vitis.command()
@click.option("--run", "run_dir", type=click.Path(file_okay=False), default=None,
              help="Run directory: lints its fp32.h5 (or, before training, the architecture in config.json).")
@click.option("--model", "model_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A Keras H5 model file to lint instead.")
@click.option("--width", type=float, default=None,
              help="Without --run/--model: lint the default architecture at this width.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def lint(run_dir: Optional[str], model_path: Optional[str], width: Optional[float], as_json: bool) -> None:
    """Check every layer against the DPUCZDX8G_ISA1_B4096 limits (no docker needed).

    Prints a per-layer table (layer, type, DPU/CPU, note) like the Vitis Inspector's and
    exits 1 if any layer would run on the CPU. Without --run/--model it lints the default
    MobileNetV2-PFLD (keras_flm.model.build_inference_model).
    """
    import json

    from vitis.lint import format_report, lint_model

    if run_dir and model_path:
        raise click.UsageError("--run and --model are mutually exclusive")
    source = None
    if model_path:
        model, source = _load_keras_model(model_path), model_path
    elif run_dir:
        _require_run(run_dir)
        fp32 = os.path.join(run_dir, "fp32.h5")
        if os.path.isfile(fp32):
            model, source = _load_keras_model(fp32), fp32
        else:
            from keras_flm.config import RunConfig
            from keras_flm.model import build_inference_model

            cfg_path = _require_file(os.path.join(run_dir, "config.json"),
                                     "neither fp32.h5 nor config.json in the run: nothing to lint")
            model = build_inference_model(RunConfig.load(cfg_path).model)
            source = "%s (architecture only: no fp32.h5 yet)" % cfg_path
    else:
        from keras_flm.config import ModelConfig, override
        from keras_flm.model import build_inference_model

        mcfg = ModelConfig()
        override(mcfg, width=width)
        model, source = build_inference_model(mcfg), "default architecture (width %g)" % mcfg.width
    report = lint_model(model)
    text = format_report(report)
    if run_dir:
        from vitis.files import write_json, write_text

        write_text(os.path.join(run_dir, VITIS_DIR, "lint.txt"), text)
        write_json(os.path.join(run_dir, VITIS_DIR, "lint.json"), dict(report.to_dict(), source=source))
    click.echo(json.dumps(dict(report.to_dict(), source=source), indent=2) if as_json else
               "model: %s\n%s" % (source, text))
    if not report.ok:
        raise click.ClickException("%d layer(s) violate the %s limits: %s"
                                   % (len({n for n, _ in report.violations}), report.target,
                                      "; ".join("%s: %s" % nv for nv in report.violations)))


# ----------------------------------------------------------------------------- inspect

@vitis.command()
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--target", default=DEFAULT_TARGET, show_default=True,
              help="DPU name, arch.json with a \"target\" key, or fingerprint (0x...).")
@click.pass_context
def inspect(ctx: click.Context, run_dir: str, target: str) -> None:
    """Vitis Inspector on run/fp32.h5 -> run/vitis/inspect.txt (needs the Vitis AI docker).

    Exits 1 if the Inspector places any layer on the CPU.
    """
    from vitis import tools
    from vitis.files import write_json, write_text
    from vitis.inspect import inspect_model

    vi = tools.load_vai_inspect(_cmdline(ctx))
    _require_run(run_dir)
    fp32 = _require_file(os.path.join(run_dir, "fp32.h5"), "train first: flm train --run %s" % run_dir)
    cfg = VitisConfig()
    out_dir = os.path.join(run_dir, VITIS_DIR)
    result = inspect_model(vi, _load_keras_model(fp32), target, list(cfg.input_shape), out_dir)
    write_text(os.path.join(out_dir, "inspect.txt"), result["text"])
    write_json(os.path.join(out_dir, "inspect.json"), {k: v for k, v in result.items() if k != "text"})
    click.echo("inspect results: %s" % os.path.join(out_dir, "inspect.txt"))
    if result["cpu_layers"]:
        raise click.ClickException("the Inspector puts %d layer(s) on the CPU: %s"
                                   % (len(result["cpu_layers"]), ", ".join(result["cpu_layers"])))
    click.echo("All layers are mapped to the DPU (%s)." % target)


# ----------------------------------------------------------------------------- quantize

@vitis.command()
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--mode", type=click.Choice(sorted(QUANT_OUTPUTS)), default="ptq", show_default=True,
              help="ptq: pof2s post-training quantization of fp32.h5; qat: 8bit_tqt quantization-aware "
                   "fine-tuning of train.h5 with the pose-aware loss.")
@click.option("--calib", type=int, default=None, help="Calibration crops [default: %d, as the TFMOT flow]."
              % VitisConfig.calib_size)
@click.option("--fast-ft", is_flag=True, help="PTQ: vai_q fast finetuning (layer-wise, slower).")
@click.option("--cle/--no-cle", default=True, show_default=True, help="Cross-layer equalization.")
@click.option("--dump", is_flag=True, help="Also dump golden per-layer int8 tensors (run/vitis/dump_MODE/).")
@click.option("--target", default=DEFAULT_TARGET, show_default=True,
              help="Quantize for this DPU (name or fingerprint).")
@click.option("--data", "data_root", type=click.Path(file_okay=False), default=None,
              help="WFLW-layout data root [default: the one in config.json; inside the docker mount it "
                   "and pass e.g. --data /data].")
@click.option("--epochs", type=int, default=None, help="QAT epochs [default: %d]." % VitisConfig.qat_epochs)
@click.option("--lr", type=float, default=None, help="QAT initial learning rate.")
@click.option("--batch-size", type=int, default=None, help="QAT batch size.")
@click.option("--max-images", type=int, default=None, help="QAT: use at most this many training images.")
@click.option("--steps-per-epoch", type=int, default=None, help="QAT steps per epoch (0 = one pass).")
@click.pass_context
def quantize(ctx: click.Context, run_dir: str, mode: str, calib: Optional[int], fast_ft: bool, cle: bool,
             dump: bool, target: str, data_root: Optional[str], epochs: Optional[int], lr: Optional[float],
             batch_size: Optional[int], max_images: Optional[int], steps_per_epoch: Optional[int]) -> None:
    """Vitis AI quantizer (vai_q_tensorflow2) -> run/vitis_ptq.h5 or run/vitis_qat.h5.

    Inside the Vitis AI docker it uses the image's vai_q_tensorflow2; on a plain host the one
    `make vai-q` built from source into its own cached virtualenv (TensorFlow 2.12), in which
    this same command then runs. Calibration uses the TFMOT flow's crops (500 training-split
    faces, crop contract, (u8-128)/128 normalisation). Also writes run/vitis/quantize_MODE.json
    (settings, md5, reload check) and run/vitis/quantize_info_MODE.json (the fix position vai_q
    chose for every quantized tensor). Everything is written to a temporary directory first.
    """
    from vitis import tools

    if not tools.vai_q_here():
        from vitis import vai_q_env

        host = None if vai_q_env.in_worker() else vai_q_env.find()
        if host is not None:
            _quantize_inputs(run_dir, mode)  # fail here, before starting TensorFlow 2.12
            click.echo("vai_q_tensorflow2: not in this environment; running in the host build %s" % host.root,
                       err=True)
            code = vai_q_env.run_flm(host, [ctx.info_name or "quantize"] + _option_args(ctx, defaults=True))
            if code:
                raise click.exceptions.Exit(code)
            return
    vq = tools.load_vai_q(_cmdline(ctx))
    _require_run(run_dir)
    from keras_flm.config import override

    cfg = VitisConfig()
    override(cfg, calib_size=calib, include_fast_ft=fast_ft or None, include_cle=cle, qat_epochs=epochs,
             qat_lr=lr, qat_batch_size=batch_size, qat_max_images=max_images,
             qat_steps_per_epoch=steps_per_epoch)
    run_quantize(vq, run_dir, mode, cfg, target, data_root, dump)


def _quantize_inputs(run_dir: str, mode: str) -> Dict[str, str]:
    """{"config": config.json, "source": the model to quantize} of a run, or a ClickException."""
    _require_run(run_dir)
    config = _require_file(os.path.join(run_dir, "config.json"), "written by flm train")
    if mode == "ptq":
        source = _require_file(os.path.join(run_dir, "fp32.h5"), "train first: flm train --run %s" % run_dir)
    else:
        from quant.run import training_model_path

        source = training_model_path(run_dir)
    return {"config": config, "source": source}


def run_quantize(vq: Any, run_dir: str, mode: str, cfg: VitisConfig, target: Optional[str],
                 data_root: Optional[str] = None, dump: bool = False) -> Dict[str, Any]:
    """The quantize command's work, with the vai_q module passed in (the docker's or the host build's)."""
    from keras_flm.config import RunConfig
    from vitis.calibration import calibration_crops
    from vitis.files import md5_file, replace_path, scratch_dir, write_json
    from vitis.quantize import (
        about_quantizer,
        calibration_input,
        dump_golden,
        ptq,
        quantize_info,
        reload_check,
        save_h5,
        usable_target,
    )

    started = time.time()
    inputs = _quantize_inputs(run_dir, mode)
    source = inputs["source"]
    run_cfg = RunConfig.load(inputs["config"])
    try:
        crops = calibration_crops(run_dir, cfg.calib_size, data_root, seed=cfg.calib_seed)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    calib_x = calibration_input(crops, run_cfg.crop)
    click.echo("calibration: %d crops from the training split" % len(calib_x), err=True)
    target, note = usable_target(vq, target)
    if note:
        click.echo("note: %s" % note, err=True)
    from keras_flm.keras_compat import get_keras

    keras = get_keras()
    record: Dict[str, Any] = {"mode": mode, "target": target, "source": os.path.basename(source),
                              "source_md5": md5_file(source), "calib_images": int(len(calib_x)),
                              "config": cfg.to_dict(), "quantizer": about_quantizer(vq)}
    if note:
        record["target_note"] = note
    if mode == "ptq":
        from keras_flm.model import centre_head

        record["strategy"] = "pof2s"
        float_model = _load_keras_model(source)
        if cfg.output_offset:
            centre_head(float_model, cfg.output_offset)
        record["output_offset"] = cfg.output_offset
        qmodel = ptq(vq, float_model, calib_x, cfg, target)
    else:
        record["strategy"] = "8bit_tqt"
        result = _run_qat(vq, keras, run_dir, run_cfg, source, calib_x, cfg, target, data_root)
        qmodel, record["history"] = result["model"], result["history"]
        record["output_offset"] = 0.0
    out_name = QUANT_OUTPUTS[mode]
    vitis_dir = os.path.join(run_dir, VITIS_DIR)
    info_name = "quantize_info_%s.json" % mode
    with scratch_dir(run_dir) as tmp:
        tmp_model = os.path.join(tmp, out_name)
        save_h5(qmodel, tmp_model)
        record["output"], record["output_md5"] = out_name, md5_file(tmp_model)
        record["reload_max_abs_diff"] = reload_check(vq, keras, tmp_model, qmodel, calib_x[:8])
        info = quantize_info(vq, qmodel)
        write_json(os.path.join(tmp, info_name), dict(info, mode=mode, model=out_name,
                                                      strategy=record["strategy"]))
        record["quantize_info"] = os.path.join(VITIS_DIR, info_name)
        record["fix_positions"] = info["tensors"]
        dump_dir = None
        if dump:
            dump_dir = dump_golden(vq, qmodel, calib_x[:cfg.dump_samples], os.path.join(tmp, "dump"))
            record["dump"] = os.path.join(VITIS_DIR, "dump_" + mode)
        record["seconds"] = round(time.time() - started, 1)
        record["versions"] = {"tensorflow": _tf_version()}
        os.makedirs(vitis_dir, exist_ok=True)
        if dump_dir:
            replace_path(dump_dir, os.path.join(vitis_dir, "dump_" + mode))
        replace_path(os.path.join(tmp, info_name), os.path.join(vitis_dir, info_name))
        replace_path(tmp_model, os.path.join(run_dir, out_name))
    write_json(os.path.join(vitis_dir, "quantize_%s.json" % mode), record)
    click.echo("wrote %s (md5 %s) in %.0f s; %d fix positions in %s"
               % (os.path.join(run_dir, out_name), record["output_md5"], record["seconds"],
                  record["fix_positions"], os.path.join(run_dir, record["quantize_info"])))
    return record


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__


def _run_qat(vq: Any, keras: Any, run_dir: str, run_cfg: Any, source: str, calib_x: Any, cfg: VitisConfig,
             target: Optional[str], data_root: Optional[str]) -> Dict[str, Any]:
    """QAT data (the training pipeline's augmented crops), loss and schedule, then the driver."""
    from keras_flm.data.pipeline import NO_AUGMENT, make_dataset
    from keras_flm.loss import run_loss
    from keras_flm.train import load_data
    from vitis.calibration import data_root_of
    from vitis.quantize import qat

    root = data_root_of(run_dir, run_cfg, data_root)
    run_cfg.train.batch_size = cfg.qat_batch_size
    run_cfg.train.max_images = cfg.qat_max_images or None
    try:
        train_c, val_c, _ = load_data(run_cfg, root, None, True)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    seed = run_cfg.train.seed
    steps = cfg.qat_steps_per_epoch or None
    train_ds = make_dataset(train_c, cfg.qat_batch_size, run_cfg.augment, run_cfg.crop, training=True,
                            seed=seed, repeat=steps is not None)
    val_ds = make_dataset(val_c, cfg.qat_batch_size, NO_AUGMENT, run_cfg.crop, training=False)
    n_steps = steps or max(1, len(train_c) // cfg.qat_batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=cfg.qat_lr, decay_steps=max(1, cfg.qat_epochs * n_steps),
        alpha=cfg.qat_lr_min / cfg.qat_lr)
    loss = run_loss(run_cfg)
    return qat(vq, keras, _load_keras_model(source), calib_x, train_ds, val_ds, loss, cfg, target,
               optimizer=keras.optimizers.Adam(schedule), steps_per_epoch=steps)


# ----------------------------------------------------------------------------- compile

COMPILE_HELP = """Vitis AI compiler (vai_c_tensorflow2) -> run/vitis/MODEL/NET.xmodel (needs the docker).

\b
Runs: vai_c_tensorflow2 -m run/MODEL.h5 -a arch.json -o OUT -n NET
          --options '{"input_shape": "1,112,112,1"}'
and fails unless the log reports exactly one DPU subgraph ("Total device subgraph
number N, DPU subgraph number 1"); records the xmodel's md5 in run/vitis/compile.json.

\b
Arch (pick one; default: {"target": "%s"}):
  --arch kv260         the docker's KV260 arch.json
  --arch-json FILE     your own arch.json ({"target": ...} or {"fingerprint": ...})
  --fingerprint 0x...  an arch.json of just that fingerprint

\b
Fingerprints: VART refuses a model whose fingerprint differs from the loaded DPU's
("CHECK fingerprint fail"). Vitis AI 3.x compiles %s to %s;
Kria Ubuntu's kv260-benchmark-b4096 overlay has been reported to need %s
(the Vitis AI 2.5 value). Read the board's with `xdputil query` and pass it with
--fingerprint when they differ.
""" % (DEFAULT_TARGET, DEFAULT_TARGET, FINGERPRINTS["vai3"], FINGERPRINTS["vai2.5"])


@vitis.command("compile", help=COMPILE_HELP)
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--model", "model_name", type=click.Choice(["vitis_ptq", "vitis_qat"]), default="vitis_ptq",
              show_default=True, help="Which quantized model to compile.")
@click.option("--arch", type=click.Choice(sorted(ARCH_PRESETS)), default=None,
              help="arch.json preset from the docker (/opt/vitis_ai/compiler/arch/...).")
@click.option("--arch-json", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Your own arch.json.")
@click.option("--fingerprint", default=None, help="Compile for this DPU fingerprint (0x...).")
@click.option("--net-name", default=None, help="xmodel name [default: %s]." % VitisConfig.net_name)
@click.pass_context
def compile_cmd(ctx: click.Context, run_dir: str, model_name: str, arch: Optional[str],
                arch_json: Optional[str], fingerprint: Optional[str], net_name: Optional[str]) -> None:
    from vitis import tools
    from vitis.compile import compile_model, resolve_arch

    resolve_arch(arch, arch_json, fingerprint, must_exist=False)  # usage errors first, anywhere
    compiler = tools.find_compiler(_cmdline(ctx))
    _require_run(run_dir)
    choice = resolve_arch(arch, arch_json, fingerprint)
    cfg = VitisConfig()
    if net_name:
        cfg.net_name = net_name
    rec = compile_model(run_dir, model_name, choice, cfg, compiler=compiler, xir=tools.load_xir(),
                        run_hint=run_dir)
    click.echo("xmodel: %s\nmd5: %s\nDPU subgraphs: %s of %s\nfingerprint: %s (%s)"
               % (os.path.join(run_dir, rec["xmodel"]), rec["md5"], rec["dpu_subgraphs"],
                  rec["total_subgraphs"], rec["fingerprint"], rec["fingerprint_source"]))
    if rec["fingerprint"] and rec["fingerprint"] != FINGERPRINTS["vai2.5"]:
        click.echo("If the board's DPU reports %s (`xdputil query`), recompile with --fingerprint %s."
                   % (FINGERPRINTS["vai2.5"], FINGERPRINTS["vai2.5"]))


@vitis.command()
@click.option("--run", "run_dir", default=None, type=click.Path(file_okay=False),
              help="Run directory: check the xmodel its compile.json records (md5 first).")
@click.option("--xmodel", "xmodel", default=None, type=click.Path(dir_okay=False),
              help="Check this .xmodel file instead (needs XIR: `make xir` on a host).")
@click.option("--board-fingerprint", default=None,
              help="The fingerprint the board's DPU reports (`xdputil query`), e.g. %s."
              % FINGERPRINTS["vai2.5"])
def check(run_dir: Optional[str], xmodel: Optional[str], board_fingerprint: Optional[str]) -> None:
    """Check a compiled xmodel against the board's rules: exactly one DPU subgraph, DPU input/output
    that fit the crop contract (112x112x1 int8 in, 196 values out), and its fingerprint against the
    board's.

    Reads the file with XIR when importable (the Vitis AI docker, the board, or `make xir` on a host);
    without XIR, --run falls back to compile.json. Prints every rule and exits 1 if any fails, naming
    the CPU subgraphs that split the DPU graph or the --fingerprint to recompile with.
    """
    from vitis import tools
    from vitis.compile import check_compiled, verify_xmodel

    if (run_dir is None) == (xmodel is None):
        raise click.UsageError("give exactly one of --run RUN_DIR or --xmodel FILE")
    xir = tools.load_xir()
    if xmodel is not None:
        if xir is None:
            raise tools.VitisToolMissing("checking an .xmodel file needs XIR, which is not importable here: "
                                         "build it with `make xir` (host), or run in the Vitis AI docker")
        if not os.path.isfile(xmodel):
            raise click.BadParameter("no such file: %s" % xmodel, param_hint="--xmodel")
        res = verify_xmodel(xmodel, xir, board_fingerprint)
    else:
        _require_run(run_dir)
        res = check_compiled(run_dir, board_fingerprint, xir=xir, strict=False)
    click.echo("xmodel: %s" % res["xmodel"])
    if "md5" in res:
        click.echo("md5: %s (matches compile.json)" % res["md5"])
    click.echo("read with: %s" % res["read_with"])
    x = res.get("xir")
    if x:
        click.echo("subgraphs: %s" % ", ".join("%s:%s" % (s["name"], s["device"]) for s in x["subgraphs"]))
        for s in x["subgraphs"]:
            if s["device"].upper() == "DPU":
                for key, what in (("inputs", "input"), ("outputs", "output")):
                    for t in s[key]:
                        click.echo("  %s %s: %s %s %s, fix_point %s"
                                   % (s["name"], what, t["name"], t["dims"], t["dtype"], t["fix_point"]))
    verdict = "pass: exactly 1" if res["dpu_subgraphs"] == 1 else "FAIL: need 1"
    click.echo("DPU subgraphs: %s (%s)" % (res["dpu_subgraphs"], verdict))
    click.echo("fingerprint: %s (%s)" % (res["fingerprint"], res["fingerprint_source"]))
    problems = res["problems"]
    if board_fingerprint and not res["fingerprint"]:
        click.echo("board fingerprint %s: not compared (the xmodel's fingerprint is unknown without XIR)"
                   % res["board_fingerprint"])
    elif board_fingerprint and not any("fingerprint mismatch" in p for p in problems):
        click.echo("board fingerprint %s matches." % res["board_fingerprint"])
    if problems:
        for p in problems:
            click.echo("FAIL: %s" % p, err=True)
        raise click.ClickException("%s fails %d check(s) (listed above)" % (res["xmodel"], len(problems)))
    click.echo("all checks passed.")


# ----------------------------------------------------------------------------- bundle

@vitis.command()
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--no-tar", is_flag=True, help="Do not write run/bundle.tar.gz.")
def bundle(run_dir: str, no_tar: bool) -> None:
    """Board bundle run/bundle/ (+ run/bundle.tar.gz): xmodel, ONNX/TFLite models, meta.json.

    Copy it to the KV260 and run `flm-dpu run --model bundle ...`; on a host without the
    DPU the same bundle runs through ONNX Runtime or TFLite.
    """
    from vitis.bundle import BundleError, build_bundle

    _require_run(run_dir)
    try:
        meta = build_bundle(run_dir, tarball=not no_tar)
    except BundleError as e:
        raise click.ClickException(str(e)) from e
    out = os.path.join(run_dir, BUNDLE_DIR)
    for name, rec in sorted(meta["files"].items()):
        click.echo("  %-28s %10d  %s  (%s)" % (name, rec["bytes"], rec["md5"], rec["backend"]))
    click.echo("bundle: %s%s" % (out, "" if no_tar else "  tarball: %s" % os.path.join(run_dir,
                                                                                       "bundle.tar.gz")))
    if meta["dpu"]:
        click.echo("the board's DPU must report fingerprint %s" % meta["dpu"]["fingerprint"])
    else:
        click.echo("no xmodel in this bundle (compile inside the Vitis AI docker %s first for the DPU)"
                   % VITIS_AI_IMAGE)
