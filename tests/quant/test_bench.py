"""`flm bench` (Table 3) on a tiny run: every artifact and a foreign model get a row with numbers,
bench.json / bench.png / the report section are written, bad options fail clearly."""
import json
import os
import sys
import warnings

import pytest
from click.testing import CliRunner

from quant import bench as B
from quant.bench_cmd import bench
from tests.runtime.test_foreign import probe_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FOREIGN_SPEC = "channels=3,size=112,norm=0-1,layout=nchw,out=flat,frame=crop01,output=1"
NUMERIC = ["size MB", "NME %", "accuracy %", "p50 ms b1", "p95 ms b1", "img/s b1", "img/s b8", "pipeline FPS",
           "noise %"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """runs/NAME with config.json, fp32.h5 and fp32.onnx of a width-0.25 model (random weights,
    mean-shape head), a 10-face synthetic WFLW-layout dataset as its data root, a short video and
    a foreign "landmark model" (an ONNX probe: 3-channel NCHW input, two outputs)."""
    import tensorflow as tf
    import tf2onnx

    from keras_flm.config import ModelConfig, RunConfig
    from keras_flm.synth import write_dataset, write_face_video
    from tests.runtime.conftest import build_tiny_model

    base = tmp_path_factory.mktemp("bench")
    run = base / "run"
    run.mkdir()
    data = base / "faces"
    write_dataset(str(data), 10, seed=1, test_fraction=0.5, progress=False)
    RunConfig(model=ModelConfig(width=0.25), data={"root": str(data)}).save(str(run / "config.json"))
    model = build_tiny_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.save(str(run / "fp32.h5"))
    sig = (tf.TensorSpec((None, 112, 112, 1), tf.float32, name="image"),)
    tf2onnx.convert.from_keras(model, input_signature=sig, opset=13, output_path=str(run / "fp32.onnx"))
    video = str(base / "face.mp4")
    write_face_video(video, 12, size=(320, 240), fps=30.0, seed=0)
    foreign = probe_model(base / "probe.onnx", ["N", 3, 112, 112])
    return {"run": str(run), "video": video, "foreign": foreign, "data": str(data)}


def section_table(report: str, title: str):
    """(header, rows) of the first markdown table in the `## title` section."""
    body = report.split("## " + title, 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in body.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    header, sep = cells[0], cells[1]
    assert all(set(c) == {"-"} for c in sep)
    rows = []
    for c in cells[2:]:
        if len(c) != len(header):
            break  # the next table (the paper's)
        rows.append(dict(zip(header, c)))
    return header, rows


def test_bench_writes_table3_for_every_artifact_and_the_foreign_model(tiny_run):
    run = tiny_run["run"]
    res = CliRunner().invoke(bench, [
        "--run", run, "--video", tiny_run["video"], "--iters", "3", "--warmup", "1", "--repeats", "2",
        "--frames", "6", "--threads", "2", "--foreign", tiny_run["foreign"], "--foreign-spec", FOREIGN_SPEC,
        "--foreign-name", "pfld_probe", "--eval-missing"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    names = ["fp32", "fp32_onnx", "pfld_probe"]
    for n in names:
        assert n in res.stdout

    with open(os.path.join(run, "report.md"), encoding="utf-8") as f:
        header, rows = section_table(f.read(), B.SECTION)
    assert header == B.HEADER
    assert [r["model"] for r in rows] == names
    for r in rows:
        for col in NUMERIC:
            float(r[col])  # every cell is a number (accuracy included: all three were evaluated)
        assert float(r["p95 ms b1"]) >= float(r["p50 ms b1"]) > 0
        assert float(r["img/s b1"]) > 0 and float(r["img/s b8"]) > 0 and float(r["pipeline FPS"]) > 0
    assert rows[0]["format / engine"] == "Keras H5 / tf.function"
    assert rows[2]["method"] == "foreign"
    assert float(rows[0]["size MB"]) == pytest.approx(os.path.getsize(os.path.join(run, "fp32.h5")) / 1e6,
                                                      abs=1e-3)

    with open(os.path.join(run, B.JSON_FILE), encoding="utf-8") as f:
        js = json.load(f)
    assert [r["name"] for r in js["rows"]] == names
    assert js["machine"]["cores"] >= 1 and js["machine"]["versions"]["onnxruntime"]
    assert all(len(r["raw"]["batches"]["1"]) == 2 and len(r["raw"]["batches"]["8"]) == 2 for r in js["rows"])
    assert all(len(r["raw"]["e2e"]) == 2 for r in js["rows"])
    assert js["rows"][2]["foreign_spec"] == FOREIGN_SPEC
    with open(os.path.join(run, B.PLOT_FILE), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    with open(os.path.join(run, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    assert metrics["pfld_probe"]["count"] == 5 and metrics["pfld_probe"]["foreign_spec"] == FOREIGN_SPEC
    assert {"fp32", "fp32_onnx"} <= set(metrics)


def test_script_runs_the_same_logic(tiny_run, capsys):
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    try:
        import bench_backends
    finally:
        sys.path.pop(0)
    rc = bench_backends.main(["--run", tiny_run["run"], "--iters", "3", "--warmup", "1", "--repeats", "1",
                              "--frames", "0", "--only", "fp32.onnx", "--threads", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "fp32_onnx" in out and "p50 ms b1" in out
    with open(os.path.join(tiny_run["run"], B.JSON_FILE), encoding="utf-8") as f:
        js = json.load(f)
    assert [r["name"] for r in js["rows"]] == ["fp32_onnx"] and js["rows"][0]["pipeline_fps"] is None


@pytest.mark.parametrize("extra, message", [
    (["--foreign-spec", "chanels=3"], "unknown key 'chanels'"),
    (["--foreign-spec", "norm=0-2"], "norm='0-2'"),
    (["--foreign-spec", "norm=0-1", "--foreign-spec", "norm=-1-1"], "2 --foreign-spec"),
    (["--foreign-spec", "channels=1"], "channels=1 but input"),
    (["--foreign-name", "a b"], "artifact name 'a b'"),
    (["--foreign-name", "fp32_onnx_mirror", "--mirror", "fp32.onnx"], "fp32_onnx_mirror"),
])
def test_bad_foreign_options_fail_clearly(tiny_run, extra, message):
    res = CliRunner().invoke(bench, ["--run", tiny_run["run"], "--iters", "1", "--frames", "0",
                                     "--foreign", tiny_run["foreign"]] + extra)
    assert res.exit_code != 0
    assert message in res.output


def test_bad_run_and_only_fail_clearly(tiny_run, tmp_path):
    res = CliRunner().invoke(bench, ["--run", str(tmp_path / "nope")])
    assert res.exit_code != 0 and "run directory not found" in res.output
    res = CliRunner().invoke(bench, ["--run", tiny_run["run"], "--only", "qat_int8.tflite", "--frames", "0"])
    assert res.exit_code != 0 and "qat_int8.tflite" in res.output and "fp32.onnx" in res.output


def test_mirror_row_is_timed_and_scored_beside_the_plain_one(tiny_run):
    run = tiny_run["run"]
    res = CliRunner().invoke(bench, ["--run", run, "--iters", "3", "--warmup", "1", "--repeats", "1",
                                     "--frames", "0", "--threads", "1", "--only", "fp32.onnx",
                                     "--mirror", "fp32.onnx", "--eval-missing"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    with open(os.path.join(run, B.JSON_FILE), encoding="utf-8") as f:
        rows = {r["name"]: r for r in json.load(f)["rows"]}
    assert set(rows) == {"fp32_onnx", "fp32_onnx_mirror"}
    mirror = rows["fp32_onnx_mirror"]
    assert mirror["method"].endswith("+ mirror") and mirror["backend_info"]["mirror_average"] is True
    assert mirror["path"] == rows["fp32_onnx"]["path"]
    with open(os.path.join(run, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    assert metrics["fp32_onnx_mirror"]["mirror"] is True and metrics["fp32_onnx_mirror"]["count"] == 5
    # its own score: the mean of two readings, not the plain file's number copied
    assert metrics["fp32_onnx_mirror"]["nme"] != metrics["fp32_onnx"]["nme"]
    # the name is taken only by a row that is asked for: without --mirror a foreign model may have it
    res = CliRunner().invoke(bench, ["--run", run, "--iters", "1", "--warmup", "0", "--repeats", "1",
                                     "--frames", "0", "--only", "fp32.onnx", "--foreign", tiny_run["foreign"],
                                     "--foreign-name", "fp32_onnx_mirror"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    res = CliRunner().invoke(bench, ["--run", run, "--frames", "0", "--mirror", "qat_int8.onnx"])
    assert res.exit_code != 0 and "--mirror qat_int8.onnx: not in" in res.output and "fp32.onnx" in res.output
