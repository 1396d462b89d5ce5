"""Table 2 is read from measurements: metrics.json, the artifacts' bytes, quant.json. No TensorFlow."""
import json
import os

import pytest

from keras_flm.config import RunConfig
from quant import report
from quant.evaluation import sha256


def _entry(run, fname, nme, count=68):
    path = os.path.join(run, fname)
    return {"nme": nme, "accuracy": 100 * (1 - nme), "failure_rate": 0.1, "auc": 0.5, "count": count,
            "regions": {}, "split": "test", "model": fname, "model_bytes": os.path.getsize(path),
            "model_sha256": sha256(path), "evaluated_at": "2030-01-01T00:00:00"}


@pytest.fixture()
def fake_run(tmp_path):
    run = str(tmp_path / "run")
    os.makedirs(run)
    cfg = RunConfig()
    cfg.model.activation = "relu6"
    cfg.data = {"root": str(tmp_path / "no-data")}
    cfg.save(os.path.join(run, "config.json"))
    sizes = {"fp32.h5": 6_100_000, "fp32.tflite": 6_000_000, "ptq_int8.tflite": 1_500_000,
             "qat_int8.tflite": 1_510_000, "qat_int8.onnx": 1_400_000}
    for f, n in sizes.items():
        with open(os.path.join(run, f), "wb") as fh:
            fh.write(os.urandom(64) + b"\0" * (n - 64))
    metrics = {"fp32": _entry(run, "fp32.h5", 0.0600), "fp32_tflite": _entry(run, "fp32.tflite", 0.0600),
               "ptq_int8": _entry(run, "ptq_int8.tflite", 0.0625),
               "qat_int8": _entry(run, "qat_int8.tflite", 0.0605),
               "qat_int8_onnx": _entry(run, "qat_int8.onnx", 0.0606),
               "qat_pof2_dpu": dict(_entry(run, "qat_int8.onnx", 0.0611), model=None, model_bytes=None,
                                    model_sha256=None)}
    json.dump(metrics, open(os.path.join(run, "metrics.json"), "w"))
    json.dump({"ptq_int8": {"wall_s": 42.0, "calib_images": 500, "method": "ptq", "file": "ptq_int8.tflite",
                            "calib_extra_roots": ["/somewhere/runs/pose_data"]},
               "qat_int8": {"wall_s": 900.0, "method": "qat", "file": "qat_int8.tflite", "epochs_run": 3,
                            "best_epoch": 2, "val_nme_before": 0.07, "val_nme_best": 0.065}},
              open(os.path.join(run, "quant.json"), "w"))
    return run


def _table_rows(md):
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return header, [dict(zip(header, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[1:]]


def test_table_columns_and_numbers_come_from_the_artifacts(fake_run):
    path = report.write_report(fake_run, evaluate=False, log=lambda m: None)
    md = open(path).read()
    assert "## Quantization (Table 2)" in md and "quant_table2.png" in md
    assert os.path.isfile(os.path.join(fake_run, "quant_table2.png"))
    header, rows = _table_rows(md.split("## Quantization (Table 2)")[1])
    for col in ("NME %", "accuracy %", "FR@0.1 %", "AUC@0.1", "size MB", "quant. time", "compression ×"):
        assert col in header
    by = {(r["method"], r["format"]): r for r in rows if r["model"].endswith("ReLU6")}
    ptq = by[("PTQ INT8", "TFLite")]
    assert ptq["size MB"] == "1.500" and ptq["NME %"] == "6.250" and ptq["ΔNME pp"] == "+0.250"
    assert ptq["compression ×"] == "4.00" and ptq["quant. time"] == "42.0 s"
    assert by[("QAT INT8", "TFLite")]["quant. time"] == "15.0 min"
    assert by[("QAT INT8", "ONNX QDQ")]["compression ×"].endswith("(vs fp32.h5)")  # no fp32.onnx here
    assert by[("QAT pof2", "DPU emulation")]["NME %"] == "6.110"
    assert "ReLU6" in ptq["model"]  # the row label shows the activation
    assert "`ptq_int8.tflite`: 500 calibration images (training split + pose_data)" in md


def test_changing_an_artifact_changes_the_report(fake_run):
    report.write_report(fake_run, evaluate=False, log=lambda m: None)
    with open(os.path.join(fake_run, "ptq_int8.tflite"), "ab") as f:
        f.write(b"\0" * 250_000)
    md = open(report.write_report(fake_run, evaluate=False, log=lambda m: None)).read()
    _, rows = _table_rows(md.split("## Quantization (Table 2)")[1])
    ptq = [r for r in rows if r["method"] == "PTQ INT8" and r["format"] == "TFLite"][0]
    assert ptq["size MB"] == "1.750" and ptq["compression ×"] == "3.43"
    assert "(stale)" in ptq["NME %"]  # its metrics describe the old file: flagged, not silently reused


def test_stale_entry_is_reevaluated_when_asked(fake_run, monkeypatch):
    import quant.evaluation as ev

    calls = []

    def fake_eval(run_dir, path, cfg, split, log):
        calls.append(os.path.basename(path))
        from keras_flm.report_md import update_metrics

        update_metrics(run_dir, "ptq_int8", _entry(run_dir, "ptq_int8.tflite", 0.0700))

    monkeypatch.setattr(ev, "evaluate_file", fake_eval)
    with open(os.path.join(fake_run, "ptq_int8.tflite"), "ab") as f:
        f.write(b"\0")
    md = open(report.write_report(fake_run, evaluate=True, log=lambda m: None)).read()
    assert calls == ["ptq_int8.tflite"]  # only the changed artifact
    assert "| 7.000 |" in md


def test_compare_adds_the_other_runs_rows(fake_run, tmp_path):
    other = str(tmp_path / "relu_run")
    os.makedirs(other)
    cfg = RunConfig()
    cfg.data = {"root": "x"}
    cfg.save(os.path.join(other, "config.json"))
    with open(os.path.join(other, "fp32.h5"), "wb") as f:
        f.write(b"\0" * 1000)
    json.dump({"fp32": _entry(other, "fp32.h5", 0.05)}, open(os.path.join(other, "metrics.json"), "w"))
    md = open(report.write_report(fake_run, evaluate=False, compare=[other], log=lambda m: None)).read()
    _, rows = _table_rows(md.split("## Quantization (Table 2)")[1])
    labels = {r["model"] for r in rows}
    assert any(lbl.endswith("ReLU6") for lbl in labels) and any(lbl.endswith(" ReLU") for lbl in labels)
