"""The DPU-like power-of-two scheme: grids, rounding, saturation, position search, in TF and numpy."""
import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from quant import pof2  # noqa: E402
from quant.inspect_model import is_power_of_two  # noqa: E402


def test_non_overflow_position_is_the_largest_without_clipping():
    for m in (0.3, 1.0, 1.5, 7.9, 100.0):
        p = pof2.non_overflow_position(m)
        assert m * 2.0 ** p <= 127 < m * 2.0 ** (p + 1)


def test_numpy_grid_saturates_at_int8_and_rounds_half_up_for_activations():
    p = 3  # step 1/8
    x = np.array([-1000.0, -16.0, -16.0625, 15.875, 15.94, 1000.0, 0.0625, -0.0625, 0.1875])
    q = pof2.quantize_np(x, p, half_up=True)
    assert q[0] == -128 / 8 and q[5] == 127 / 8  # saturation at -128 and 127
    assert q[1] == -16.0 and q[2] == -16.0  # -128.5 LSB clamps to -128
    assert q[6] == 0.125 and q[7] == 0.0  # +0.5 LSB -> up, -0.5 LSB -> up (floor(x + 0.5))
    assert q[8] == 0.25  # 1.5 LSB -> 2
    e = pof2.quantize_np(np.array([0.0625, 0.1875, -0.0625]), p, half_up=False)
    assert list(e) == [0.0, 0.25, 0.0]  # weights: half to even


def test_mse_position_prefers_clipping_a_lone_outlier():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(0, 0.5, 20000), [40.0]])
    p0 = pof2.non_overflow_position(40.0)
    p = pof2.mse_position(v, search=4)
    assert p0 < p <= p0 + 4
    dense = rng.uniform(-3, 3, 20000)
    assert pof2.mse_position(dense, search=4) == pof2.non_overflow_position(3.0)


def test_tf_fake_quant_matches_the_dpu_rounding_and_range():
    p = 4
    lo, hi = pof2.grid_range(p)
    assert float(lo) == -128 / 16 and float(hi) == 127 / 16
    x = np.random.default_rng(1).uniform(-10, 10, 5000).astype(np.float32)
    x[:4] = [1 / 32, -1 / 32, 3 / 32, -3 / 32]  # exact half-LSB ties
    y = pof2._fake_quant(tf.constant(x), lo, hi).numpy()
    assert np.array_equal(y, pof2.quantize_np(x, p, half_up=True).astype(np.float32))
    assert y.min() == -8.0 and y.max() == 127 / 16


def test_weight_quantizer_picks_a_power_of_two_grid_and_saturates():
    keras = pytest.importorskip("tf_keras")
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    q = pof2.Pof2WeightQuantizer(search=4)
    vars_ = q.build((4, 3), "kernel", layer)
    w = tf.constant(np.random.default_rng(2).normal(0, 0.2, (64, 32)).astype(np.float32))
    wq = q(w, True, vars_).numpy()  # a training step stores the grid
    hi = float(vars_["max_var"].numpy())
    step = hi / 127
    assert is_power_of_two(step)
    assert float(vars_["min_var"].numpy()) == -128 * step
    k = wq / step
    assert np.allclose(k, np.round(k)) and k.min() >= -128 and k.max() <= 127
    assert pof2.position_of(hi) == pof2.mse_position(w.numpy(), search=4, half_up=False)
    assert np.array_equal(q(w, False, vars_).numpy(), wq)  # inference reads the stored grid


def test_bias_quantizer_rounds_half_to_even_on_its_grid():
    keras = pytest.importorskip("tf_keras")
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    q = pof2.Pof2BiasQuantizer(search=0)
    v = q.build((4,), "bias", layer)
    pof2.set_position(v, 2)  # step 1/4
    b = tf.constant([0.125, 0.375, -0.125, 100.0], tf.float32)
    assert list(q(b, False, v).numpy()) == [0.0, 0.5, 0.0, 127 / 4]


def test_dpu_avgpool_gain_from_the_documented_factors():
    assert pof2.avgpool_gain(196) == pytest.approx(196 * 21 / 4096)
    assert pof2.avgpool_gain(49) == pytest.approx(49 * 21 / 1024)
    assert pof2.avgpool_gain(16) == 1.0  # no documented factor: exact mean
    assert math.isclose(pof2.avgpool_gain(9), 9 * 7 / 64)
