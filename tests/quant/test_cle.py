"""Cross-layer equalization as vai_q applies it (quant/cle.py): same float function, balanced ranges."""
import numpy as np
import pytest

pytest.importorskip("tensorflow")


def test_cle_keeps_the_function_and_balances_the_pairs():
    from keras_flm.config import ModelConfig
    from keras_flm.keras_compat import get_keras
    from keras_flm.model import build_inference_model
    from quant import cle
    from quant.fold import fold_batchnorm
    from tests.conftest import randomize_batchnorm

    get_keras().utils.set_random_seed(1)
    model = build_inference_model(ModelConfig(width=0.25))
    randomize_batchnorm(model, seed=1)
    folded = fold_batchnorm(model)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 112, 112, 1)).astype(np.float32)
    before = folded.predict(x, verbose=0)
    found = cle.pairs(folded)
    names = {(h.name, t.name) for h, t in found}
    assert ("block1_0_expand_conv", "block1_0_dw") in names
    assert ("block1_0_dw", "block1_0_project_conv") in names
    # a conv whose output also feeds a residual Add is not equalized (vai_q matches single consumers only)
    assert not any(h.name.endswith("project_conv") for h, _ in found)
    head, tail = folded.get_layer("block1_0_expand_conv"), folded.get_layer("block1_0_dw")
    assert cle.equalize(folded, steps=10) == len(found)
    np.testing.assert_allclose(folded.predict(x, verbose=0), before, atol=2e-4)
    scale = cle.equalize_pair(head, tail)  # converged: another step changes (almost) nothing
    np.testing.assert_allclose(scale, 1.0, atol=0.02)
