"""scripts/eval_tracking.py: the validation split of a run and the occlusion probe, and the argument
errors that name what is wrong."""
import sys
from pathlib import Path

import pytest

from keras_flm.config import RunConfig

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import eval_tracking  # noqa: E402

SPEC = "channels=3,size=112,norm=-1-1,layout=nchw,out=flat,frame=crop01"


@pytest.mark.parametrize("args, says", [
    (["--split", "val"], "--split val needs --run"),
    (["--run", "runs/x"], "--split val needs --run"),
    (["--occlude", "1.5"], "--occlude must be in (0, 1)"),
])
def test_bad_arguments_exit_2_and_say_why(args, says, capsys):
    with pytest.raises(SystemExit) as e:
        eval_tracking.main(["--model", "m.onnx"] + args)
    assert e.value.code == 2 and says in capsys.readouterr().err


def test_val_split_needs_a_run_config(tmp_path, capsys):
    with pytest.raises(SystemExit):
        eval_tracking.main(["--model", "m.onnx", "--split", "val", "--run", str(tmp_path)])
    assert "config.json not found" in capsys.readouterr().err


def test_occluded_validation_faces_raise_the_nme(shared_data, faces98, tmp_path, capsys):
    """The run's validation faces (rebuilt from config.json), scored plain and with the lower 30 %
    hidden: a real model does worse on the hidden faces, and the title says what was measured."""
    pfld = shared_data.parent / "models" / "pfld_ghostone" / "PFLD_GhostOne_112_1_opt_sim.onnx"
    RunConfig().save(str(tmp_path / "config.json"))
    base = ["--model", str(pfld), "--foreign-spec", SPEC, "--split", "val", "--run", str(tmp_path),
            "--data", str(faces98), "--limit", "6", "--recrop", "1", "--jitter", ""]
    plain, hidden = tmp_path / "plain.json", tmp_path / "hidden.json"
    assert eval_tracking.main(base + ["--json", str(plain)]) == 0
    assert eval_tracking.main(base + ["--occlude", "0.3", "--json", str(hidden)]) == 0
    out = capsys.readouterr().out
    assert "6 val faces (lower 0.3 occluded)" in out
    import json

    a, b = json.loads(plain.read_text()), json.loads(hidden.read_text())
    assert a["occlude"] is None and b["occlude"] == 0.3
    assert b["one_shot_nme"] > a["one_shot_nme"]


def test_show_draws_one_row_per_face_and_one_tile_per_step(shared_data, faces98, tmp_path, capsys):
    import cv2

    pfld = shared_data.parent / "models" / "pfld_ghostone" / "PFLD_GhostOne_112_1_opt_sim.onnx"
    png = tmp_path / "chains.png"
    base = ["--model", str(pfld), "--foreign-spec", SPEC, "--data", str(faces98), "--limit", "3",
            "--recrop", "2", "--jitter", "", "--show-png", str(png)]
    assert eval_tracking.main(base + ["--show", "0,2"]) == 0
    sheet = cv2.imread(str(png))
    tile = eval_tracking.TILE
    assert sheet.shape == (2 * tile, 2 * tile, 3)  # faces 0 and 2; steps 0 and 2 (5 and 10 > --recrop)
    assert (sheet[..., 1] == 255).any() and (sheet[..., 2] == 255).any()  # truth and prediction drawn
    with pytest.raises(SystemExit):
        eval_tracking.main(base + ["--show", "0,7"])
    assert "--show: no face 7 among the 3 scored" in capsys.readouterr().err
