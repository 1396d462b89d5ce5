"""Initialise a fake-quant model's activation ranges from calibration crops.

TFMOT's activation ranges start at [-6, 6] and move by EMA(0.999) per training step, so a
short fine-tune would train against coarse, wrong ranges (docs/stack-notes.md). Instead we
run the calibration crops through the BN-folded float model, record each quantized
tensor's statistics and write them into the quantizers' variables:
  * "default": "mse" (the default method) takes each tensor's range from vai_q's MIN_MSE
    calibration below, run on a power-of-two twin of the same network; "percentile" clips
    at a percentile of the float network's values; "minmax" is the TFLite calibrator's
    global min / max. QAT starts from the same ranges as PTQ;
  * "pof2": vai_q_tensorflow2's own calibration (calibrate_pof2): per batch of 32 crops, the
    fake-quant model runs with each activation quantizer taking the MIN_MSE position of its
    batch; the most common position per tensor is kept, and a Concatenate and the pooled
    tensors it reads get the smallest of theirs (vai_q's align_concat).
Weight quantizers keep their range in variables that only a training step updates
(TFMOT's LastValueQuantizer starts at +-6!), so `init_weight_ranges` sets them from the
current weights as a training step would: the symmetric max |w| (default) or the MIN_MSE
half-to-even position (pof2).
"""
from typing import Dict, List, Optional, Tuple

import numpy as np

from keras_flm.keras_compat import get_keras
from quant import pof2
from runtime.preprocess import DEFAULT_SPEC, CropSpec, normalize_input


def quantized_outputs(qmodel) -> List[Tuple[object, str]]:
    """(wrapper, float layer name) for every wrapper whose output carries a quantizer with state."""
    out = []
    for layer in qmodel.layers:
        quantizers = getattr(layer, "_output_quantizers", None)
        if quantizers and getattr(layer, "_output_quantizer_vars", None):
            out.append((layer, layer.layer.name))
    return out


def current_ranges(qmodel) -> Dict[str, Tuple[float, float]]:
    """{float layer name: (min, max)} of the activation ranges `qmodel`'s quantizers hold now
    (after QAT: the learned ones), for every quantized output."""
    out = {}
    for wrapper, name in quantized_outputs(qmodel):
        v = wrapper._output_quantizer_vars
        out[name] = (float(v["min_var"].numpy()), float(v["max_var"].numpy()))
    return out


def layer_probe(float_model, names: List[str]):
    """A Keras model returning the named layers' outputs of `float_model` (in that order)."""
    keras = get_keras()
    return keras.Model(float_model.inputs, [float_model.get_layer(n).output for n in names])


def collect_stats(float_model, names: List[str], crops: np.ndarray, spec: CropSpec = DEFAULT_SPEC,
                  batch: int = 16, sample: int = 0, seed: int = 0) -> Dict[str, Dict[str, object]]:
    """{layer: {"min", "max", "max_abs", "sample"}} of the named layers' outputs on `crops`."""
    import tensorflow as tf
    from tqdm import tqdm

    probe = layer_probe(float_model, names)
    fn = tf.function(lambda x: probe(x, training=False))
    rng = np.random.default_rng(seed)
    stats = {n: {"min": np.inf, "max": -np.inf, "parts": []} for n in names}
    x_all = normalize_input(crops, spec)
    for start in tqdm(range(0, len(x_all), batch), desc="activation ranges", unit="batch", leave=False):
        outs = fn(tf.constant(x_all[start:start + batch]))
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for n, o in zip(names, outs):
            a = o.numpy().ravel()
            s = stats[n]
            s["min"] = min(s["min"], float(a.min()))
            s["max"] = max(s["max"], float(a.max()))
            if sample:
                s["parts"].append(a if a.size <= sample else rng.choice(a, sample, replace=False))
    for s in stats.values():
        parts = s.pop("parts")
        s["sample"] = np.concatenate(parts) if parts else None
        s["max_abs"] = max(abs(s["min"]), abs(s["max"]))
    return stats


def init_weight_ranges(qmodel) -> int:
    """Set every weight quantizer's range from the current weights; returns how many."""
    from tensorflow_model_optimization.quantization.keras import quantizers

    n = 0
    for layer in qmodel.layers:
        for weight, quantizer, qvars in getattr(layer, "_weight_vars", []):
            if isinstance(quantizer, pof2.Pof2WeightQuantizer):
                pof2.set_position(qvars, pof2.mse_position(weight.numpy(), search=quantizer.search,
                                                           half_up=False))
                n += 1
            elif isinstance(quantizer, quantizers.LastValueQuantizer) and "min_var" in qvars:
                w = weight.numpy()
                axes = tuple(range(w.ndim - 1)) if quantizer.per_axis else None
                m = np.max(np.abs(w), axis=axes)
                qvars["min_var"].assign(np.broadcast_to(-m, qvars["min_var"].shape))
                qvars["max_var"].assign(np.broadcast_to(m, qvars["max_var"].shape))
                n += 1
    return n


METHODS = ("mse", "percentile", "minmax")


def mse_ranges(float_model, crops: np.ndarray, spec: CropSpec = DEFAULT_SPEC, search: int = 4,
               batch: int = 32) -> Dict[str, int]:
    """{layer: power-of-two position} from calibrate_pof2 on a pof2 twin of `float_model`.

    Why a twin: percentile clipping is blind to what a tensor feeds. The MSE search runs on
    the quantized network, batch by batch, and a Concatenate shares its inputs' finest grid; on
    the wing-loss release it clips the multi-scale concat at 0.5 where p99.9 keeps 18 (the
    pooled S1/S2 features are small, S3's 1x1 map is large and heavy-tailed). Val NME of the
    fake-quant default scheme: p99.9 6.98 %, min/max 14.3 %, these ranges 4.80 % (FP32 4.86 %).
    No DPU average-pool gain: the twin stands in for a TFLite/ORT graph."""
    from quant.scheme import SchemeOptions, quantize

    twin, twin_float = quantize(float_model, SchemeOptions("pof2", search=search, dpu_avgpool=False), spec)
    return init_ranges(twin, twin_float, crops, "pof2", spec, search, batch=batch)


def init_ranges(qmodel, float_model, crops: np.ndarray, scheme: str, spec: CropSpec = DEFAULT_SPEC,
                search: int = 4, sample: int = 20000, batch: Optional[int] = None, seed: int = 0,
                method: str = "mse", percentile: float = 99.9,
                positions: Optional[Dict[str, int]] = None) -> Dict[str, object]:
    """Write calibrated ranges into `qmodel`'s quantizers; return what was set per layer.

    `float_model` must hold the float layers the wrappers wrap (the BN-folded model
    `quant.scheme.quantize` built on; its layer names match `wrapper.layer.name`).
    Default scheme: `method` "mse" gives a tensor whose position mse_ranges found as p the
    range [0, 127 / 2^p] (non-negative tensors: all 256 levels inside the DPU's positive
    half) or [-128 / 2^p, 127 / 2^p]; "percentile" clips each tensor at its `percentile` /
    100 - `percentile` values (ReLU activations are heavy-tailed: max ~ 10 x p99.9, and a
    min/max range wastes the 256 levels on a few outliers); "minmax" is the TFLite
    calibrator's choice. pof2: MIN_MSE positions (the DPU's method). `positions`: what
    mse_ranges returned for this float model already (it does not depend on the weights'
    granularity, so PTQ's per-tensor and per-channel variants search once).
    """
    if method not in METHODS:
        raise ValueError("calibration method must be one of %s, got %r" % (", ".join(METHODS), method))
    init_weight_ranges(qmodel)
    targets = quantized_outputs(qmodel)
    if scheme == "pof2":
        chosen = calibrate_pof2(qmodel, targets, crops, spec, search, batch or 32)
        _align_concat(targets, float_model, chosen)
        pof2.follow_output_offsets(qmodel)
        return chosen
    names = [n for _, n in targets]
    sample = sample if method == "percentile" else 0
    stats = collect_stats(float_model, names, crops, spec, batch or 16, sample, seed)
    if method == "mse":
        if positions is None:
            positions = mse_ranges(float_model, crops, spec, search, batch or 32)
        missing = [n for n in names if n not in positions]
        if missing:
            raise RuntimeError("the pof2 twin quantizes no tensor named %s" % ", ".join(missing))
    chosen: Dict[str, object] = {}
    for wrapper, name in targets:
        s = stats[name]
        v = wrapper._output_quantizer_vars
        lo, hi = s["min"], s["max"]
        if method == "mse":
            lo_grid, hi = pof2.grid_range_np(positions[name])
            lo = lo_grid if s["min"] < 0 else 0.0
        elif method == "percentile":
            lo, hi = (float(x) for x in np.percentile(s["sample"], [100.0 - percentile, percentile]))
        lo, hi = min(lo, 0.0), max(hi, 0.0)  # TFLite needs 0 exactly representable
        if hi - lo < 1e-6:
            hi = lo + 1e-6
        v["min_var"].assign(lo)
        v["max_var"].assign(hi)
        chosen[name] = (lo, hi)
    return chosen


def calibrate_pof2(qmodel, targets, crops: np.ndarray, spec: CropSpec = DEFAULT_SPEC, search: int = 4,
                   batch: int = 32) -> Dict[str, object]:
    """vai_q_tensorflow2's pof2s calibration of the activation positions (its "QCB" pass).

    Batch by batch (vai_q's calib batch: 32) the fake-quant model runs with every activation
    quantizer taking the MIN_MSE position of the batch it sees and quantizing with it, so a
    tensor is calibrated on what the quantized layers before it produce; each tensor keeps the
    most common of its batches' positions, ties to the earliest batch's (vai_q's
    get_most_common_quantize_info). Weights must hold their positions already."""
    import tensorflow as tf

    x_all = normalize_input(crops, spec)
    seen: Dict[str, List[int]] = {name: [] for _, name in targets}
    with pof2.calibrating([w._output_quantizers[0] for w, _ in targets], search):
        fn = tf.function(lambda x: qmodel(x, training=False))
        for start in range(0, len(x_all), batch):
            fn(tf.constant(x_all[start:start + batch]))
            for wrapper, name in targets:
                v = wrapper._output_quantizer_vars
                grid = v["pre_max_var" if "pre_max_var" in v else "max_var"]
                seen[name].append(pof2.position_of(grid.numpy()))
    chosen: Dict[str, object] = {}
    for wrapper, name in targets:
        pos = max(seen[name], key=seen[name].count)
        v = wrapper._output_quantizer_vars
        for prefix in ("", "pre_"):
            if prefix + "min_var" in v:
                pof2.set_position(v, pos, prefix)
        chosen[name] = pos
    return chosen


def _align_concat(targets, float_model, chosen: Dict[str, object]) -> None:
    """vai_q's align_concat: a Concatenate and the pooled tensors it reads (rounded on its grid: the
    DPU concatenates int8 tensors of one position) share the smallest of their positions."""
    wrappers = {name: w for w, name in targets}
    feeds: Dict[str, List[str]] = {}
    for wrapper, name in targets:
        v = wrapper._output_quantizer_vars
        if "pre_min_var" not in v or "min_var" in v:
            continue
        users = [n.outbound_layer for n in float_model.get_layer(name)._outbound_nodes
                 if n.outbound_layer.name in chosen]
        if len(users) == 1:
            feeds.setdefault(users[0].name, []).append(name)
    for cat, pools in feeds.items():
        pos = min([chosen[cat]] + [chosen[p] for p in pools])
        pof2.set_position(wrappers[cat]._output_quantizer_vars, pos)
        for name in [cat] + pools:
            if name != cat:
                pof2.set_position(wrappers[name]._output_quantizer_vars, pos, "pre_")
            chosen[name] = pos
