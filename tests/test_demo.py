"""The main job end to end at a tiny scale: every artifact exists and the report's tables
are read from them (change an artifact -> the report changes is covered in tests/quant)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_smoke_chain(tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, FLM_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py"), "--smoke", "--run", str(run),
                           "--data-dir", str(tmp_path / "synth")],
                          cwd=str(REPO), env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for name in ("config.json", "fp32.h5", "fp32.onnx", "fp32.tflite", "ptq_int8.tflite", "ptq_int8.onnx",
                 "qat_int8.tflite", "qat_int8.onnx", "metrics.json", "report.md", "demo.jsonl",
                 "demo_overlay.mp4", "bench.json"):
        assert (run / name).is_file(), name
    assert (run / "bundle" / "meta.json").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"fp32", "ptq_int8"} <= set(metrics)
    report = (run / "report.md").read_text()
    # Table 2 and Table 3 analogs, with the FP32 NME as measured (not a placeholder).
    assert "Table 2" in report and "Table 3" in report
    nme_pct = "%.2f" % (100 * metrics["fp32"]["nme"])
    assert nme_pct in report
    # the run description comes first, and the DMS stills are taken from the overlay video
    assert report.index("## Run: config, data, training") < report.index("## Evaluation")
    assert "## DMS demo" in report and (run / "training_curves.png").is_file()
    assert (run / "dms_still_1.png").is_file()
    lines = (run / "demo.jsonl").read_text().splitlines()
    assert len(lines) >= 10 and all(json.loads(line) for line in lines[:3])
    assert "report:" in proc.stdout
