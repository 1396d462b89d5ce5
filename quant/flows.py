"""What the commands do, as functions (the CLI stays thin; tests call these directly).

Each flow reads its inputs from the run directory, writes artifacts atomically, records
settings and wall time in quant.json and parity in parity.json, and (optionally) scores
every artifact it wrote with the runtime's evaluation into metrics.json.
"""
import os
import time
from dataclasses import asdict
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from quant import run as R
from quant.config import (
    GRANULARITIES,
    ExportConfig,
    PtqConfig,
    QatConfig,
    comparison_file,
    granularity_variants,
)

Log = Callable[[str], Any]


def load_keras(path: str):
    from keras_flm.keras_compat import get_keras

    keras = get_keras()
    try:
        return keras.models.load_model(path, compile=False)
    except (OSError, ValueError) as e:
        import click

        raise click.ClickException("%s is not a loadable Keras model: %s" % (path, e)) from None


def _parity_crops(run_dir: str, xcfg: ExportConfig) -> np.ndarray:
    from quant.calibration import sample_crops

    return sample_crops(run_dir, "test", xcfg.parity_crops)


def _check_parity(run_dir: str, key: str, path: str, ref: np.ndarray, crops: np.ndarray, spec,
                  tolerance: Optional[float], log: Log,
                  extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    from quant.export import parity

    p = parity(path, ref, crops, spec, tolerance)
    p.update(extra or {})
    p["file"] = os.path.basename(path)
    R.record_parity(run_dir, key, p)
    verdict = ""
    if tolerance is not None:
        verdict = ("  OK (< %.0e)" if p["ok"] else "  FAILED (> %.0e)") % tolerance
    log("parity %-16s vs Keras: max |diff| %.2e (%.3f px), mean %.2e%s"
        % (key, p["max_abs_diff"], p["max_abs_diff_px"], p["mean_abs_diff"], verdict))
    return p


def _artifact_entry(path: str, t: float, **settings) -> Dict[str, Any]:
    return dict(file=os.path.basename(path), bytes=os.path.getsize(path), wall_s=round(t, 3), **settings)


def _evaluate(run_dir: str, paths: List[str], cfg, log: Log) -> None:
    from quant.evaluation import evaluate_file

    for p in paths:
        evaluate_file(run_dir, p, cfg, "test", log)


# ---------------------------------------------------------------------------------- FP32 exports

def export_tflite(run_dir: str, xcfg: ExportConfig, log: Log = print, crops=None) -> Dict[str, Any]:
    from quant.export import keras_predict, tflite_fp32
    from quant.files import write_bytes

    cfg = R.load_config(run_dir)
    model = load_keras(R.fp32_path(run_dir))
    t0 = time.perf_counter()
    path = write_bytes(R.artifact(run_dir, "fp32.tflite"), tflite_fp32(model))
    t = time.perf_counter() - t0
    R.record_quant(run_dir, "fp32_tflite", _artifact_entry(path, t, method="export", format="tflite",
                                                           dtype="float32"))
    crops = _parity_crops(run_dir, xcfg) if crops is None else crops
    p = _check_parity(run_dir, "fp32_tflite", path, keras_predict(model, crops, cfg.crop), crops, cfg.crop,
                      xcfg.fp32_tolerance, log)
    log("wrote %s (%.2f MB, %.1fs)" % (path, os.path.getsize(path) / 1e6, t))
    return {"path": path, "parity": p}


def export_onnx(run_dir: str, xcfg: ExportConfig, log: Log = print, crops=None) -> Dict[str, Any]:
    from quant.export import keras_predict, onnx_model
    from quant.fold import fold_batchnorm
    from quant.onnx_save import save_onnx

    cfg = R.load_config(run_dir)
    model = load_keras(R.fp32_path(run_dir))
    t0 = time.perf_counter()
    # BN folded first: tf2onnx can leave a Reshape between a conv and its BN (the 7x7 S3 conv), and ORT
    # then quantizes that conv's raw output, whose per-channel offsets BN removes afterwards: on the
    # wing-loss release this tensor spanned [-1400, 600] and ORT PTQ read 24 % NME (FP32 10 %)
    proto = onnx_model(fold_batchnorm(model), xcfg.onnx_opset, cfg.crop)
    path = save_onnx(proto, R.artifact(run_dir, "fp32.onnx"))
    t = time.perf_counter() - t0
    R.record_quant(run_dir, "fp32_onnx", _artifact_entry(path, t, method="export", format="onnx",
                                                         dtype="float32", opset=xcfg.onnx_opset,
                                                         dynamic_batch=True))
    crops = _parity_crops(run_dir, xcfg) if crops is None else crops
    p = _check_parity(run_dir, "fp32_onnx", path, keras_predict(model, crops, cfg.crop), crops, cfg.crop,
                      xcfg.fp32_tolerance, log)
    log("wrote %s (%.2f MB, %.1fs, opset %d, dynamic batch)" % (path, os.path.getsize(path) / 1e6, t,
                                                                xcfg.onnx_opset))
    return {"path": path, "parity": p}


# ---------------------------------------------------------------------------------- PTQ

def ptq(run_dir: str, pcfg: PtqConfig, xcfg: ExportConfig, scheme: str = "default", onnx: bool = True,
        evaluate: bool = True, log: Log = print) -> Dict[str, Any]:
    """PTQ of RUN/fp32.h5 on `pcfg.calib_images` training crops; see quant/ptq.py."""
    from quant import ptq as P
    from quant.calibration import calibration_set
    from quant.export import keras_predict
    from quant.scheme import SchemeOptions

    cfg = R.load_config(run_dir)
    fp32_h5 = R.fp32_path(run_dir)
    t_start = time.perf_counter()
    calib, sources = calibration_set(run_dir, pcfg.calib_images, pcfg.calib_seed)
    t_calib = time.perf_counter() - t_start
    model = load_keras(fp32_h5)
    crops = _parity_crops(run_dir, xcfg)
    ref = keras_predict(model, crops, cfg.crop)
    common = dict(method="ptq", scheme=scheme, calib_images=len(calib), calib_seed=pcfg.calib_seed, **sources,
                  calib_crops_s=round(t_calib, 3), activation=cfg.model.activation, width=cfg.model.width)
    written: List[str] = []
    out: Dict[str, Any] = {"calib_crops_s": t_calib}
    if scheme == "pof2":
        written += _ptq_pof2(run_dir, model, calib, ref, crops, cfg, pcfg, common, evaluate, log)
    else:
        from quant.files import write_bytes

        variants = granularity_variants("ptq_int8.tflite", pcfg.granularity, pcfg.also_other_granularity)
        _drop_old_variants(run_dir, "ptq_int8.tflite", [f for _, f in variants], log)
        from quant.scheme import equalized_float

        # the float network every default-scheme file quantizes (BN folded, CLE): the range search
        # and the ORT PTQ use this one copy
        folded = equalized_float(model, pcfg.cle_steps_for("default"))
        positions, ranges = None, None
        if pcfg.act_calibration == "mse":
            from quant.ranges import mse_ranges

            t0 = time.perf_counter()
            positions = mse_ranges(folded, calib, cfg.crop, pcfg.pof2_search)
            # every artifact below rests on this search: its time counts in each one's, like the cropping
            common["range_search_s"] = round(time.perf_counter() - t0, 3)
            t_calib += time.perf_counter() - t0
        for gran, fname in variants:
            t0 = time.perf_counter()
            if pcfg.act_calibration == "tflite":
                data = P.tflite_int8(model, calib, cfg.crop, pcfg.io, gran)
                how = "TFLite converter (min/max)"
            else:
                opts = SchemeOptions("default", per_channel=gran == "per-channel",
                                     cle_steps=pcfg.cle_steps_for("default"))
                qmodel, chosen = fake_quant_ptq(model, calib, cfg, pcfg, opts, positions)
                ranges = ranges or chosen
                data = P.tflite_from_fake_quant(qmodel, pcfg.io)
                how = _calibration_label(pcfg)
                out.setdefault("fake_quant", {})[fname] = qmodel
            path = write_bytes(R.artifact(run_dir, fname), data)
            t = time.perf_counter() - t0 + t_calib
            R.record_quant(run_dir, R.artifact_key(path), _artifact_entry(
                path, t, format="tflite", io=pcfg.io, granularity=gran, calibration=how,
                cle_steps=pcfg.cle_steps_for("default"), **common))
            _check_parity(run_dir, R.artifact_key(path), path, ref, crops, cfg.crop, None, log)
            log("wrote %s (%.3f MB, %s, %s I/O, %.1fs incl. %.1fs cropping and range search)"
                % (path, os.path.getsize(path) / 1e6, gran, pcfg.io, t, t_calib))
            written.append(path)
        if onnx:
            written += _ptq_onnx(run_dir, folded, calib, ref, crops, cfg, pcfg, xcfg, common, t_calib, log,
                                 ranges if pcfg.act_calibration == "mse" else None)
    out["artifacts"] = written
    if evaluate:
        _evaluate(run_dir, written, cfg, log)
    return out


def _calibration_label(pcfg: PtqConfig) -> str:
    if pcfg.act_calibration == "mse":
        return "activation ranges by MIN_MSE power-of-two search (+0..%d)" % pcfg.pof2_search
    if pcfg.act_calibration == "percentile":
        return "activation ranges at the %g/%g percentiles" % (100 - pcfg.act_percentile, pcfg.act_percentile)
    return "activation ranges min/max"


def fake_quant_ptq(model, calib: np.ndarray, cfg, pcfg: PtqConfig, opts, positions=None):
    """Fake-quant copy of `model` with every range calibrated on `calib`: PTQ as a Keras model.

    `positions`: quant.ranges.mse_ranges of the same float model, if already searched."""
    from quant.ranges import init_ranges
    from quant.scheme import quantize

    qmodel, folded = quantize(model, opts, cfg.crop)
    chosen = init_ranges(qmodel, folded, calib, opts.scheme, cfg.crop, opts.search, pcfg.pof2_sample,
                         method=pcfg.range_method, percentile=pcfg.act_percentile, positions=positions)
    return qmodel, chosen


ORT_GIVEN_CROPS = 32


def _drop_old_variants(run_dir: str, filename: str, keep: List[str], log: Callable[[str], Any]) -> None:
    """Delete comparison variants of `filename` an earlier PTQ wrote and this one will not (e.g. the
    ptq_int8_pc.onnx of a run quantized before ptq_int8.onnx itself became per channel), so the
    run's report never shows a file from another quantization beside this one's."""
    for granularity in GRANULARITIES:
        old = R.artifact(run_dir, comparison_file(filename, granularity))
        if os.path.basename(old) not in keep and os.path.isfile(old):
            os.remove(old)
            log("removed %s (a comparison file of an earlier quantization)" % old)


def _ptq_onnx(run_dir, folded, calib, ref, crops, cfg, pcfg, xcfg, common, t_calib, log,
              ranges=None) -> List[str]:
    """ORT static QDQ of the (equalized) float ONNX; `folded` is that float network as Keras
    (quant.scheme.equalized_float). With `ranges` ({Keras layer: (min, max)} of the TFLite PTQ's
    fake-quant model) ORT takes those instead of calibrating (quant.onnx_ranges)."""
    from quant import ptq as P
    from quant.export import ort_kernel_check

    fp32_onnx = R.artifact(run_dir, "fp32.onnx")
    if not os.path.isfile(fp32_onnx) or os.path.getmtime(fp32_onnx) < os.path.getmtime(R.fp32_path(run_dir)):
        export_onnx(run_dir, xcfg, log, crops)
    if pcfg.cle_steps:  # ORT quantizes an equalized (same function: ReLU is scale-equivariant) float graph
        fp32_onnx = _equalized_onnx(run_dir, folded, cfg, xcfg)
    overrides = _ort_overrides(fp32_onnx, folded, ranges, calib, cfg) if ranges else None
    written = []
    variants = granularity_variants("ptq_int8.onnx", pcfg.onnx_granularity, pcfg.also_other_granularity)
    _drop_old_variants(run_dir, "ptq_int8.onnx", [f for _, f in variants], log)
    for granularity, fname in variants:
        per_channel = granularity == "per-channel"
        t0 = time.perf_counter()
        path = R.artifact(run_dir, fname)
        # ORT's calibrator still runs over every tensor; with every range given, a few crops do
        settings = P.ort_static(fp32_onnx, path, calib[:ORT_GIVEN_CROPS] if overrides else calib, cfg.crop,
                                per_channel, pcfg.ort_reduce_range,
                                pcfg.ort_calibrate_method, pcfg.act_percentile, pcfg.ort_weight_type,
                                overrides)
        t = time.perf_counter() - t0 + t_calib
        key = R.artifact_key(path)
        settings["cle_steps"] = pcfg.cle_steps
        R.record_quant(run_dir, key, _artifact_entry(path, t, **dict(common, **settings,
                                                                      granularity=granularity)))
        _check_parity(run_dir, key, path, ref, crops, cfg.crop, None, log,
                      ort_kernel_check(path, crops, cfg.crop))
        log("wrote %s (%.3f MB, QDQ %s, %.1fs)" % (path, os.path.getsize(path) / 1e6, granularity, t))
        written.append(path)
    return written


def _ort_overrides(onnx_path: str, folded, ranges, calib, cfg) -> Dict[str, list]:
    """ORT TensorQuantOverrides carrying `ranges` ({Keras layer of `folded`: (min, max)}) onto the
    ONNX export of `folded`, plus the concat sharing and the crop contract's input range."""
    from quant import onnx_ranges as OR
    from quant.scheme import input_range

    proto = OR.load_model(onnx_path)  # once for the three passes
    matches = OR.match_tensors(proto, folded, sorted(ranges), calib, cfg.crop, label=onnx_path)
    overrides = OR.share_concat_ranges(proto, OR.range_overrides(matches, ranges))
    return OR.share_input_range(proto, overrides, *input_range(cfg.crop))


def _qat_onnx(run_dir: str, folded, ranges, calib, cfg, pcfg: PtqConfig, xcfg: ExportConfig,
              per_channel: bool = QatConfig.onnx_per_channel):
    """(RUN/qat_int8.onnx, settings): ORT's static QDQ of the QAT-tuned, BN-folded float network
    with every activation range the QAT learned (TensorQuantOverrides).

    ORT rather than a conversion of qat_int8.tflite: that file's full 8-bit weights need ORT's
    U8U8 kernels to stay exact on AVX2 without VNNI, a generic path 3-5x slower than the U8S8
    one; ORT's own 7-bit weights (reduce_range, as for PTQ) cost nothing measurable."""
    from quant import ptq as P
    from quant.export import onnx_model
    from quant.onnx_save import save_onnx

    float_onnx = save_onnx(onnx_model(folded, xcfg.onnx_opset, cfg.crop),
                           R.artifact(run_dir, ".qat_float.onnx"))
    names = {layer.name for layer in folded.layers}  # the pose head's ranges have no tensor here
    ranges = {k: v for k, v in ranges.items() if k in names}
    overrides = _ort_overrides(float_onnx, folded, ranges, calib, cfg)
    path = R.artifact(run_dir, "qat_int8.onnx")
    settings = P.ort_static(float_onnx, path, calib[:ORT_GIVEN_CROPS], cfg.crop, per_channel,
                            pcfg.ort_reduce_range, pcfg.ort_calibrate_method, pcfg.act_percentile,
                            pcfg.ort_weight_type, overrides)
    settings["calibration"] = "activation ranges learned by QAT (%d tensors given)" % len(overrides)
    settings["granularity"] = "per-channel" if per_channel else "per-tensor"
    return path, settings


def _equalized_onnx(run_dir: str, folded, cfg, xcfg: ExportConfig) -> str:
    """RUN/.fp32_cle.onnx: the float network the TFLite PTQ quantizes (quant.scheme.equalized_float)."""
    from quant.export import onnx_model
    from quant.onnx_save import save_onnx

    return save_onnx(onnx_model(folded, xcfg.onnx_opset, cfg.crop), R.artifact(run_dir, ".fp32_cle.onnx"))


def _ptq_pof2(run_dir, model, calib, ref, crops, cfg, pcfg, common, evaluate, log) -> List[str]:
    from quant import ptq as P
    from quant.evaluation import evaluate_emulation
    from quant.export import keras_predict
    from quant.files import write_bytes
    from quant.scheme import SchemeOptions

    t0 = time.perf_counter()
    qmodel, positions = fake_quant_ptq(model, calib, cfg, pcfg, SchemeOptions(
        "pof2", search=pcfg.pof2_search, dpu_avgpool=pcfg.pof2_dpu_avgpool,
        cle_steps=pcfg.cle_steps_for("pof2"), output_offset=pcfg.pof2_output_offset))
    t_fq = time.perf_counter() - t0
    path = write_bytes(R.artifact(run_dir, "ptq_pof2.tflite"), P.tflite_from_fake_quant(qmodel, pcfg.io))
    t = time.perf_counter() - t0 + common["calib_crops_s"]
    key = R.artifact_key(path)
    R.record_quant(run_dir, key, _artifact_entry(
        path, t, format="tflite", io=pcfg.io, granularity="per-tensor power-of-two",
        calibration="MIN_MSE position search (+0..%d)" % pcfg.pof2_search, dpu_avgpool=pcfg.pof2_dpu_avgpool,
        cle_steps=pcfg.cle_steps_for("pof2"), output_offset=pcfg.pof2_output_offset,
        fake_quant_s=round(t_fq, 3), activation_positions=positions, **common))
    fq = keras_predict(qmodel, crops, cfg.crop)
    _check_parity(run_dir, key, path, ref, crops, cfg.crop, None, log,
                  {"vs_fake_quant_max_abs_diff": float(np.abs(fq - _infer(path, crops, cfg.crop)).max())})
    log("wrote %s (%.3f MB, power-of-two scales, %.1fs)" % (path, os.path.getsize(path) / 1e6, t))
    if evaluate:
        for split in ("test", "val"):
            evaluate_emulation(run_dir, qmodel, "ptq_pof2_dpu", cfg, split, log,
                               {"scheme": "pof2", "method": "ptq", "what": "Keras fake-quant, DPU rounding"})
    return [path]


def _infer(path: str, crops: np.ndarray, spec) -> np.ndarray:
    from runtime.backends import load_backend

    be = load_backend(path, spec=spec)
    try:
        return be.infer(crops)
    finally:
        be.close()


# ---------------------------------------------------------------------------------- QAT

def qat(run_dir: str, qcfg: QatConfig, pcfg: PtqConfig, xcfg: ExportConfig, scheme: str = "default",
        onnx: bool = True, evaluate: bool = True, log: Log = print) -> Dict[str, Any]:
    from quant import ptq as P
    from quant.calibration import calibration_set
    from quant.export import keras_predict, ort_kernel_check
    from quant.files import write_bytes
    from quant.qat import float_folded_model, run_qat

    cfg = R.load_config(run_dir)
    R.fp32_path(run_dir)
    train_path = R.training_model_path(run_dir)
    t_start = time.perf_counter()
    calib, sources = calibration_set(run_dir, qcfg.calib_images, pcfg.calib_seed)
    result = run_qat(load_keras(train_path), cfg, qcfg, scheme, calib, pcfg, log=log)
    qinfer, hist = result["qinfer"], result["history"]
    t_train = time.perf_counter() - t_start
    stem = "qat_int8" if scheme == "default" else "qat_pof2"
    t0 = time.perf_counter()
    tfl = write_bytes(R.artifact(run_dir, stem + ".tflite"), P.tflite_from_fake_quant(qinfer, pcfg.io))
    t_tfl = time.perf_counter() - t0
    written = [tfl]
    crops = _parity_crops(run_dir, xcfg)
    fp32_ref = keras_predict(load_keras(R.fp32_path(run_dir)), crops, cfg.crop)
    fq = keras_predict(qinfer, crops, cfg.crop)
    tfl_out = _infer(tfl, crops, cfg.crop)
    common = dict(method="qat", scheme=scheme, activation=cfg.model.activation, width=cfg.model.width,
                  calib_images=len(calib), **sources, fine_tune_s=round(t_train, 3),
                  epochs_run=len(hist["val_nme"]) - 1,
                  best_epoch=hist["best_epoch"], val_nme_before=hist["val_nme"][0],
                  val_nme_best=hist["best_val_nme"], val_nme_history=hist["val_nme"],
                  qat=asdict(qcfg), train_faces=hist["train_faces"], val_faces=hist["val_faces"])
    key = R.artifact_key(tfl)
    R.record_quant(run_dir, key, _artifact_entry(tfl, t_train + t_tfl, format="tflite", io=pcfg.io, **common))
    _check_parity(run_dir, key, tfl, fp32_ref, crops, cfg.crop, None, log,
                  {"vs_fake_quant_max_abs_diff": float(np.abs(fq - tfl_out).max())})
    log("wrote %s (%.3f MB)" % (tfl, os.path.getsize(tfl) / 1e6))
    from quant.files import write_with
    from quant.qat import landmark_model

    folded = landmark_model(float_folded_model(result["qtrain"], result["folded"]))
    h5 = R.artifact(run_dir, stem + "_float.h5")
    write_with(h5, lambda tmp: folded.save(tmp, save_format="h5", include_optimizer=False))
    log("wrote %s (QAT-tuned float weights, BN folded: input for vai_q)" % h5)
    if onnx and scheme == "default":
        from quant.ranges import current_ranges

        t0 = time.perf_counter()
        onx, settings = _qat_onnx(run_dir, folded, current_ranges(result["qtrain"]), calib, cfg, pcfg, xcfg,
                                  qcfg.onnx_per_channel)
        t_onx = time.perf_counter() - t0
        key = R.artifact_key(onx)
        R.record_quant(run_dir, key, _artifact_entry(onx, t_train + t_onx, opset=xcfg.onnx_opset,
                                                     **dict(common, **settings)))
        extra = ort_kernel_check(onx, crops, cfg.crop)
        diff = tfl_out - _infer(onx, crops, cfg.crop)
        extra["vs_tflite_max_abs_diff"] = float(np.abs(diff).max())
        _check_parity(run_dir, key, onx, fp32_ref, crops, cfg.crop, None, log, extra)
        log("wrote %s (%.3f MB, QDQ U8S8, the QAT weights and activation ranges)"
            % (onx, os.path.getsize(onx) / 1e6))
        written.append(onx)
    if evaluate:
        _evaluate(run_dir, written, cfg, log)
        if scheme == "pof2":
            from quant.evaluation import evaluate_emulation

            for split in ("test", "val"):
                about = {"scheme": "pof2", "method": "qat", "what": "Keras fake-quant, DPU rounding"}
                evaluate_emulation(run_dir, qinfer, "qat_pof2_dpu", cfg, split, log, about)
    return {"artifacts": written, "history": hist, "wall_s": time.perf_counter() - t_start}
