"""Tiny end-to-end training on faces98: artifacts, loss goes down, resume continues."""
import csv
import dataclasses
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from keras_flm.cli import cli
from keras_flm.config import RunConfig, augment_preset

tf = pytest.importorskip("tensorflow")


def _tiny_cfg(epochs=2):
    cfg = RunConfig()
    cfg.model.width = 0.25
    cfg.train.max_images = 72
    cfg.train.batch_size = 16
    cfg.train.epochs = epochs
    cfg.train.lr = 3e-3
    return cfg


def _log(run):
    with open(os.path.join(run, "log.csv")) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny_run(faces98, tmp_path_factory):
    from keras_flm.train import train

    run = str(tmp_path_factory.mktemp("runs") / "tiny")
    cache = str(tmp_path_factory.mktemp("cache"))
    state = train(_tiny_cfg(), str(faces98), run, cache_dir=cache, progress=False, verbose=0)
    return run, cache, state


@pytest.mark.slow
def test_tiny_run_writes_every_artifact(tiny_run):
    run, _, state = tiny_run
    for name in ("config.json", "log.csv", "train_state.json", "fp32.h5", "train.h5", "checkpoints", "tb"):
        assert os.path.exists(os.path.join(run, name)), name
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert cfg["model"]["width"] == 0.25 and cfg["train"]["max_images"] == 72
    assert cfg["data"]["train_faces"] + cfg["data"]["val_faces"] == 72
    assert cfg["versions"]["tensorflow"] == tf.__version__
    assert RunConfig.load(os.path.join(run, "config.json")).model.width == 0.25
    assert state["epochs_done"] == 2 and state["finished"] and np.isfinite(state["best_val_nme"])
    assert "head_refit" not in state  # off by default (TrainConfig.head_refit)


@pytest.mark.slow
def test_loss_goes_down(tiny_run):
    rows = _log(tiny_run[0])
    assert len(rows) == 2
    assert float(rows[1]["loss"]) < float(rows[0]["loss"])
    assert all(np.isfinite(float(r["val_nme"])) for r in rows)


@pytest.mark.slow
def test_fp32_h5_is_the_inference_model(tiny_run):
    from keras_flm.keras_compat import get_keras
    from keras_flm.model import LANDMARKS

    keras = get_keras()
    run = tiny_run[0]
    fp32 = keras.models.load_model(os.path.join(run, "fp32.h5"), compile=False)  # no custom objects
    full = keras.models.load_model(os.path.join(run, "train.h5"), compile=False)
    assert len(fp32.outputs) == 1 and fp32.output_shape == (None, 196)
    assert fp32.input_shape == (None, 112, 112, 1)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 112, 112, 1)).astype(np.float32)
    lm_full = full(x, training=False)[0].numpy()
    assert np.allclose(fp32(x, training=False).numpy(), lm_full, atol=1e-5)
    assert full.get_layer(LANDMARKS) is not None


@pytest.mark.slow
def test_last_h5_is_where_training_ended(tiny_run):
    """last.h5 keeps the end of a run whose best epoch came earlier; when the last epoch was the best
    it is the same model as fp32.h5."""
    from keras_flm.keras_compat import get_keras

    keras = get_keras()
    run, _, state = tiny_run
    last = keras.models.load_model(os.path.join(run, "last.h5"), compile=False)
    assert len(last.outputs) == 1 and last.output_shape == (None, 196)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 112, 112, 1)).astype(np.float32)
    fp32 = keras.models.load_model(os.path.join(run, "fp32.h5"), compile=False)
    same = np.allclose(last(x, training=False).numpy(), fp32(x, training=False).numpy(), atol=1e-5)
    assert same == (state["best_epoch"] == state["epochs_done"])


@pytest.mark.slow
def test_resume_continues_epoch_count(tiny_run, faces98):
    run, cache, _ = tiny_run
    args = ["train", "--run", run, "--resume", "--epochs", "3", "--cache-dir", cache]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "inside training by" not in result.output  # a float32 run's validation is already FP32
    rows = _log(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]  # one new epoch, not a restart
    state = json.load(open(os.path.join(run, "train_state.json")))
    assert state["epochs_done"] == 3 and state["finished"]


def test_existing_run_dir_is_not_overwritten(tmp_path, faces98):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text("{}")
    result = CliRunner().invoke(cli, ["train", "--data", str(faces98), "--run", str(run)])
    assert result.exit_code != 0 and "--resume" in result.output
    assert (run / "config.json").read_text() == "{}"


def test_bad_data_root_names_missing_file(tmp_path):
    (tmp_path / "root").mkdir()
    args = ["train", "--data", str(tmp_path / "root"), "--run", str(tmp_path / "r")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    assert "list_98pt_rect_attr_train.txt" in result.output


def test_resume_without_run_fails(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--run", str(tmp_path / "none"), "--resume"])
    assert result.exit_code != 0 and "config.json" in result.output


def test_data_check(faces98):
    result = CliRunner().invoke(cli, ["data", "check", "--data", str(faces98)])
    assert result.exit_code == 0, result.output
    assert "train     4234" in result.output and "val        470" in result.output
    assert "test        68" in result.output


def test_data_check_reports_bad_line(tmp_path):
    from runtime.wflw import ANNOTATION_DIR, IMAGE_DIR, LIST_NAME

    ann = tmp_path / ANNOTATION_DIR
    ann.mkdir(parents=True)
    (tmp_path / IMAGE_DIR).mkdir()
    for split in ("train", "test"):
        (ann / (LIST_NAME % split)).write_text("1 2 3 x.jpg\n")
    result = CliRunner().invoke(cli, ["data", "check", "--data", str(tmp_path)])
    assert result.exit_code != 0 and "train.txt:1" in result.output and "207 tokens" in result.output


def test_data_synth_then_check(tmp_path):
    out = tmp_path / "synth"
    result = CliRunner().invoke(cli, ["data", "synth", "--out", str(out), "--n", "5", "--seed", "3"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["data", "check", "--data", str(out), "--load-images"])
    assert result.exit_code == 0, result.output
    assert "0 unreadable" in result.output
    again = CliRunner().invoke(cli, ["data", "synth", "--out", str(out), "--n", "5"])
    assert again.exit_code != 0  # never silently overwrites


def test_cosine_lr_endpoints():
    from keras_flm.train import cosine_lr

    lrs = [cosine_lr(p, 1e-3, 1e-5) for p in np.linspace(0, 1, 11)]
    assert np.isclose(lrs[0], 1e-3) and np.isclose(lrs[-1], 1e-5)
    assert np.isclose(lrs[5], (1e-3 + 1e-5) / 2)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert np.isclose(cosine_lr(1.7, 1e-3, 1e-5), 1e-5)  # past the end: stays at lr_min


def test_patience_counts_only_in_the_annealed_half():
    from keras_flm.train import counts_for_patience

    # a warm restart is worse than its start while the LR is high: those epochs must not stop it
    assert not counts_for_patience(0.0) and not counts_for_patience(0.49)
    assert counts_for_patience(0.5) and counts_for_patience(1.2)


@pytest.mark.slow
def test_time_budget_stops_training(faces98, tmp_path):
    from keras_flm.train import train

    cfg = _tiny_cfg(epochs=5)
    cfg.train.max_images = 40
    cfg.train.time_budget_min = 0.05  # 3 s: the first epoch (tracing included) already uses it up
    run = str(tmp_path / "budget")
    state = train(cfg, str(faces98), run, cache_dir=str(tmp_path / "cache"), progress=False, verbose=0)
    assert state["epochs_done"] == 1 and "time budget" in state["stop_reason"]
    rows = _log(run)
    assert float(rows[-1]["lr"]) < 1e-4  # the cosine followed the clock, not the 5-epoch cap
    assert os.path.isfile(os.path.join(run, "fp32.h5"))


@pytest.mark.slow
def test_init_starts_from_given_weights_with_ema_and_oversampling(tiny_run, faces98, tmp_path):
    """--init loads a run's weights (by layer name); with a vanishing LR the new run's fp32.h5 keeps
    them, so the EMA swap, oversampled epochs, wing loss and BN momentum changed nothing they should not."""
    from keras_flm.keras_compat import get_keras

    keras = get_keras()
    src, cache, _ = tiny_run
    run = str(tmp_path / "init")
    args = ["train", "--data", str(faces98), "--run", run, "--width", "0.25", "--max-images", "72",
            "--batch-size", "16", "--epochs", "1", "--lr", "1e-12", "--init", src, "--ema", "0.9",
            "--oversample", "pose=2", "--oversample", "lfw/=2", "--augment", "wild", "--cache-dir", cache,
            "--loss", "wing", "--bn-momentum", "0.99", "--augment-set", "turn_prob=0.25"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "starting from the weights of %s" % os.path.join(src, "train.h5") in res.output
    cfg = RunConfig.load(os.path.join(run, "config.json"))
    assert cfg.train.init == src and cfg.train.ema == 0.9 and cfg.train.oversample == {"pose": 2, "lfw/": 2}
    assert cfg.train.landmark_loss == "wing" and cfg.model.bn_momentum == 0.99
    assert cfg.augment == dataclasses.replace(augment_preset("wild"), turn_prob=0.25)
    # the start's history is snapshotted at training start (keras_flm.lineage), so a card of this run
    # still counts it once src is gone or rebuilt
    snap = json.load(open(os.path.join(run, "init_training.json")))
    src_state = json.load(open(os.path.join(src, "train_state.json")))
    assert snap["init"] == src and snap["summary"]["epochs_done"] == src_state["epochs_done"] >= 1
    a = keras.models.load_model(os.path.join(src, "fp32.h5"), compile=False)
    b = keras.models.load_model(os.path.join(run, "fp32.h5"), compile=False)
    bns = [la for la in b.layers if la.__class__.__name__ == "BatchNormalization"]
    assert bns and all(la.momentum == 0.99 for la in bns)
    # the cosine LR runs from --lr to lr_min (1e-5): Adam moves a weight by <= ~LR per step, 4 steps here
    convs = [la for la in a.layers if la.__class__.__name__ in ("Conv2D", "DepthwiseConv2D")]
    moved = [np.abs(wa - wb).max() for la in convs
             for wa, wb in zip(la.get_weights(), b.get_layer(la.name).get_weights())]
    assert len(moved) > 20 and max(moved) < 1e-4


def test_freeze_bn_keeps_the_starts_statistics_and_writes_trainable_files(tiny_run, faces98, tmp_path):
    """--freeze-bn: the convolutions train, every BN layer keeps the start's weights and moving statistics,
    and fp32.h5 comes out as a plain model (BN trainable again), so QAT and exports see no frozen layers."""
    from keras_flm.keras_compat import get_keras

    keras = get_keras()
    src, cache, _ = tiny_run
    run = str(tmp_path / "frozen")
    args = ["train", "--data", str(faces98), "--run", run, "--width", "0.25", "--max-images", "72",
            "--batch-size", "16", "--epochs", "1", "--lr", "3e-3", "--init", src, "--freeze-bn",
            "--augment", "wild", "--cache-dir", cache]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "BatchNormalization frozen in" in res.output
    assert RunConfig.load(os.path.join(run, "config.json")).train.freeze_bn is True
    a = keras.models.load_model(os.path.join(src, "train.h5"), compile=False)
    b = keras.models.load_model(os.path.join(run, "train.h5"), compile=False)
    bns = [la for la in b.layers if la.__class__.__name__ == "BatchNormalization"]
    assert len(bns) > 20 and all(la.trainable for la in bns)
    for la in bns:
        for wa, wb in zip(a.get_layer(la.name).get_weights(), la.get_weights()):
            np.testing.assert_array_equal(wa, wb)
    convs = [la for la in a.layers if la.__class__.__name__ in ("Conv2D", "DepthwiseConv2D")]
    moved = [np.abs(wa - wb).max() for la in convs
             for wa, wb in zip(la.get_weights(), b.get_layer(la.name).get_weights())]
    assert max(moved) > 1e-4  # lr 3e-3: the convolutions did train


def test_bfloat16_run_trains_writes_float32_files_and_restores_policy(tiny_run, faces98, tmp_path):
    """--precision mixed_bfloat16: the run trains (loss finite, weights move), config.json records the
    policy, the files hold a float32 model with float32 heads, and the caller's policy comes back."""
    from keras_flm.keras_compat import get_keras

    keras = get_keras()
    src, cache, _ = tiny_run
    run = str(tmp_path / "bf16")
    args = ["train", "--data", str(faces98), "--run", run, "--width", "0.25", "--max-images", "72",
            "--batch-size", "16", "--epochs", "1", "--lr", "3e-3", "--init", src,
            "--precision", "mixed_bfloat16", "--cache-dir", cache]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    # its validation numbers are the bfloat16 model's: the summary says where the gate's FP32 one comes from
    assert "by the mixed_bfloat16 model" in res.output and "flm eval --run %s --split val" % run in res.output
    assert keras.mixed_precision.global_policy().name == "float32"
    cfg = RunConfig.load(os.path.join(run, "config.json"))
    assert cfg.train.precision == "mixed_bfloat16" and cfg.data["policy"] == "mixed_bfloat16"
    assert np.isfinite(float(_log(run)[-1]["loss"]))
    m = keras.models.load_model(os.path.join(run, "fp32.h5"), compile=False)
    assert {la.dtype_policy.name for la in m.layers} == {"float32"}
    a = keras.models.load_model(os.path.join(src, "fp32.h5"), compile=False)
    assert np.abs(a.get_layer("fc").get_weights()[0] - m.get_layer("fc").get_weights()[0]).max() > 1e-5


def test_bad_precision_names_the_choices():
    from keras_flm.train import resolve_precision

    with pytest.raises(ValueError, match="mixed_bfloat16"):
        resolve_precision("bf16")
    assert resolve_precision("mixed_bfloat16") == "mixed_bfloat16"


def test_ema_weights_swap_in_and_back():
    from keras_flm.keras_compat import get_keras
    from keras_flm.train import EmaWeights

    keras = get_keras()
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.layers.Dense(3, input_shape=(4,))])
    m.compile(optimizer=keras.optimizers.AdamW(1e-1, use_ema=True, ema_momentum=0.5), loss="mse")
    x, y = np.ones((8, 4), np.float32), np.zeros((8, 3), np.float32)
    for _ in range(4):  # not fit(): it ends by writing the averages into the weights
        m.train_on_batch(x, y)
    raw = [v.numpy() for v in m.trainable_variables]
    opt = m.optimizer
    avg = [opt._model_variables_moving_average[opt._index_dict[opt._var_key(v)]].numpy()
           for v in m.trainable_variables]
    assert any(np.abs(r - a).max() > 1e-4 for r, a in zip(raw, avg))  # the swap is observable
    with EmaWeights(m):
        for v, a in zip(m.trainable_variables, avg):
            np.testing.assert_allclose(v.numpy(), a)
    for v, r in zip(m.trainable_variables, raw):
        np.testing.assert_allclose(v.numpy(), r)


def test_bad_init_and_oversample_fail_before_writing(tmp_path, faces98):
    run = tmp_path / "r"
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(cli, ["train", "--data", str(faces98), "--run", str(run), "--init",
                                   str(tmp_path / "empty")])
    assert res.exit_code != 0 and "no train.h5 or fp32.h5" in res.output and not run.exists()
    res = CliRunner().invoke(cli, ["train", "--data", str(faces98), "--run", str(run),
                                   "--oversample", "pose"])
    assert res.exit_code == 2 and "expected KEY=N" in res.output and not run.exists()


def test_recalibrate_bn_averages_batch_statistics_equally():
    from keras_flm.bn_calibration import recalibrate_bn
    from keras_flm.keras_compat import get_keras

    keras = get_keras()
    m = keras.Sequential([keras.layers.BatchNormalization(momentum=0.9, input_shape=(4,))])
    bn = m.layers[0]
    bn.moving_mean.assign(np.full(4, 50.0, np.float32))  # stale statistics
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=[0, 1, 2, 3], scale=2.0, size=(256, 4)).astype(np.float32) for _ in range(20)]
    assert recalibrate_bn(m, iter(batches), steps=10) == 10
    want = np.mean([b.mean(0) for b in batches[:10]], axis=0)  # equal weights: the first batch counts too
    np.testing.assert_allclose(bn.moving_mean.numpy(), want, atol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 4.0, rtol=0.1)
    assert bn.momentum == 0.9


@pytest.mark.slow
def test_training_ends_with_bn_calibration(tiny_run):
    state = tiny_run[2]
    cal = state["bn_calibration"]
    assert cal["batches"] == 50 and np.isfinite(cal["val_nme_before"]) and np.isfinite(cal["val_nme_after"])
    assert state["best_val_nme"] == pytest.approx(min(cal["val_nme_before"], cal["val_nme_after"]), abs=1e-3)


# --- flm train --extra-train: extra WFLW roots join the training faces, never validation ---------

EXTRA_FACES = 20


def _make_extra_root(faces98, out, n=EXTRA_FACES):
    """A WFLW-layout root of `n` faces98 train faces whose images sit under synth_pose/, as the
    synthetic turned-face data will (the lines' labels unchanged, only the image path)."""
    import shutil

    from runtime.wflw import ANNOTATION_DIR, IMAGE_DIR, LIST_NAME

    src_list = faces98 / ANNOTATION_DIR / (LIST_NAME % "train")
    lines = [t for t in src_list.read_text().splitlines() if t.strip()][-n:]
    (out / ANNOTATION_DIR).mkdir(parents=True)
    kept = []
    for text in lines:
        tokens = text.split()
        rel = "synth_pose/" + tokens[-1]
        dst = out / IMAGE_DIR / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            shutil.copyfile(faces98 / IMAGE_DIR / tokens[-1], dst)
        kept.append(" ".join(tokens[:-1] + [rel]))
    (out / ANNOTATION_DIR / (LIST_NAME % "train")).write_text("\n".join(kept) + "\n")
    return out


@pytest.fixture(scope="module")
def extra_root(faces98, tmp_path_factory):
    return _make_extra_root(faces98, tmp_path_factory.mktemp("extra") / "pose")


@pytest.fixture(scope="module")
def extra_run(tiny_run, faces98, extra_root, tmp_path_factory):
    """One epoch of the tiny run's setup plus the extra root, oversampled by its path prefix."""
    from keras_flm.train import train

    _, cache, _ = tiny_run
    cfg = _tiny_cfg(epochs=1)
    cfg.train.extra_train = (str(extra_root),)
    cfg.train.oversample = {"synth_pose/": 2}
    cfg.train.bn_calibration_steps = 0  # not what this tests: keep it fast
    run = str(tmp_path_factory.mktemp("runs") / "extra")
    state = train(cfg, str(faces98), run, cache_dir=cache, progress=False, verbose=0)
    return run, cache, state


@pytest.mark.slow
def test_extra_train_adds_training_faces_only(tiny_run, extra_run, extra_root):
    base = RunConfig.load(os.path.join(tiny_run[0], "config.json"))
    cfg = RunConfig.load(os.path.join(extra_run[0], "config.json"))
    assert cfg.train.extra_train == (str(extra_root),)  # resume, refit-head and QAT reload them from here
    extra = cfg.data["extra_train"]
    assert [(e["root"], e["faces"]) for e in extra] == [(str(extra_root), EXTRA_FACES)]
    assert cfg.data["val_faces"] == base.data["val_faces"]
    assert cfg.data["train_faces"] == base.data["train_faces"] + EXTRA_FACES
    assert cfg.data["used_faces"] == 72 and extra_run[2]["epochs_done"] == 1
    assert base.data["extra_train"] == [] and base.train.extra_train == ()


@pytest.mark.slow
def test_extra_train_keeps_the_validation_faces_and_oversamples_by_prefix(extra_run, faces98, extra_root):
    from keras_flm.data.pipeline import oversample_counts
    from keras_flm.train import load_data

    run, cache, _ = extra_run
    cfg = RunConfig.load(os.path.join(run, "config.json"))
    train_c, val_c, summary = load_data(cfg, str(faces98), cache, progress=False)
    plain = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, extra_train=()))
    train0, val0, _ = load_data(plain, str(faces98), cache, progress=False)
    assert val_c.rel_paths == val0.rel_paths and np.array_equal(val_c.lines, val0.lines)
    np.testing.assert_array_equal(val_c.images, val0.images)
    assert train_c.rel_paths[:len(train0)] == train0.rel_paths
    assert all(p.startswith("synth_pose/") for p in train_c.rel_paths[len(train0):])
    assert len(train_c) == len(train0) + EXTRA_FACES == summary["train_faces"]
    counts = oversample_counts(train_c, cfg.train.oversample)
    assert counts.tolist() == [1] * len(train0) + [2] * EXTRA_FACES


@pytest.mark.slow
def test_qat_data_of_a_run_includes_its_extra_roots(extra_run, tiny_run, monkeypatch):
    from quant.config import QatConfig
    from quant.qat import load_qat_data

    monkeypatch.setenv("FLM_CACHE_DIR", extra_run[1])  # QAT uses the default cache directory
    for run, extra in ((extra_run[0], EXTRA_FACES), (tiny_run[0], 0)):
        d = json.load(open(os.path.join(run, "config.json")))
        if not extra:
            del d["train"]["extra_train"]  # as a run from before the option has it
        cfg = RunConfig.from_dict(d)
        train_c, val_c = load_qat_data(cfg, QatConfig(), progress=False)
        assert len(train_c) == cfg.data["train_faces"] and len(val_c) == cfg.data["val_faces"]
        assert sum(p.startswith("synth_pose/") for p in train_c.rel_paths) == extra


@pytest.mark.slow
def test_resume_reuses_the_extra_roots_and_refuses_new_ones(extra_run, extra_root):
    run, cache, _ = extra_run
    res = CliRunner().invoke(cli, ["train", "--run", run, "--resume", "--extra-train", str(extra_root)])
    assert res.exit_code == 2 and "extra_train" in res.output
    res = CliRunner().invoke(cli, ["train", "--run", run, "--resume", "--epochs", "2", "--cache-dir", cache])
    assert res.exit_code == 0, res.output
    cfg = RunConfig.load(os.path.join(run, "config.json"))
    assert cfg.train.extra_train == (str(extra_root),)
    assert cfg.data["train_faces"] == 72 - cfg.data["val_faces"] + EXTRA_FACES
    assert [int(r["epoch"]) for r in _log(run)] == [0, 1]


def _fake_cache(n, margin_px=56, size=112, tag="a"):
    from keras_flm.data.cache import CropCache

    s = size + 2 * margin_px
    rng = np.random.default_rng(n)
    meta = {"crop": {"size": size, "scale": 1.0}, "cache_crop": {"size": s}, "offset": margin_px,
            "path": "/cache/%s" % tag, "count": n}
    return CropCache(rng.integers(0, 255, (n, s, s), dtype=np.uint8),
                     rng.normal(size=(n, 98, 2)).astype(np.float32),
                     rng.normal(size=(n, 3)).astype(np.float32), np.zeros((n, 6), np.int8),
                     np.arange(1, n + 1, dtype=np.int32), ["%s/%d.jpg" % (tag, i) for i in range(n)], meta)


def test_concat_caches_joins_faces_in_order(tmp_path):
    from keras_flm.data.cache import concat_caches

    a, b = _fake_cache(3, tag="a"), _fake_cache(2, tag="b")
    np.save(tmp_path / "b.npy", b.images)
    b.images = np.load(tmp_path / "b.npy", mmap_mode="r")  # as load_cache hands them out
    c = concat_caches([a, b])
    assert len(c) == 5 and c.meta["count"] == 5 and c.meta["parts"] == ["/cache/a", "/cache/b"]
    assert c.rel_paths == a.rel_paths + b.rel_paths and c.lines.tolist() == [1, 2, 3, 1, 2]  # lines kept
    assert not isinstance(c.images, np.memmap)
    np.testing.assert_array_equal(c.images[3:], b.images)
    np.testing.assert_array_equal(c.euler[:3], a.euler)
    assert c.offset == a.offset and c.contract_crops()[0].shape == (5, 112, 112)
    assert concat_caches([a]) is a


def test_concat_caches_refuses_another_crop_geometry():
    from keras_flm.data.cache import concat_caches

    with pytest.raises(ValueError, match=r"different cache_crop: /cache/a .* /cache/wide"):
        concat_caches([_fake_cache(2, tag="a"), _fake_cache(2, margin_px=62, tag="wide")])
    other = _fake_cache(2, tag="big")
    other.meta["crop"] = {"size": 128, "scale": 1.0}
    with pytest.raises(ValueError, match="different crop: /cache/a .*/cache/big"):
        concat_caches([_fake_cache(2, tag="a"), other])
    with pytest.raises(ValueError, match="no caches"):
        concat_caches([])


@pytest.mark.parametrize("kind", ["missing", "no_list", "data_root", "twice"])
def test_bad_extra_train_root_fails_before_writing(tmp_path, faces98, extra_root, kind):
    run = tmp_path / "r"
    empty = tmp_path / "empty"
    empty.mkdir()
    roots = {"missing": [tmp_path / "nope"], "no_list": [empty], "data_root": [faces98],
             "twice": [extra_root, extra_root]}[kind]
    args = ["train", "--data", str(faces98), "--run", str(run)]
    for root in roots:
        args += ["--extra-train", str(root)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1 and "--extra-train" in res.output and str(roots[0]) in res.output, res.output
    want = {"missing": "does not exist", "no_list": "list_98pt_rect_attr_train.txt",
            "data_root": "is the --data root", "twice": "given twice"}[kind]
    assert want in res.output and not run.exists()


def test_check_extra_train_records_absolute_paths(tmp_path, faces98, extra_root, monkeypatch):
    from keras_flm.train import check_extra_train

    monkeypatch.chdir(extra_root.parent)
    assert check_extra_train([extra_root.name], str(faces98)) == (str(extra_root),)
    assert check_extra_train((), str(faces98)) == ()


def test_an_extra_root_made_from_another_split_is_refused(faces98, extra_root):
    """Turned copies of faces that are validation faces in this run must not be trained on: the root's
    split record (scripts/make_pose_data.py writes it) must match the run's split."""
    import json

    from keras_flm.config import TrainConfig
    from keras_flm.train import check_extra_train
    from runtime.wflw import SPLIT_RECORD, split_record

    t = TrainConfig()
    record = extra_root / SPLIT_RECORD
    try:
        record.write_text(json.dumps(split_record(str(faces98), t.seed, t.val_fraction, t.max_images)))
        assert check_extra_train([extra_root], str(faces98), t) == (str(extra_root),)
        record.write_text(json.dumps(split_record(str(faces98), t.seed + 1, t.val_fraction, t.max_images)))
        says = r"another split: seed %d \(this run: %d\)" % (t.seed + 1, t.seed)
        with pytest.raises(ValueError, match=says):
            check_extra_train([extra_root], str(faces98), t)
        assert check_extra_train([extra_root], str(faces98)) == (str(extra_root),)  # no split given: no check
    finally:
        record.unlink()


def test_extra_train_round_trips_through_config_json(tmp_path):
    from keras_flm.config import TrainConfig

    cfg = RunConfig(train=TrainConfig(extra_train=["/data/pose", "/data/more"]))
    assert cfg.train.extra_train == ("/data/pose", "/data/more")
    cfg.save(str(tmp_path / "config.json"))
    assert json.load(open(tmp_path / "config.json"))["train"]["extra_train"] == ["/data/pose", "/data/more"]
    assert RunConfig.load(str(tmp_path / "config.json")) == cfg
    old = cfg.to_dict()
    del old["train"]["extra_train"]  # a run from before the option
    assert RunConfig.from_dict(old).train.extra_train == ()
    assert TrainConfig(extra_train="/data/pose").extra_train == ("/data/pose",)


def test_refit_head_names_a_missing_extra_root(tmp_path, faces98):
    """`flm model refit-head` refits on the run's training faces, extra roots included: a moved one is
    named, not a traceback."""
    from keras_flm.config import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    RunConfig(train=TrainConfig(extra_train=(str(tmp_path / "gone"),)),
              data={"root": str(faces98)}).save(str(run / "config.json"))
    (run / "train.h5").write_bytes(b"")
    res = CliRunner().invoke(cli, ["model", "refit-head", "--run", str(run)])
    assert res.exit_code == 1 and "--extra-train" in res.output and str(tmp_path / "gone") in res.output


def _make_turned_val_root(faces98, cfg, out, split_cfg=None):
    """A root whose test list holds the run's validation faces (unturned: the mechanics are what
    is tested) and whose split record says part "val", as make_pose_data.py --part val writes."""
    import shutil

    from keras_flm.evaluate import load_split
    from runtime.wflw import ANNOTATION_DIR, IMAGE_DIR, LIST_NAME, SPLIT_RECORD, split_record

    src = (faces98 / ANNOTATION_DIR / (LIST_NAME % "train")).read_text().splitlines()
    val = load_split(str(faces98), "val", cfg)[0]
    (out / ANNOTATION_DIR).mkdir(parents=True)
    lines = []
    for r in val:
        dst = out / IMAGE_DIR / r.rel_path
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(r.image_path, dst)
        lines.append(src[r.line - 1])
    (out / ANNOTATION_DIR / (LIST_NAME % "test")).write_text("\n".join(lines) + "\n")
    t = (split_cfg or cfg).train
    (out / SPLIT_RECORD).write_text(json.dumps(dict(split_record(str(faces98), t.seed, t.val_fraction,
                                                                 t.max_images), part="val")))
    return out, len(lines)


@pytest.mark.slow
def test_turned_val_chooses_the_best_epoch_by_the_pose_weighted_nme(tiny_run, faces98, tmp_path):
    from keras_flm.train import check_turned_val, train
    from runtime.metrics import pose_weighted

    cfg = _tiny_cfg(epochs=2)
    cfg.train.bn_calibration_steps = 0
    root, n = _make_turned_val_root(faces98, cfg, tmp_path / "pose_val")
    cfg.train.turned_val = str(root)
    state = train(cfg, str(faces98), str(tmp_path / "run"), cache_dir=tiny_run[1], progress=False, verbose=0)
    rows = _log(str(tmp_path / "run"))
    select = [float(r["val_select"]) for r in rows]
    for r in rows:
        assert float(r["val_select"]) == pytest.approx(pose_weighted(float(r["val_nme"]),
                                                                     float(r["val_turned_nme"])))
    best = int(np.argmin(select))
    assert state["best_epoch"] == best + 1 and state["best_select"] == pytest.approx(select[best])
    assert state["best_val_nme"] == pytest.approx(float(rows[best]["val_nme"]))
    saved = RunConfig.load(str(tmp_path / "run" / "config.json"))
    assert saved.train.turned_val == str(root) and saved.data["turned_val"]["faces"] == n
    # a turned set of another split is refused before anything is written
    other = _tiny_cfg()
    other.train.seed = 7
    wrong, _ = _make_turned_val_root(faces98, cfg, tmp_path / "wrong", split_cfg=other)
    with pytest.raises(ValueError, match="seed 7"):
        check_turned_val(str(wrong), str(faces98), cfg.train)
    res = CliRunner().invoke(cli, ["train", "--run", str(tmp_path / "run2"), "--data", str(faces98),
                                   "--max-images", "72", "--turned-val", str(wrong)])
    assert res.exit_code == 1 and "not a turned copy" in res.output and not (tmp_path / "run2").exists()
