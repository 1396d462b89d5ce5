"""MobileNetV2-PFLD builder: shapes, weight sharing, H5 round trip, options."""
import numpy as np
import pytest

from keras_flm.config import ModelConfig
from keras_flm.keras_compat import get_keras
from keras_flm.model import (
    EULER,
    LANDMARKS,
    build_inference_model,
    build_training_model,
    inference_model,
    make_divisible,
    summarize,
)
from tests.conftest import randomize_batchnorm

ALLOWED = {"InputLayer", "Conv2D", "DepthwiseConv2D", "BatchNormalization", "ReLU", "Add", "Concatenate",
           "GlobalAveragePooling2D", "AveragePooling2D", "Flatten", "Reshape", "Dense"}


@pytest.fixture(scope="module")
def tiny():
    model = build_training_model(ModelConfig(width=0.25))
    randomize_batchnorm(model, seed=0)
    return model


def _x(n=3, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 112, 112, 1)).astype(np.float32)


def test_training_model_outputs(tiny):
    lms, euler = tiny(_x(), training=False)
    assert lms.shape == (3, 196) and euler.shape == (3, 3)
    assert [o.name.split("/")[0] for o in tiny.outputs] == [LANDMARKS, EULER]


def test_inference_model_shares_weights_and_drops_pose_head(tiny):
    inf = inference_model(tiny)
    assert len(inf.outputs) == 1 and inf.output_shape == (None, 196)
    assert not any(layer.name.startswith("aux") or layer.name == EULER for layer in inf.layers)
    for layer in inf.layers:
        for a, b in zip(layer.get_weights(), tiny.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
    x = _x()
    np.testing.assert_allclose(inf(x, training=False).numpy(), tiny(x, training=False)[0].numpy(), atol=1e-6)
    # Dropping the head leaves the inference weights untouched: perturb the head, output must not change.
    aux = tiny.get_layer("aux1_conv")
    before = inf(x, training=False).numpy()
    aux.set_weights([w + 1.0 for w in aux.get_weights()])
    np.testing.assert_array_equal(inf(x, training=False).numpy(), before)


def test_only_builtin_layers(tiny):
    names = {layer.__class__.__name__ for layer in inference_model(tiny).layers}
    assert names <= ALLOWED, names - ALLOWED


def test_h5_round_trip_without_custom_objects(tiny, tmp_path):
    keras = get_keras()
    inf = inference_model(tiny)
    path = str(tmp_path / "fp32.h5")
    inf.save(path)
    loaded = keras.models.load_model(path, compile=False)
    x = _x(4, 1)
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), inf(x, training=False).numpy())


def test_relu6_option_changes_activations():
    keras = get_keras()
    m6 = build_inference_model(ModelConfig(width=0.25, activation="relu6"))
    mr = build_inference_model(ModelConfig(width=0.25))
    relus6 = [layer for layer in m6.layers if isinstance(layer, keras.layers.ReLU)]
    caps6 = {None if r.max_value is None else float(r.max_value) for r in relus6}
    relusr = [layer for layer in mr.layers if isinstance(layer, keras.layers.ReLU)]
    capsr = {None if r.max_value is None else float(r.max_value) for r in relusr}
    assert caps6 == {6.0} and capsr == {None}
    # Same weights, large inputs: ReLU6 clips where ReLU does not.
    m6.set_weights(mr.get_weights())
    x = _x() * 50
    assert not np.allclose(m6(x).numpy(), mr(x).numpy())
    with pytest.raises(ValueError, match="relu"):
        ModelConfig(activation="swish")


def test_widths_and_default_size_near_paper():
    s_small = summarize(build_inference_model(ModelConfig(width=0.25)))
    s_full = summarize(build_training_model(ModelConfig()))
    s_inf = summarize(build_inference_model(ModelConfig()))
    assert s_small["params"] < s_inf["params"] / 5
    assert s_full["params"] > s_inf["params"]  # the pose head costs parameters only in training
    assert abs(s_inf["fp32_mb"] - 6.59) / 6.59 <= 0.15, s_inf
    assert s_inf["macs"] > 50e6 and s_inf["outputs"] == [[None, 196]]


def test_extra_convs_are_configurable():
    keras = get_keras()
    for n in (0, 3):
        m = build_inference_model(ModelConfig(width=0.25, extra_convs=n))
        extra = [layer for layer in m.layers if layer.name.startswith("extra") and
                 isinstance(layer, keras.layers.Conv2D)]
        assert len(extra) == n and all(layer.kernel_size == (3, 3) for layer in extra)


def test_make_divisible():
    assert make_divisible(64 * 0.25) == 16 and make_divisible(16 * 0.25) == 8 and make_divisible(128) == 128


def test_batchnorm_momentum_follows_config():
    keras = get_keras()
    m = build_inference_model(ModelConfig(width=0.25, bn_momentum=0.8))
    moms = {round(float(layer.momentum), 6) for layer in m.layers
            if isinstance(layer, keras.layers.BatchNormalization)}
    assert moms == {0.8}
