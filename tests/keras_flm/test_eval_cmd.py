"""`flm eval` end to end on a tiny WFLW-layout root, with real Keras H5 and TFLite models.

Two real models: a random-weight PFLD (its output depends on the crop, so Keras vs
TFLite agreement checks the shared crop/infer/decode path), and a PFLD whose head
outputs the mean training shape whatever the input (so its NME must equal the
image-free mean-shape baseline exactly: an independent check of the decoding).
"""
import json
import os

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from keras_flm import evaluate as kev
from keras_flm import plots
from keras_flm.cli import cli
from keras_flm.config import ModelConfig, RunConfig
from keras_flm.report_md import parse_sections, read_metrics, update_metrics, update_report_section
from runtime import evaluate as rev
from runtime import wflw
from runtime.landmarks import ATTRIBUTES, NUM_POINTS

N_TEST, N_TRAIN = 7, 24


def _write_split(root, split, n, rng):
    lines = []
    os.makedirs(os.path.join(root, wflw.IMAGE_DIR, split), exist_ok=True)
    template = rng.uniform(0.1, 0.9, (NUM_POINTS, 2))
    template[60], template[72] = (0.25, 0.4), (0.75, 0.4)
    for i in range(n):
        rel = "%s/img%02d.png" % (split, i)
        img = cv2.GaussianBlur(rng.integers(0, 256, (150, 170, 3), dtype=np.uint8), (0, 0), 2)
        size, x0, y0 = rng.uniform(50, 90), rng.uniform(5, 60), rng.uniform(5, 50)
        lm = (template + rng.normal(0, 0.03, template.shape)) * size + (x0, y0)
        cv2.rectangle(img, (int(x0), int(y0)), (int(x0 + size), int(y0 + size)), (255, 255, 255), 2)
        cv2.imwrite(os.path.join(root, wflw.IMAGE_DIR, rel), img)
        box = [lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max()]
        flags = [int(i % 3 == k % 3) for k in range(len(ATTRIBUTES))]
        lines.append(" ".join(["%.3f" % v for v in lm.ravel()] + ["%.3f" % v for v in box]
                              + [str(f) for f in flags] + [rel]))
    d = os.path.join(root, wflw.ANNOTATION_DIR)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, wflw.LIST_NAME % split), "w") as f:
        f.write("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("wflw"))
    rng = np.random.default_rng(3)
    _write_split(root, "test", N_TEST, rng)
    _write_split(root, "train", N_TRAIN, rng)
    return root


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_root):
    """A run-like directory holding random.h5/.tflite and const.h5/.tflite (built once)."""
    import tensorflow as tf

    from keras_flm.model import build_inference_model

    d = tmp_path_factory.mktemp("models")
    tf.keras.utils.set_random_seed(0)
    rand = build_inference_model(ModelConfig(width=0.25))
    const = build_inference_model(ModelConfig(width=0.25))
    kernel, _ = const.get_layer("fc").get_weights()
    mean = rev.mean_shape(wflw.read_annotations(tiny_root, "train"))
    const.get_layer("fc").set_weights([np.zeros_like(kernel), mean.reshape(-1)])
    for name, m in (("fp32", rand), ("const", const)):
        m.save(str(d / (name + ".h5")))
        (d / (name + ".tflite")).write_bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    return d


def _run_dir(tmp_path, tiny_root, models, seed=7):
    run = tmp_path / "run"
    run.mkdir()
    for f in os.listdir(models):
        os.symlink(str(models / f), str(run / f))
    cfg = RunConfig()
    cfg.train.seed, cfg.train.val_fraction = seed, 0.25
    cfg.data["root"] = tiny_root
    cfg.save(str(run / "config.json"))
    return run


def _flm(*args):
    r = CliRunner().invoke(cli, ["eval", *map(str, args)], catch_exceptions=False)
    return r


@pytest.mark.slow
def test_eval_keras_and_tflite_merge_into_one_report(tmp_path, tiny_root, models):
    run = _run_dir(tmp_path, tiny_root, models)
    (run / "report.md").write_text("# my run\n\n## Training\n\ncurves here\n\n## Quantization\n\nTable 2\n")

    r = _flm("--run", run)  # default model: fp32.h5, default data: the config's root
    assert r.exit_code == 0, r.output
    first = read_metrics(str(run))["fp32"]
    assert first["count"] == N_TEST and first["source"]["backend"] == "keras" and first["split"] == "test"
    r = _flm("--run", run, "--model", "fp32.tflite")
    assert r.exit_code == 0, r.output
    m = read_metrics(str(run))
    assert list(m) == ["fp32", "fp32_tflite"]
    assert m["fp32"] == first  # an artifact's entry is untouched by another artifact's evaluation
    assert m["fp32_tflite"]["source"]["backend"] == "tflite"
    # the same crops and decode through two engines: the same per-face errors
    keras_n = kev.read_per_face_nmes(str(run), m["fp32"])
    tfl_n = kev.read_per_face_nmes(str(run), m["fp32_tflite"])
    assert keras_n.shape == (N_TEST,) and keras_n.min() > 0
    np.testing.assert_allclose(tfl_n, keras_n, rtol=1e-3, atol=1e-5)
    assert "fp32_tflite" in r.output and "largepose" in r.output

    for png in ("ced.png", "attributes.png", "regions.png"):
        img = cv2.imread(str(run / png))
        assert img is not None and img.shape[0] > 200, png
    pre, sections = parse_sections((run / "report.md").read_text())
    assert pre == "# my run"
    assert [t for t, _ in sections] == ["Training", "Quantization", "Evaluation"]
    assert dict(sections)["Training"] == "curves here" and dict(sections)["Quantization"] == "Table 2"
    body = dict(sections)["Evaluation"]
    assert "| fp32 |" in body and "| fp32_tflite |" in body and "![CED](ced.png)" in body


@pytest.mark.slow
def test_constant_model_matches_mean_shape_baseline(tmp_path, tiny_root, models):
    run = _run_dir(tmp_path, tiny_root, models)
    for model in ("const.h5", "const.tflite"):
        r = _flm("--run", run, "--model", model, "--baseline", "--batch-size", 3)
        assert r.exit_code == 0, r.output
    m = read_metrics(str(run))
    assert set(m) == {"const", "const_tflite", "mean_shape"}
    base = m["mean_shape"]
    assert base["source"]["backend"] == "mean_shape" and base["nme"] > 0.02
    for name in ("const", "const_tflite"):
        assert m[name]["nme"] == pytest.approx(base["nme"], rel=1e-4)
        assert m[name]["auc"] == pytest.approx(base["auc"], abs=1e-3)
        for s, v in base["attributes"].items():
            assert m[name]["attributes"][s]["count"] == v["count"]


def test_val_split_is_the_training_split(tmp_path, tiny_root, models):
    run = _run_dir(tmp_path, tiny_root, models, seed=11)
    r = _flm("--run", run, "--model", "const.tflite", "--split", "val", "--baseline")
    assert r.exit_code == 0, r.output
    m = read_metrics(str(run))
    assert set(m) == {"const_tflite_val", "mean_shape_val"}
    train, val = wflw.split_train_val(wflw.read_annotations(tiny_root, "train"), 0.25, seed=11)
    assert m["const_tflite_val"]["count"] == len(val) == 6
    with open(run / m["const_tflite_val"]["per_face"]) as f:
        images = [line.split(",")[1] for line in f.read().splitlines()[1:]]
    assert images == [r.image_path for r in val]
    # only val artifacts: val plots, no test plots
    assert (run / "ced_val.png").exists() and not (run / "ced.png").exists()
    assert "### val split" in (run / "report.md").read_text()


def test_val_split_follows_max_images(tmp_path, tiny_root, models):
    run = _run_dir(tmp_path, tiny_root, models, seed=5)
    cfg = RunConfig.load(str(run / "config.json"))
    cfg.train.max_images = 16  # training used a deterministic subset, then split it
    cfg.save(str(run / "config.json"))
    r = _flm("--run", run, "--model", "const.tflite", "--split", "val")
    assert r.exit_code == 0, r.output
    used = wflw.subset(wflw.read_annotations(tiny_root, "train"), 16, seed=5)
    _, val = wflw.split_train_val(used, 0.25, seed=5)
    assert read_metrics(str(run))["const_tflite_val"]["count"] == len(val) == 4


def test_limit_and_explicit_name(tmp_path, tiny_root, models):
    run = _run_dir(tmp_path, tiny_root, models)
    r = _flm("--run", run, "--model", "const.tflite", "--name", "smoke", "--limit", 3, "--data", tiny_root)
    assert r.exit_code == 0, r.output
    e = read_metrics(str(run))["smoke"]
    assert e["count"] == 3 and e["limit"] == 3 and e["faces_in_split"] == N_TEST


@pytest.mark.parametrize("case, message", [
    ("no_run", "run directory not found"),
    ("no_model", "model file not found"),
    ("bad_root", "does not exist"),
    ("no_list", "annotation list missing"),
    ("bad_metrics", "not valid JSON"),
    ("val_mismatch", "training used"),
    ("bad_name", "artifact name"),
])
def test_clear_errors(tmp_path, tiny_root, models, case, message):
    run = _run_dir(tmp_path, tiny_root, models)
    args = ["--run", run, "--model", "const.tflite"]
    if case == "no_run":
        args[1] = tmp_path / "missing"
    elif case == "no_model":
        args[3] = "nothere.onnx"
    elif case == "bad_root":
        args += ["--data", tmp_path / "nowhere"]
    elif case == "no_list":
        (tmp_path / "empty").mkdir()
        args += ["--data", tmp_path / "empty"]
    elif case == "bad_metrics":
        (run / "metrics.json").write_text("{not json")
    elif case == "val_mismatch":
        cfg = RunConfig.load(str(run / "config.json"))
        cfg.data["val_faces"] = 999
        cfg.save(str(run / "config.json"))
        args += ["--split", "val"]
    elif case == "bad_name":
        args += ["--name", "../escape"]
    r = CliRunner().invoke(cli, ["eval", *map(str, args)])
    assert r.exit_code != 0
    assert message in r.output, r.output
    if case != "bad_metrics":
        assert not (run / "metrics.json").exists()  # nothing half-written


def test_artifact_names(tmp_path):
    for f in ("fp32.h5", "fp32.tflite", "fp32.onnx", "ptq_int8.tflite", "ptq_int8.onnx", "qat_int8.onnx",
              "qat_int8.xmodel"):
        (tmp_path / f).write_bytes(b"x")
    name = lambda f, split="test": kev.artifact_name(str(tmp_path / f), split)  # noqa: E731
    assert [name(f) for f in ("fp32.h5", "fp32.tflite", "fp32.onnx", "ptq_int8.tflite", "ptq_int8.onnx",
                              "qat_int8.onnx", "qat_int8.xmodel")] == [
        "fp32", "fp32_tflite", "fp32_onnx", "ptq_int8", "ptq_int8_onnx", "qat_int8", "qat_int8_dpu"]
    assert name("fp32.h5", "val") == "fp32_val"


def test_update_metrics_merges(tmp_path):
    update_metrics(str(tmp_path), "ptq_int8", {"size_mb": 1.65, "nme": 0.09})
    update_metrics(str(tmp_path), "fp32", {"nme": 0.07})
    update_metrics(str(tmp_path), "ptq_int8", {"nme": 0.08, "auc": 0.5})
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m == {"ptq_int8": {"size_mb": 1.65, "nme": 0.08, "auc": 0.5}, "fp32": {"nme": 0.07}}
    assert sorted(os.listdir(tmp_path)) == [".metrics.json.lock", "metrics.json"]  # no temp files left
    with pytest.raises(ValueError):
        update_metrics(str(tmp_path), "x", {"nme": float("nan")})  # JSON has no NaN: refuse, keep the file
    assert json.loads((tmp_path / "metrics.json").read_text()) == m


def test_report_sections(tmp_path):
    d = str(tmp_path)
    update_report_section(d, "Evaluation", "eval v1")
    update_report_section(d, "Benchmark", "```\n## not a heading (code)\n```\n\n### Table 3\nrows")
    update_report_section(d, "Evaluation", "eval v2")
    text = (tmp_path / "report.md").read_text()
    pre, sections = parse_sections(text)
    assert pre == "# flm run report: %s" % tmp_path.name
    assert sections == [("Evaluation", "eval v2"),
                        ("Benchmark", "```\n## not a heading (code)\n```\n\n### Table 3\nrows")]
    with pytest.raises(ValueError, match="level-2"):
        update_report_section(d, "Bad", "text\n## Sneaky\nmore")
    assert (tmp_path / "report.md").read_text() == text


def test_training_curve_plot(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("epoch,loss,val_loss,val_nme,lr,epoch_time\n"
                   + "".join("%d,%g,%g,%g,%g,12.5\n" % (e, 1 / (e + 1), 1.2 / (e + 1), 0.2 - 0.01 * e,
                                                        1e-3 * 0.5 ** e) for e in range(8)))
    out = plots.plot_training(str(log), str(tmp_path / "curves.png"))
    assert cv2.imread(out) is not None
    cols = plots.read_log(str(log))
    assert set(cols) == {"epoch", "loss", "val_loss", "val_nme", "lr", "epoch_time"}
    assert plots._panel_of("val_nme") == "accuracy metrics" and plots._panel_of("lr") == "learning rate"
    (tmp_path / "empty.csv").write_text("epoch,loss\n")
    with pytest.raises(ValueError, match="no rows"):
        plots.read_log(str(tmp_path / "empty.csv"))
