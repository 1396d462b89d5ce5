"""BN folding, the quantization plan, and a QAT step on the PFLD training model (no data needed)."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from keras_flm.config import ModelConfig  # noqa: E402
from keras_flm.keras_compat import get_keras  # noqa: E402
from keras_flm.model import EULER, LANDMARKS, build_training_model  # noqa: E402
from quant.fold import fold_batchnorm  # noqa: E402
from quant.scheme import SchemeOptions, quantize  # noqa: E402


def _randomise_bn(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 2, g.shape), rng.normal(0, 0.3, b.shape),
                               rng.normal(0, 0.3, m.shape), rng.uniform(0.2, 3, v.shape)])
    return model


@pytest.fixture(scope="module")
def train_model():
    get_keras().utils.set_random_seed(0)  # the same weights on every run: thresholds cannot flake
    return _randomise_bn(build_training_model(ModelConfig(width=0.25)))


@pytest.fixture(scope="module")
def quantized(train_model):
    return quantize(train_model, SchemeOptions("default"))


def _x(n=4, seed=1):
    return np.random.default_rng(seed).uniform(-1, 127 / 128, (n, 112, 112, 1)).astype(np.float32)


def test_folding_keeps_outputs_and_removes_every_batchnorm(train_model):
    folded = fold_batchnorm(train_model)
    assert not [layer for layer in folded.layers if type(layer).__name__ == "BatchNormalization"]
    for a, b in zip(train_model(_x(), training=False), folded(_x(), training=False)):
        assert np.abs(a.numpy() - b.numpy()).max() < 1e-5
    assert [t.name.split("/")[0] for t in folded.outputs] == [LANDMARKS, EULER]


def test_quantized_graph_is_folded_and_quantizes_what_an_int8_engine_computes(quantized):
    qmodel, folded = quantized
    wrappers = {layer.layer.name: layer for layer in qmodel.layers if hasattr(layer, "layer")}
    assert not [n for n, w in wrappers.items() if type(w.layer).__name__ == "BatchNormalization"]
    for name, w in wrappers.items():
        kind = type(w.layer).__name__
        if kind in ("Conv2D", "DepthwiseConv2D", "Dense"):
            assert len(w._weight_vars) == 1, name  # the kernel: folded, per tensor
        if name.endswith("expand_conv"):
            assert not w._output_quantizers, name  # fused with its ReLU
        if name in ("pool_s1", "pool_s2", "s3_relu"):
            assert not w._output_quantizers, name  # concat inputs: the concat's scale is theirs
        elif name.endswith(("_relu", "_add", "project_conv")) or name == "multiscale":
            assert w._output_quantizers, name
    assert sum(1 for w in wrappers.values() if type(w.layer).__name__ == "Conv2D") == sum(
        1 for layer in folded.layers if type(layer).__name__ == "Conv2D")


def test_tfmot_default_transform_does_not_fold_batchnorm():
    """Why quant/fold.py exists: TFMOT keeps Conv -> BN and quantizes the unfolded kernel."""
    import tensorflow_model_optimization as tfmot

    keras = get_keras()
    i = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="c")(i)
    x = keras.layers.ReLU(name="r")(keras.layers.BatchNormalization(name="bn")(x))
    q = tfmot.quantization.keras.quantize_model(keras.Model(i, x))
    assert "quant_bn" in [layer.name for layer in q.layers]


def test_qat_model_trains_a_step_and_its_landmark_model_drops_the_pose_head(quantized):
    from keras_flm.data.pipeline import LANDMARK_DIMS
    from keras_flm.loss import make_pfld_loss
    from quant.qat import landmark_model
    from quant.ranges import init_ranges

    keras = get_keras()
    qmodel, folded = quantized
    crops = np.random.default_rng(3).integers(0, 256, (8, 112, 112), dtype=np.uint8)
    init_ranges(qmodel, folded, crops, "default")
    lm, eul = qmodel.outputs
    packed = keras.Model(qmodel.inputs, keras.layers.Concatenate()([lm, eul]))
    packed.compile(keras.optimizers.Adam(1e-3), loss=make_pfld_loss())
    y = np.concatenate([np.full((8, LANDMARK_DIMS), 0.5), np.zeros((8, 9))], 1).astype("float32")
    before = [w.numpy().copy() for w in qmodel.trainable_weights]
    hist = packed.fit(_x(8), y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before, qmodel.trainable_weights))
    infer = landmark_model(qmodel)
    assert infer.output_shape == (None, 196) and len(infer.outputs) == 1
    assert not [layer.name for layer in infer.layers if "aux" in layer.name or EULER in layer.name]
    assert np.allclose(infer(_x(), training=False).numpy(), qmodel(_x(), training=False)[0].numpy())


def test_unknown_layer_or_leftover_batchnorm_is_refused():
    from quant.scheme import layer_configs

    keras = get_keras()
    i = keras.Input((8, 8, 1))
    m = keras.Model(i, keras.layers.BatchNormalization(name="lonely_bn")(i))
    with pytest.raises(ValueError, match="lonely_bn"):
        layer_configs(m, SchemeOptions())
    m2 = keras.Model(i, keras.layers.LeakyReLU(name="leaky")(i))
    with pytest.raises(ValueError, match="leaky"):
        layer_configs(m2, SchemeOptions())


def test_mse_ranges_sit_on_the_power_of_two_grids_of_the_twin_search(train_model):
    """Default scheme, method "mse": each tensor's range is the pof2 twin's MIN_MSE grid, [0, 127/2^p]
    for a non-negative tensor and [-128/2^p, 127/2^p] otherwise; passing the positions back gives the
    same ranges."""
    from quant.ranges import init_ranges, mse_ranges, quantized_outputs

    qmodel, folded = quantize(train_model, SchemeOptions("default"))
    crops = np.random.default_rng(5).integers(0, 256, (16, 112, 112), dtype=np.uint8)
    positions = mse_ranges(folded, crops)
    chosen = init_ranges(qmodel, folded, crops, "default", method="mse")
    assert set(chosen) == {name for _, name in quantized_outputs(qmodel)} and set(chosen) <= set(positions)
    for name, (lo, hi) in chosen.items():
        p = positions[name]
        assert hi == pytest.approx(127 * 2.0 ** -p) and lo in (0.0, pytest.approx(-128 * 2.0 ** -p)), name
    assert chosen["stem_relu"][0] == 0.0
    again = init_ranges(qmodel, folded, crops, "default", method="mse", positions=positions)
    assert again == chosen


def test_pof2_output_offset_centres_the_head_and_adds_the_offset_back(train_model):
    from keras_flm.model import HEAD, inference_model
    from quant.pof2 import OutputOffset, grid_range_np

    model = inference_model(train_model)
    plain = fold_batchnorm(model).get_layer(HEAD).get_weights()[1]
    qmodel, folded = quantize(model, SchemeOptions("pof2", output_offset=0.5))
    assert np.allclose(folded.get_layer(HEAD).get_weights()[1], plain - 0.5)
    assert np.allclose(model.get_layer(HEAD).get_weights()[1], plain)  # the caller's model is left alone
    last = qmodel.layers[-1]
    assert isinstance(last, OutputOffset) and qmodel.output_shape == (None, 196)
    # on the head's grid (position 8: [-0.5, 0.496]) moved by 0.5, every grid value comes back exactly
    last.follow(*grid_range_np(8))
    grid = np.arange(-128, 128, dtype=np.float32) / 256
    out = last(tf.constant(grid[None])).numpy()[0]
    assert np.array_equal(out, grid + 0.5)
    assert last(tf.constant([[-0.6, 0.7]])).numpy().tolist() == [[0.0, 255 / 256]]  # clipped to the grid
    with pytest.raises(ValueError, match="pof2"):
        SchemeOptions("default", output_offset=0.5)
    with pytest.raises(ValueError, match="1 output"):
        quantize(train_model, SchemeOptions("pof2", output_offset=0.5))
