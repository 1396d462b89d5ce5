"""Function-preserving widening of S1 (keras_flm/grow.py) and --init from a narrower run."""
import os

import numpy as np
import pytest

from keras_flm.config import ModelConfig, RunConfig
from keras_flm.grow import embed, grow_into
from keras_flm.model import build_training_model
from keras_flm.run_files import CONFIG_JSON, TRAIN_H5
from keras_flm.train import load_init_weights
from tests.conftest import randomize_batchnorm


def _x(n=2, seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 112, 112, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def narrow():
    model = build_training_model(ModelConfig(width=0.25))
    randomize_batchnorm(model, seed=3)
    return model


def test_embed_zeroes_new_inputs_and_keeps_new_outputs():
    old = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3) + 1
    new = np.full((1, 1, 4, 5), 7.0, np.float32)
    out = embed(old, new, input_axis=-2)
    np.testing.assert_array_equal(out[0, 0, :2, :3], old[0, 0])
    assert not out[0, 0, 2:].any()  # new input rows contribute nothing
    np.testing.assert_array_equal(out[0, 0, :2, 3:], 7.0)  # new outputs keep their initialisation


def test_embed_maps_concatenated_segments():
    old = np.array([[1.0], [2.0], [3.0]])  # inputs: segment A (1 row), segment B (2 rows)
    out = embed(old, np.full((5, 1), 9.0), input_axis=-2, rows=[(0, 0, 1), (1, 3, 2)])
    np.testing.assert_array_equal(out[:, 0], [1.0, 0.0, 0.0, 2.0, 3.0])


def test_embed_refuses_to_shrink():
    with pytest.raises(ValueError, match="cannot grow"):
        embed(np.zeros((4, 2)), np.zeros((3, 2)), input_axis=-2)


def test_wider_s1_starts_as_the_same_function(narrow):
    wide = build_training_model(ModelConfig(width=0.25, s1_channels=64))
    grown = grow_into(wide, narrow)
    assert {"block4_0_project_conv", "block4_0_project_bn", "s2_conv", "fc"} <= set(grown)
    for a, b in zip(narrow(_x(), training=False), wide(_x(), training=False)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
    new_cols = wide.get_layer("block4_0_project_conv").get_weights()[0][..., 8:]
    assert np.abs(new_cols).max() > 0  # the new S1 channels can learn: not a zero-initialised dead end


def test_init_from_a_narrower_run_widens_it(narrow, tmp_path):
    src = tmp_path / "narrow_run"
    src.mkdir()
    narrow.save_weights(str(src / TRAIN_H5))
    cfg = RunConfig()
    cfg.model.width = 0.25
    cfg.save(str(src / CONFIG_JSON))
    wide_cfg = ModelConfig(width=0.25, s1_channels=64)  # 8 -> 16 channels at width 0.25
    wide = build_training_model(wide_cfg)
    assert load_init_weights(wide, str(src), wide_cfg) == os.path.join(str(src), TRAIN_H5)
    np.testing.assert_allclose(narrow(_x(), training=False)[0].numpy(), wide(_x(), training=False)[0].numpy(),
                               rtol=1e-4, atol=1e-4)
    wide.save_weights(str(src / TRAIN_H5))  # now the source is the wider one
    cfg.model.s1_channels = 64
    cfg.save(str(src / CONFIG_JSON))
    with pytest.raises(ValueError, match="cannot widen.*block4_0_project"):  # shrinking: refused, named
        load_init_weights(build_training_model(ModelConfig(width=0.25)), str(src), ModelConfig(width=0.25))
