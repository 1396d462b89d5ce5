"""The DPU's numerics as TFMOT quantizers: symmetric per-tensor power-of-two scales.

vitis-ai.md section 5: int8 in [-128, 127], value = int * 2^-p (p = "fix_point" or
position). Weights and biases round half-to-even; activations round half up,
floor(x * 2^p + 0.5) ("DPU_ROUND"). The position is searched as vai_q_tensorflow2 does
(checked against it: scripts/compare_vai_q.py): start at the non-overflow position (the
largest p with max * 2^p <= 127 and min * 2^p >= -128) and keep the one of p .. p+search
with the least mean squared error (MIN_MSE; larger p = finer step, more clipping); an
activation's position is the most common of the calibration batches' own positions.

Fake quantization is `tf.quantization.fake_quant_with_min_max_vars` with
min = -128 * 2^-p and max = 127 * 2^-p: that op's nudged scale is exactly 2^-p, its zero
point is exactly 0 in int8, and it rounds floor(v + 0.5) — the DPU's activation rounding —
and the TFLite converter turns it into int8 tensors with those power-of-two scales.

The DPU averages a pooling window as sum * k / 2^n instead of sum / area; with
`dpu_avgpool` the scheme multiplies pooled outputs by area * k / 2^n as vai_q's
VitisAveragePooling does, so the fake-quant model sees the DPU's pooling gain
(Pof2PoolQuantizer; the TFLite file then holds a MUL by that gain).
"""
import contextlib
import math
from typing import Dict, Iterable, Iterator, Optional, Tuple

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.quantization.keras import quantizers

from keras_flm.keras_compat import get_keras

BITS = 8
QMIN, QMAX = -(2 ** (BITS - 1)), 2 ** (BITS - 1) - 1

#: DPU average-pooling multipliers k / 2^n per window area (vitis-ai.md section 5).
DPU_AVGPOOL_FACTOR: Dict[int, float] = {
    9: 7.0 / 64, 25: 10.0 / 256, 36: 7.0 / 256, 49: 21.0 / 1024, 196: 21.0 / 4096,
}


def avgpool_gain(area: int) -> float:
    """area * (k / 2^n): how much the DPU's pooling over-/under-shoots the true mean (1.0 if exact)."""
    if area in DPU_AVGPOOL_FACTOR:
        return area * DPU_AVGPOOL_FACTOR[area]
    return 1.0  # powers of two divide exactly; other sizes: no documented factor


def non_overflow_position(max_abs: float, qmax: int = QMAX) -> int:
    """Largest p with max_abs * 2^p <= qmax (no clipping at all)."""
    if not max_abs > 0 or not math.isfinite(max_abs):
        return 0 if not max_abs > 0 else -126
    return int(math.floor(math.log2(qmax / max_abs)))


def quantize_np(x: np.ndarray, pos: int, half_up: bool = True) -> np.ndarray:
    """x on the int8 grid 2^-pos: HALF_UP (activations) or half-to-even (weights), clamped."""
    s = np.float64(2.0) ** pos
    v = np.asarray(x, np.float64) * s
    q = np.floor(v + 0.5) if half_up else np.round(v)
    return np.clip(q, QMIN, QMAX) / s


def range_position(lo: float, hi: float) -> int:
    """vai_q's non-overflow position of a value range (get_quantize_pos_non_overflow): the largest p
    with hi * 2^p <= 127 and lo * 2^p >= -128 -- the negative side may use -128, so a tensor whose
    minimum dominates gets one position more than max|x| alone would give it."""
    inv = max(float(hi) / QMAX, float(lo) / QMIN)
    if not inv > 0 or not math.isfinite(inv):
        return 0 if not inv > 0 else -126
    return int(math.floor(-math.log2(inv)))


def mse_position(values: np.ndarray, max_abs: Optional[float] = None, search: int = 4,
                 half_up: bool = True, value_range: Optional[Tuple[float, float]] = None) -> int:
    """MIN_MSE position over non-overflow .. non-overflow + search (ties: the coarser one).

    The non-overflow position (range_position) is of `value_range` (lo, hi) if given, else of
    (-max_abs, max_abs), else of the values' own minimum and maximum, as vai_q takes them."""
    v = np.asarray(values, np.float64).ravel()
    if value_range is not None:
        lo, hi = value_range
    elif max_abs is not None:
        lo, hi = -float(max_abs), float(max_abs)
    else:
        lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
    p0 = range_position(lo, hi)
    errs = [float(np.mean((quantize_np(v, p0 + k, half_up) - v) ** 2)) if v.size else 0.0
            for k in range(search + 1)]
    return p0 + int(np.argmin(errs))


def grid_range(pos):
    """(min, max) of the int8 grid 2^-pos: -128 * 2^-pos, 127 * 2^-pos (exact in float32)."""
    scale = tf.pow(2.0, -tf.cast(pos, tf.float32))
    return QMIN * scale, QMAX * scale


def grid_range_np(pos: int):
    return QMIN * 2.0 ** -pos, QMAX * 2.0 ** -pos


def position_of(max_value: float) -> int:
    """The position p of a stored grid maximum 127 * 2^-p."""
    return int(round(math.log2(QMAX / float(max_value))))


def _fake_quant(x, lo, hi):
    return tf.quantization.fake_quant_with_min_max_vars(x, lo, hi, num_bits=BITS, narrow_range=False)


#: vai_q's calibration ("QCB" mode), switched on by `calibrating`: an activation quantizer traced
#: meanwhile takes the MIN_MSE position of the batch it sees, stores it and quantizes with it, so
#: later tensors are calibrated on the quantized network, as vai_q calibrates them.
_CALIBRATION: Dict[str, object] = {"quantizers": frozenset(), "search": 4}


@contextlib.contextmanager
def calibrating(quantizers_: Iterable[object], search: int = 4) -> Iterator[None]:
    """Within: `quantizers_` (activation quantizer objects) calibrate on every batch they see."""
    _CALIBRATION.update(quantizers=frozenset(id(q) for q in quantizers_), search=int(search))
    try:
        yield
    finally:
        _CALIBRATION.update(quantizers=frozenset())


def _calibrates(quantizer) -> bool:
    return id(quantizer) in _CALIBRATION["quantizers"]


def activation_position_tf(x, search: int):
    """In-graph MIN_MSE position of a batch of activations (HALF_UP), from the batch's own range."""
    x = tf.reshape(tf.cast(x, tf.float32), [-1])
    inv = tf.maximum(tf.maximum(tf.reduce_max(x) / QMAX, tf.reduce_min(x) / QMIN), 1e-30)  # range_position
    p0 = tf.floor(-tf.math.log(inv) / math.log(2.0))
    errs = []
    for k in range(search + 1):
        scale = tf.pow(2.0, p0 + k)
        q = tf.clip_by_value(tf.floor(x * scale + 0.5), QMIN, QMAX) / scale
        errs.append(tf.reduce_mean(tf.square(q - x)))
    return p0 + tf.cast(tf.argmin(tf.stack(errs)), tf.float32)


def _calibrated_range(weights, x, prefixes):
    """Store the batch's position in the `prefixes` grids of `weights`; returns that grid (lo, hi)."""
    lo, hi = grid_range(tf.stop_gradient(activation_position_tf(x, _CALIBRATION["search"])))
    for prefix in prefixes:
        weights[prefix + "min_var"].assign(lo)
        weights[prefix + "max_var"].assign(hi)
    return lo, hi


def weight_position_tf(w, search: int):
    """In-graph MIN_MSE position of a weight tensor (half-to-even rounding)."""
    w = tf.cast(w, tf.float32)
    inv = tf.maximum(tf.maximum(tf.reduce_max(w) / QMAX, tf.reduce_min(w) / QMIN), 1e-30)  # range_position
    p0 = tf.floor(-tf.math.log(inv) / math.log(2.0))
    cands = p0 + tf.range(search + 1, dtype=tf.float32)
    scales = tf.pow(2.0, cands)
    flat = tf.reshape(w, [1, -1])
    s = tf.reshape(scales, [-1, 1])
    q = tf.clip_by_value(tf.round(flat * s), QMIN, QMAX) / s
    err = tf.reduce_mean(tf.square(q - flat), axis=1)
    return tf.gather(cands, tf.argmin(err))


def _range_vars(layer, name: str, init_pos: int):
    keras = get_keras()
    lo, hi = grid_range_np(init_pos)
    return {"min_var": layer.add_weight(name + "_min", shape=(), initializer=keras.initializers.Constant(lo),
                                        trainable=False),
            "max_var": layer.add_weight(name + "_max", shape=(), initializer=keras.initializers.Constant(hi),
                                        trainable=False)}


class Pof2WeightQuantizer(quantizers.Quantizer):
    """Weights/bias: MIN_MSE power-of-two grid of the current values.

    Like TFMOT's LastValueQuantizer: a training step recomputes the position from the
    weights and stores the grid's min/max; inference (and the TFLite converter, which folds
    a FakeQuant fed by constant min/max into int8 weights) reads the stored ones.
    `quant.ranges.init_weight_ranges` sets them after quantization, before any inference.

    The FakeQuant op rounds half up where the DPU rounds weights half-to-even: they differ
    only when w * 2^pos is exactly k + 0.5, which trained float32 weights practically never
    are (`quantize_np(..., half_up=False)` is the exact reference).
    """

    def __init__(self, search: int = 4):
        self.search = int(search)

    def build(self, tensor_shape, name, layer):
        return _range_vars(layer, name, 7)

    def __call__(self, inputs, training, weights, **kwargs):
        if training:
            lo, hi = grid_range(tf.stop_gradient(weight_position_tf(inputs, self.search)))
            weights["min_var"].assign(lo)
            weights["max_var"].assign(hi)
            return _fake_quant(inputs, lo, hi)
        return _fake_quant(inputs, weights["min_var"], weights["max_var"])

    def get_config(self):
        return {"search": self.search}

    def __eq__(self, other):
        return isinstance(other, Pof2WeightQuantizer) and other.search == self.search

    def __ne__(self, other):
        return not self.__eq__(other)


class Pof2BiasQuantizer(Pof2WeightQuantizer):
    """Biases: the DPU's int8 power-of-two bias, rounded half-to-even, by plain ops.

    Not a FakeQuant: the TFLite converter cannot fold a FakeQuant on a bias (it then keeps
    the whole conv in float). Rounded with ops, the bias is a constant on the pof2 grid that
    the converter stores as int32 at input_scale * weight_scale — exactly, whenever that
    scale is the finer one (the DPU's shift_bias >= 0 case).
    """

    def __call__(self, inputs, training, weights, **kwargs):
        if training:
            lo, hi = grid_range(tf.stop_gradient(weight_position_tf(inputs, self.search)))
            weights["min_var"].assign(lo)
            weights["max_var"].assign(hi)
        else:
            hi = weights["max_var"]
        step = tf.stop_gradient(hi / QMAX)
        q = tf.clip_by_value(tf.round(inputs / step), QMIN, QMAX) * step
        return inputs + tf.stop_gradient(q - inputs)


class Pof2ActivationQuantizer(quantizers.Quantizer):
    """Activations: a stored power-of-two grid (set by calibration, fixed during QAT), HALF_UP."""

    def __init__(self, init_pos: int = 4):
        self.init_pos = int(init_pos)

    def build(self, tensor_shape, name, layer):
        return _range_vars(layer, name, self.init_pos)

    def __call__(self, inputs, training, weights, **kwargs):
        if _calibrates(self):
            return _fake_quant(inputs, *_calibrated_range(weights, inputs, [""]))
        return _fake_quant(inputs, weights["min_var"], weights["max_var"])

    def get_config(self):
        return {"init_pos": self.init_pos}

    def __eq__(self, other):
        return isinstance(other, type(self)) and other.get_config() == self.get_config()

    def __ne__(self, other):
        return not self.__eq__(other)


class Pof2PoolQuantizer(Pof2ActivationQuantizer):
    """A pooled output on the DPU: mean on a pof2 grid, times the pooling `gain`, then
    (`quantize`) rounded on the output grid.

    The DPU rounds sum * k / 2^n once. TFLite cannot: its MEAN op rounds, then a MUL applies
    the gain. Both roundings are modelled so the fake-quant model and its TFLite file agree;
    calibration ties the mean's grid to the output's (or to the Concatenate's it feeds), so
    the second rounding only moves values beyond ~100 LSB (|x| * (gain - 1) >= 0.5 LSB).
    `quantize=False`: the pooled tensor feeds a Concatenate, whose quantizer rounds it.
    """

    def __init__(self, init_pos: int = 4, gain: float = 1.0, quantize: bool = True):
        super().__init__(init_pos)
        self.gain = float(gain)
        self.quantize = bool(quantize)

    def build(self, tensor_shape, name, layer):
        v = _range_vars(layer, name + "_pre", self.init_pos)
        v = {"pre_min_var": v["min_var"], "pre_max_var": v["max_var"]}
        if self.quantize:
            v.update(_range_vars(layer, name, self.init_pos))
        return v

    def __call__(self, inputs, training, weights, **kwargs):
        if _calibrates(self):  # one grid for the mean and the output, from the pooled output
            grids = ["pre_", ""] if self.quantize else ["pre_"]
            lo, hi = _calibrated_range(weights, inputs * self.gain, grids)
            x = _fake_quant(inputs, lo, hi) * self.gain
            return _fake_quant(x, lo, hi) if self.quantize else x
        x = _fake_quant(inputs, weights["pre_min_var"], weights["pre_max_var"])
        if self.gain != 1.0:
            x = x * self.gain
        return _fake_quant(x, weights["min_var"], weights["max_var"]) if self.quantize else x

    def get_config(self):
        return {"init_pos": self.init_pos, "gain": self.gain, "quantize": self.quantize}


def set_position(qvars, pos: int, prefix: str = "") -> None:
    """Store grid 2^-pos in a pof2 quantizer's variables (prefix "pre_" for a pool's mean grid)."""
    lo, hi = grid_range_np(int(pos))
    qvars[prefix + "min_var"].assign(lo)
    qvars[prefix + "max_var"].assign(hi)


class OutputOffset(get_keras().layers.Layer):
    """Landmarks from a centred int8 output: x + offset, on x's grid moved by offset.

    Crop-normalised landmarks lie in [0, 1]; a symmetric power-of-two int8 grid covering
    them (position 7: [-1, 0.99]) spends half its codes on negative values no landmark takes,
    so the DPU's output step is 1/128 of the crop (0.9 px at 112) where the host INT8
    schemes, with a zero point, get 1/255. Emitting landmarks minus the crop centre
    (runtime.preprocess.CROP_CENTRE: the head's bias shifted by -offset) lets MIN_MSE choose
    position 8 ([-0.5, 0.496]), half the step; the runtime adds the offset back after
    dequantizing (the DPU's output record carries it: vitis quantize/compile/bundle). On
    validation of runs/cyc_s23 that halves the pof2 PTQ loss: FP32 3.330 %, pof2 3.507 ->
    3.424 % (scripts/release_gate.py's numbers come from the same code).

    Here the add is followed by a fake quant on the head's grid plus offset (`follow`):
    exact for every value on that grid (offset * 2^p is an integer), and it makes the TFLite
    file's output an int8 tensor with a zero point, as full-integer as the rest.
    """

    def __init__(self, offset: float, **kwargs):
        super().__init__(**kwargs)
        self.offset = float(offset)

    def build(self, input_shape):
        lo, hi = grid_range_np(7)
        const = get_keras().initializers.Constant
        self.min_var = self.add_weight("min", shape=(), initializer=const(lo + self.offset), trainable=False)
        self.max_var = self.add_weight("max", shape=(), initializer=const(hi + self.offset), trainable=False)
        super().build(input_shape)

    def call(self, inputs):
        return _fake_quant(inputs + self.offset, self.min_var, self.max_var)

    def follow(self, lo: float, hi: float) -> None:
        """Take the input's grid (lo, hi), moved by the offset."""
        self.min_var.assign(float(lo) + self.offset)
        self.max_var.assign(float(hi) + self.offset)

    def get_config(self):
        return dict(super().get_config(), offset=self.offset)


def graded_input(layer):
    """The nearest layer upstream of `layer` whose output carries a quantizer (through Flatten)."""
    up = layer
    while True:
        up = up._inbound_nodes[0].inbound_layers
        up = up[0] if isinstance(up, (list, tuple)) else up
        if getattr(up, "_output_quantizer_vars", None):
            return up


def follow_output_offsets(qmodel) -> int:
    """Point every OutputOffset of `qmodel` at its input's calibrated grid; returns how many."""
    n = 0
    for layer in qmodel.layers:
        if isinstance(layer, OutputOffset):
            v = graded_input(layer)._output_quantizer_vars
            layer.follow(float(v["min_var"].numpy()), float(v["max_var"].numpy()))
            n += 1
    return n


CUSTOM_OBJECTS = {"Pof2WeightQuantizer": Pof2WeightQuantizer, "Pof2BiasQuantizer": Pof2BiasQuantizer,
                  "Pof2ActivationQuantizer": Pof2ActivationQuantizer, "Pof2PoolQuantizer": Pof2PoolQuantizer,
                  "OutputOffset": OutputOffset}
