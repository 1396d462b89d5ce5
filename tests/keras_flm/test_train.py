"""Tiny end-to-end training on faces98: artifacts, loss goes down, resume continues."""
import csv
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from keras_flm.cli import cli
from keras_flm.config import RunConfig

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
def test_resume_continues_epoch_count(tiny_run, faces98):
    run, cache, _ = tiny_run
    args = ["train", "--run", run, "--resume", "--epochs", "3", "--cache-dir", cache]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
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
