"""The run and DMS sections of report.md are built from the run directory's own files."""
import json

import cv2
import numpy as np
import pytest

from keras_flm.config import RunConfig
from keras_flm.report_md import update_report_section
from keras_flm.run_report import CURVES_PNG, DMS_SECTION, RUN_SECTION, write_run_sections

pytest.importorskip("matplotlib")


def _run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    cfg = RunConfig()
    cfg.model.width = 0.375
    cfg.data = {"root": "/data/x", "train_faces": 90, "val_faces": 10, "attribute_shares": {"pose": 0.25}}
    cfg.save(str(run / "config.json"))
    (run / "train_state.json").write_text(json.dumps(
        {"epochs_done": 3, "best_val_nme": 0.0812, "best_epoch": 2, "train_seconds": 125.0,
         "stop_reason": "time budget (2 min)", "finished": True}))
    (run / "log.csv").write_text("epoch,loss,lr,val_loss,val_nme\n0,9.5,1e-3,8.0,0.2\n1,4.0,5e-4,3.9,0.0812\n"
                                 "2,3.5,1e-5,3.8,0.09\n")
    return run


def _video(path, frames=12):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (320, 240))
    for i in range(frames):
        w.write(np.full((240, 320, 3), 10 * i, np.uint8))
    w.release()


def test_run_section_holds_config_data_and_curves_and_goes_first(tmp_path):
    run = _run_dir(tmp_path)
    update_report_section(str(run), "Evaluation", "eval body")  # an earlier step wrote its section
    assert write_run_sections(str(run)) == [RUN_SECTION]  # no demo video or JSONL: no DMS section
    report = (run / "report.md").read_text()
    assert report.index("## " + RUN_SECTION) < report.index("## Evaluation")
    assert "| model | width | 0.375 |" in report and "/data/x" in report and "pose 25.0 %" in report
    assert ("3 epochs in 2.1 min; best validation NME 8.12 % at epoch 2 (stopped by time budget (2 min))"
            in report)
    assert (run / CURVES_PNG).stat().st_size > 1000 and "](%s)" % CURVES_PNG in report
    # regenerating replaces the section, it does not add a second one
    write_run_sections(str(run))
    assert (run / "report.md").read_text().count("## " + RUN_SECTION) == 1


def test_dms_section_summarises_the_jsonl_and_takes_stills(tmp_path):
    run = _run_dir(tmp_path)
    _video(run / "demo_overlay.mp4")
    face = {"dms": {"state": "alert", "blinks": 2, "perclos": 0.05}}
    lines = [{"frame": 0, "faces": []}] + [{"frame": i, "faces": [face]} for i in range(1, 4)]
    (run / "demo.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    assert write_run_sections(str(run)) == [RUN_SECTION, DMS_SECTION]
    report = (run / "report.md").read_text()
    assert "| frames | 4 |" in report and "| frames with a face | 3 |" in report
    assert "| state 'alert' (frames) | 3 |" in report and "| blinks (end of video) | 2 |" in report
    for i in (1, 2, 3):
        assert cv2.imread(str(run / ("dms_still_%d.png" % i))) is not None


def test_bad_jsonl_line_is_named(tmp_path):
    run = _run_dir(tmp_path)
    (run / "demo.jsonl").write_text('{"frame": 0, "faces": []}\nnot json\n')
    with pytest.raises(ValueError, match=r"demo.jsonl:2: not JSON"):
        write_run_sections(str(run))


def test_no_config_no_run_section(tmp_path):
    assert write_run_sections(str(tmp_path)) == []
    assert not (tmp_path / "report.md").exists()
