"""Least-squares refit of the landmark head (keras_flm/head_refit.py): the solver recovers a linear
head, the refit writes it into `fc` and is kept only when the validation sets' mean NME improves;
the refit's box jitter is the run's geometry without photometric changes, occluders or warps."""
import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from keras_flm.cli import cli
from keras_flm.head_refit import (
    current_head,
    head_features,
    refit_head,
    set_head,
    solve_head,
    tracker_geometry,
)
from runtime.preprocess import normalize_input

tf = pytest.importorskip("tensorflow")


def test_solver_recovers_a_linear_map_and_leaves_the_bias_unpenalised():
    rng = np.random.default_rng(0)
    f = np.hstack([rng.normal(size=(500, 20)), np.ones((500, 1))])
    w = rng.normal(size=(21, 6))
    np.testing.assert_allclose(solve_head(f, f @ w, 1e-9), w, atol=1e-6)
    # a huge ridge flattens the weights towards 0, and the unpenalised bias takes the targets' mean
    y = f @ w
    heavy = solve_head(f, y, 1e9)
    assert np.abs(heavy[:-1]).max() < 1e-4
    np.testing.assert_allclose(heavy[-1], (y - f[:, :-1] @ heavy[:-1]).mean(0), atol=1e-6)


def test_kernel_quantization_is_a_symmetric_per_tensor_grid():
    from keras_flm.head_refit import quantize_kernel

    w = np.vstack([np.linspace(-2.0, 1.0, 12).reshape(3, 4), [[0.123, 0.5, 7.0, -3.3]]])
    q = quantize_kernel(w, bits=7)
    step = 2.0 / 63
    np.testing.assert_allclose(q[:-1] / step, np.round(q[:-1] / step), atol=1e-9)  # on the grid
    assert np.abs(q[:-1] - w[:-1]).max() <= step / 2 + 1e-12 and q[0, 0] == -2.0  # the extreme is exact
    np.testing.assert_array_equal(q[-1], w[-1])  # the bias row is not quantized


def _shape() -> np.ndarray:
    """A face-like 98-point layout in crop-normalised units, eyes (60, 72) apart."""
    t = np.linspace(0, 2 * np.pi, 98, endpoint=False)
    pts = np.stack([0.5 + 0.3 * np.cos(t), 0.5 + 0.35 * np.sin(t)], 1)
    pts[60], pts[72] = (0.35, 0.4), (0.65, 0.4)
    return pts.astype(np.float32)


@pytest.fixture(scope="module")
def tiny_model():
    """The head's surroundings only: features named `multiscale` (pooled, 1x1 spatial) feeding a 1x1
    conv `fc` of 196 outputs, beside a pose output as in the training model. (A randomly initialised
    PFLD's pooled features hardly vary between crops, which would test the solver's conditioning,
    not the refit; the real model is exercised by the CLI test on real faces.)"""
    from keras_flm.keras_compat import get_keras

    keras = get_keras()
    keras.utils.set_random_seed(3)
    inp = keras.Input((112, 112, 1), name="image")
    x = keras.layers.Conv2D(24, 7, strides=4, activation="relu")(inp)
    x = keras.layers.Conv2D(24, 3, strides=2, activation="relu")(x)
    feat = keras.layers.GlobalAveragePooling2D(keepdims=True, name="multiscale")(x)
    lm = keras.layers.Flatten(name="landmarks")(keras.layers.Conv2D(196, 1, name="fc")(feat))
    eul = keras.layers.Dense(3, name="euler")(keras.layers.Flatten()(feat))
    return keras.Model(inp, [lm, eul])


def _crops(n: int, seed: int) -> np.ndarray:
    """Crops that differ in brightness, gradient and texture, so the features vary."""
    rng = np.random.default_rng(seed)
    ramp = np.arange(112, dtype=np.float64)
    x = (rng.uniform(40, 200, (n, 1, 1)) + rng.uniform(-1, 1, (n, 1, 1)) * ramp[None, :, None]
         + rng.uniform(-1, 1, (n, 1, 1)) * ramp[None, None, :] + rng.normal(0, 1, (n, 1, 1)) * 20
         * rng.normal(size=(n, 112, 112)))
    return np.clip(x, 0, 255).astype(np.uint8)


def _targets(model, x, w):
    """Landmarks a head `w` would give on model inputs `x` (N, 98, 2)."""
    return (head_features(model, x) @ w).reshape(len(x), 98, 2)


def test_refit_recovers_a_head_and_writes_it_into_fc(tiny_model):
    rng = np.random.default_rng(1)
    x = normalize_input(_crops(480, 1))  # more faces than features
    feats = head_features(tiny_model, x)
    nf = feats.shape[1]
    assert nf < 400
    w_true = np.zeros((nf, 196))
    w_true[-1] = _shape().ravel()
    # landmarks that move by ~0.02 crop widths with the features
    sd = feats[:, :-1].std(0)
    w_true[:-1] = rng.normal(size=(nf - 1, 196)) * 0.02 / (sd + sd.mean())[:, None] / np.sqrt(nf)
    y = _targets(tiny_model, x, w_true)
    set_head(tiny_model, np.vstack([np.zeros((nf - 1, 196)), w_true[-1:]]))  # the mean shape only
    # two fitting sets are stacked; two scoring sets are averaged
    rec = refit_head(tiny_model, [(x[:200], y[:200]), (x[200:400], y[200:400])],
                     {"exact": (x[400:440], y[400:440]), "jittered": (x[440:], y[440:])}, lambdas=(1e-6, 1.0))
    assert rec["kept"] and rec["lambda"] == 1e-6 and rec["fit_crops"] == 400 and rec["val_faces"] == 40
    assert rec["before"]["float"]["mean"] > 0.01 and rec["after"]["float"]["mean"] < 1e-3
    assert rec["after"]["quantized"]["mean"] < rec["before"]["quantized"]["mean"]
    assert rec["val_nme_after"] == rec["after"]["float"]["exact"]
    assert [t["lambda"] for t in rec["tried"]] == [1e-6, 1.0]
    lm = tiny_model(x[400:], training=False)[0].numpy().reshape(-1, 98, 2)
    np.testing.assert_allclose(lm, y[400:], atol=2e-3)  # the model itself now predicts the targets


def test_refit_that_does_not_help_is_discarded(tiny_model):
    x = normalize_input(_crops(48, 2))
    before = [w.copy() for w in tiny_model.get_layer("fc").get_weights()]
    y = _targets(tiny_model, x, current_head(tiny_model))  # the current head is already exact
    rec = refit_head(tiny_model, [(x[:32], y[:32])], {"exact": (x[32:], y[32:])}, lambdas=(10.0,))
    assert not rec["kept"] and rec["lambda"] is None and rec["after"] == rec["before"]
    for a, b in zip(before, tiny_model.get_layer("fc").get_weights()):
        np.testing.assert_array_equal(a, b)


def test_tracker_geometry_keeps_the_box_jitter_and_drops_the_rest():
    from keras_flm.config import augment_preset

    geo = tracker_geometry(augment_preset("turn"))
    turn = augment_preset("turn")
    assert (geo.rotation_deg, geo.scale_jitter, geo.shift_jitter, geo.flip, geo.cache_margin) == (
        turn.rotation_deg, turn.scale_jitter, turn.shift_jitter, turn.flip, turn.cache_margin)
    assert geo.turn_prob == geo.occlusion_prob == geo.blur_prob == geo.lowres_prob == geo.noise_std == 0
    assert geo.brightness == geo.contrast == geo.gamma == 0


def test_cli_names_what_a_run_lacks(tmp_path):
    res = CliRunner().invoke(cli, ["model", "refit-head", "--run", str(tmp_path)])
    assert res.exit_code != 0 and "config.json not found" in res.output


@pytest.mark.slow
def test_train_and_cli_refit_a_run_and_record_it(faces98, tmp_path):
    """A 1-epoch tiny run with TrainConfig.head_refit: `flm train` refits at the end, measuring
    validation before/after and keeping the refit only if it helps; `flm model refit-head` on a
    copy starts from the rewritten train.h5 (its "before" is the first refit's "after")."""
    from keras_flm.config import RunConfig, TrainConfig
    from keras_flm.train import train

    cfg = RunConfig(train=TrainConfig(epochs=1, batch_size=16, max_images=64, head_refit=True))
    cfg.model.width = 0.25
    run = str(tmp_path / "run")
    cache = str(tmp_path / "cache")
    rec = train(cfg, str(faces98), run, cache_dir=cache, progress=False, verbose=0)["head_refit"]
    assert rec["fit_crops"] == 3 * (64 - rec["val_faces"]) and rec["epochs_done"] == 1
    assert rec["after"]["quantized"]["mean"] <= rec["before"]["quantized"]["mean"]
    assert set(rec["before"]) == {"quantized", "float"}
    assert set(rec["before"]["float"]) == {"exact", "jittered", "mean"}
    again = os.path.join(tmp_path, "again")
    shutil.copytree(run, again)
    res = CliRunner().invoke(cli, ["model", "refit-head", "--run", again, "--cache-dir", cache])
    assert res.exit_code == 0, res.output
    assert "landmark head refitted" in res.output
    rec2 = json.load(open(os.path.join(again, "train_state.json")))["head_refit"]
    assert rec2["epochs_done"] == 1
    # the same seed draws the same jittered crops, and train.h5 holds the first refit's head
    for kind in ("exact", "jittered"):
        assert rec2["before"]["float"][kind] == pytest.approx(rec["after"]["float"][kind], rel=1e-4)
