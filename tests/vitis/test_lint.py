"""DPU lint: the default model passes; layers the DPU cannot run are named."""
import json

import pytest
from click.testing import CliRunner

from keras_flm.cli import cli
from keras_flm.keras_compat import get_keras
from vitis.lint import CPU, DPU, format_report, lint_model


def _model(build):
    keras = get_keras()
    inp = keras.Input((112, 112, 1), name="image")
    return keras.Model(inp, build(keras.layers, inp), name="probe")


def _violations(report, layer):
    return [v for name, v in report.violations if name == layer]


def test_default_width_model_passes():
    from keras_flm.model import build_inference_model

    report = lint_model(build_inference_model())
    assert report.ok, format_report(report)
    assert report.counts() == {"INPUT": 1, DPU: len(report.layers) - 1}
    assert not report.warnings
    text = format_report(report)
    assert "All layers map to the DPU" in text and "stem_relu" in text


def test_tiny_model_passes_and_fusion_notes(tiny_models):
    report = lint_model(tiny_models[1])
    assert report.ok
    row = {r.name: r for r in report.layers}
    assert row["stem_bn"].notes == ["folded into stem_conv"]
    assert row["stem_relu"].notes == ["fused into stem_conv"]
    assert row["pool_s1"].notes == ["window 14x14"]


def test_training_model_flags_flatten_dense_split(tiny_models):
    report = lint_model(tiny_models[0])
    assert report.ok  # the aux head maps, but splits the compiled graph
    assert any(name == "aux_fc1" and "Flatten -> Dense" in w for name, w in report.warnings)


def test_17x17_kernel_fails_naming_layer():
    report = lint_model(_model(lambda L, x: L.ReLU(name="r")(L.Conv2D(8, 17, padding="same", name="big")(x))))
    assert not report.ok
    v = _violations(report, "big")
    assert v and "17x17" in v[0]
    assert {r.name: r.device for r in report.layers}["big"] == CPU
    assert not _violations(report, "r")


def test_standalone_softmax_fails():
    report = lint_model(_model(lambda L, x: L.Softmax(name="sm")(L.Conv2D(4, 3, name="c")(x))))
    assert _violations(report, "sm") and "CPU" in _violations(report, "sm")[0]
    assert not _violations(report, "c")


def test_lambda_fails():
    report = lint_model(_model(lambda L, x: L.Lambda(lambda t: t * 2.0, name="scale")(x)))
    assert "Lambda" in _violations(report, "scale")[0]


def test_rescaling_and_activation_rules():
    def build(L, x):
        x = L.Rescaling(1 / 128.0, name="rescale")(x)
        a = L.Conv2D(16, 3, name="c1")(x)
        b = L.Conv2D(16, 3, name="c2")(x)
        cat = L.Concatenate(name="cat")([a, b])
        x = L.ReLU(name="relu_after_concat")(cat)
        x = L.Conv2D(16, 3, activation="sigmoid", name="c3")(x)
        x = L.Conv2D(16, 3, name="c4")(x)
        x = L.ReLU(max_value=6.0, name="relu6")(x)
        x = L.LeakyReLU(alpha=0.2, name="leaky")(L.Conv2D(16, 3, name="c5")(x))
        return L.Activation("tanh", name="tanh")(x)

    report = lint_model(_model(build))
    for layer in ("rescale", "relu_after_concat", "c3", "leaky", "tanh"):
        assert _violations(report, layer), (layer, format_report(report))
    assert "after Concatenate" in _violations(report, "relu_after_concat")[0]
    assert not _violations(report, "relu6") and not _violations(report, "c4")


def test_window_limits():
    def build(L, x):
        x = L.Conv2D(16, 3, strides=9, padding="same", name="stride9")(x)
        x = L.Conv2D(4096, 1, name="wide")(x)
        x = L.Conv2D(16, 16, padding="same", name="budget")(x)  # 16*16*ceil(4096/16) > 2048
        x = L.AveragePooling2D((2, 3), name="rect")(x)
        return L.GlobalAveragePooling2D(name="gap")(x)

    report = lint_model(_model(build))
    assert "stride 9x9" in _violations(report, "stride9")[0]
    assert not _violations(report, "wide")
    assert "= 65536 > 2048" in _violations(report, "budget")[0]
    assert "not square" in _violations(report, "rect")[0]
    assert "not square" in _violations(report, "gap")[0]  # 6x4 after the rectangular pool


def test_sequential_models_are_walked_in_order():
    keras = get_keras()
    L = keras.layers
    seq = keras.Sequential([keras.Input((32, 32, 1)), L.Conv2D(8, 3, name="c"), L.ReLU(name="r"),
                            L.Softmax(name="s")])
    report = lint_model(seq)
    assert not _violations(report, "r") and _violations(report, "s")


@pytest.fixture
def bad_h5(tmp_path):
    path = tmp_path / "bad.h5"
    _model(lambda L, x: L.Softmax(name="final_softmax")(L.Conv2D(4, 17, name="conv17")(x))).save(
        str(path), save_format="h5")
    return path


def test_cli_lint_fails_with_layer_names(bad_h5):
    r = CliRunner().invoke(cli, ["vitis", "lint", "--model", str(bad_h5)])
    assert r.exit_code == 1, r.output
    assert "conv17" in r.output and "final_softmax" in r.output and "17x17" in r.output


def test_cli_lint_run_writes_report(run_dir):
    r = CliRunner().invoke(cli, ["vitis", "lint", "--run", str(run_dir), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["ok"] and data["source"].endswith("fp32.h5")
    assert (run_dir / "vitis" / "lint.txt").read_text().count("DPU") > 50
    assert json.loads((run_dir / "vitis" / "lint.json").read_text())["ok"]


def test_cli_lint_default_architecture():
    r = CliRunner().invoke(cli, ["vitis", "lint", "--width", "0.25"])
    assert r.exit_code == 0, r.output
    assert "default architecture (width 0.25)" in r.output
