"""`flm-dpu` end to end: a synthetic face video through `run`, plus `bench`, `eval`, `info` and
the bad-input cases (clear message, non-zero exit, nothing half-written)."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from runtime.cli import cli
from runtime.track import iou

FAKE = os.path.join(os.path.dirname(__file__), "fake_vitis")
JSONL_KEYS = {"frame", "t", "source", "status", "faces", "timings_ms"}
FACE_KEYS = {"id", "box", "source", "plausible", "edge", "landmarks"}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def run_result(face_video, tiny_model_onnx, tmp_path_factory):
    """One real `flm-dpu run` in a subprocess (the installed entry point's module)."""
    video, truth = face_video
    out = tmp_path_factory.mktemp("run")
    jsonl, mp4 = out / "out.jsonl", out / "out.mp4"
    cmd = [sys.executable, "-c", "from runtime.cli import main; main()", "run", "--video", video,
           "--model", tiny_model_onnx, "--no-display", "--jsonl", str(jsonl), "--output", str(mp4),
           "--detect-every", "5"]  # the random test model drifts; see test_pipeline
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return p, truth, jsonl, mp4


def test_run_video_jsonl_and_output(run_result):
    p, truth, jsonl, mp4 = run_result
    assert p.returncode == 0, p.stderr
    recs = [json.loads(line) for line in jsonl.read_text().splitlines()]
    n = truth["n_frames"]
    assert [r["frame"] for r in recs] == list(range(n))  # every frame, in order
    for r in recs:
        assert set(r) == JSONL_KEYS and r["status"] in ("ok", "no face")
        assert {"crop", "infer", "latency"} <= set(r["timings_ms"]) or r["status"] == "no face"
        for f in r["faces"]:
            assert FACE_KEYS <= set(f) and np.asarray(f["landmarks"]).shape == (98, 2)
            if f["plausible"]:
                assert {"ear", "perclos", "blinks", "state", "head_pose"} <= set(f["dms"])
    with_face = [r for r in recs if r["faces"]]
    assert len(with_face) >= 0.9 * n
    ious = [iou(r["faces"][0]["box"], truth["frames"][r["frame"]]["box"]) for r in with_face]
    assert np.median(ious) > 0.5 and min(ious) > 0.2
    cap = cv2.VideoCapture(str(mp4))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
    cap.release()
    assert "infer" in p.stdout and "fps end-to-end" in p.stdout
    assert not [f for f in os.listdir(mp4.parent) if "partial" in f]


def test_no_model_lists_what_to_pass(face_video, monkeypatch, tmp_path):
    from runtime import release

    monkeypatch.delenv("FLM_DPU_MODEL", raising=False)
    nowhere = [str(tmp_path / "no-release")]  # as on a machine without models/ (the release is the default)
    monkeypatch.setattr(release, "release_candidates", lambda name=release.RELEASE_NAME: nowhere)
    r = CliRunner().invoke(cli, ["run", "--video", face_video[0], "--no-display"])
    assert r.exit_code == 2
    for what in ("no model given", "bundle", ".xmodel", ".onnx", ".tflite"):
        assert what in r.output


def test_display_without_gui_says_no_display(face_video, tiny_model_onnx):
    r = CliRunner().invoke(cli, ["run", "--video", face_video[0], "--model", tiny_model_onnx])
    assert r.exit_code == 2 and "--no-display" in r.output


def test_bad_sources(tiny_model_onnx, tmp_path):
    r = CliRunner().invoke(cli, ["run", "--camera", "57", "--model", tiny_model_onnx, "--no-display"])
    assert r.exit_code == 1 and "no camera at index 57" in r.output
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(os.urandom(4096))
    out = tmp_path / "out.jsonl"
    r = CliRunner().invoke(cli, ["run", "--video", str(bad), "--model", tiny_model_onnx, "--no-display",
                                 "--jsonl", str(out)])
    assert r.exit_code == 1 and "broken.mp4" in r.output
    assert os.listdir(tmp_path) == ["broken.mp4"]  # nothing (half-)written
    r = CliRunner().invoke(cli, ["run", "--video", str(bad), "--images", str(tmp_path),
                                 "--model", tiny_model_onnx])
    assert r.exit_code == 2 and "exactly one source" in r.output
    r = CliRunner().invoke(cli, ["run", "--video", str(bad), "--model", tiny_model_onnx, "--no-display",
                                 "--jsonl", str(tmp_path / "missing_dir" / "x.jsonl")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_wrong_models(face_video, tmp_path):
    txt = tmp_path / "model.txt"
    txt.write_text("hello")
    r = CliRunner().invoke(cli, ["run", "--video", face_video[0], "--model", str(txt), "--no-display"])
    assert r.exit_code == 1 and "cannot tell the backend" in r.output
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x01garbage")
    r = CliRunner().invoke(cli, ["run", "--video", face_video[0], "--model", str(junk), "--no-display"])
    assert r.exit_code == 1 and "junk.onnx is not a loadable ONNX model" in r.output
    r = CliRunner().invoke(cli, ["run", "--video", face_video[0], "--model", str(tmp_path / "none.onnx"),
                                 "--no-display"])
    assert r.exit_code == 1 and "model not found" in r.output


@pytest.fixture()
def fake_vitis(monkeypatch):
    monkeypatch.syspath_prepend(FAKE)
    for m in ("xir", "vart"):
        monkeypatch.delitem(sys.modules, m, raising=False)
    import xir

    yield xir
    for m in ("xir", "vart"):
        sys.modules.pop(m, None)


def test_xmodel_with_two_dpu_subgraphs(fake_vitis, face_video, tiny_model_onnx, tmp_path):
    xm = fake_vitis.write_fake_xmodel(str(tmp_path / "split.xmodel"), tiny_model_onnx, 7, 6, dpu_subgraphs=2)
    r = CliRunner().invoke(cli, ["run", "--video", face_video[0], "--model", xm, "--no-display"])
    assert r.exit_code == 1 and "has 2 DPU subgraphs" in r.output and "exactly 1" in r.output
    r = CliRunner().invoke(cli, ["info", "--model", xm])
    assert r.exit_code == 1 and "2 DPU subgraphs" in r.output


def test_run_on_the_dpu_stand_in_and_info(fake_vitis, face_video, tiny_model_onnx, tmp_path):
    xm = fake_vitis.write_fake_xmodel(str(tmp_path / "pfld.xmodel"), tiny_model_onnx, 7, 6)
    out = tmp_path / "dpu.jsonl"
    r = invoke("run", "--video", face_video[0], "--model", xm, "--no-display", "--jsonl", out, "--frames", 8,
               "--quiet")
    assert r.exit_code == 0, r.output
    assert len(out.read_text().splitlines()) == 8
    r = invoke("info", "--model", xm)
    assert r.exit_code == 0
    assert '"input_fix_point": 7' in r.output and '"output_fix_point": 6' in r.output
    assert "0x101000056010407" in r.output and "vart + xir" in r.output


def test_images_folder_reports_no_face_and_keeps_going(tiny_model_onnx, tmp_path):
    from keras_flm.synth import render_frame

    d = tmp_path / "imgs"
    d.mkdir()
    frame, _, _ = render_frame(seed=1)
    cv2.imwrite(str(d / "a_face.png"), frame)
    cv2.imwrite(str(d / "b_blank.png"), np.full((240, 320, 3), 128, np.uint8))
    cv2.imwrite(str(d / "c_face.png"), frame)
    out = tmp_path / "imgs.jsonl"
    r = invoke("run", "--images", d, "--model", tiny_model_onnx, "--no-display", "--jsonl", out)
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r_["status"] for r_ in recs] == ["ok", "no face", "ok"]
    assert "b_blank.png: no face" in r.output
    # images are independent: the third image is detected afresh, not tracked from the first
    assert recs[2]["faces"][0]["source"] == "detect"


def test_bench(tiny_model_onnx, face_video, tmp_path):
    js = tmp_path / "bench.json"
    r = invoke("bench", "--model", tiny_model_onnx, "--iters", 5, "--batch", 1, "--batch", 4,
               "--video", face_video[0], "--frames", 60, "--json", js)
    assert r.exit_code == 0, r.output
    d = json.loads(js.read_text())
    assert [b["batch"] for b in d["backend_only"]] == [1, 4]
    assert all(b["faces_per_s"] > 0 and b["p95_ms"] >= b["p50_ms"] for b in d["backend_only"])
    assert d["end_to_end"]["frames_out"] == 60  # the 45-frame video loops
    assert "end-to-end" in r.output and "p50 ms" in r.output


def test_eval_on_a_synthetic_wflw_root(tiny_model_onnx, tmp_path):
    from keras_flm.synth import write_dataset

    root = tmp_path / "wflw"
    write_dataset(str(root), 10, seed=0, test_fraction=0.5, progress=False)
    js = tmp_path / "m.json"
    r = invoke("eval", "--model", tiny_model_onnx, "--data", root, "--json", js)
    assert r.exit_code == 0, r.output
    m = json.loads(js.read_text())
    assert m["timing"]["faces"] == 5 and "nme" in r.output.lower()
    r = CliRunner().invoke(cli, ["eval", "--model", tiny_model_onnx, "--data", str(tmp_path / "nowhere")])
    assert r.exit_code == 1


def test_info_lists_engines():
    r = invoke("info")
    assert r.exit_code == 0
    for name in ("onnx", "tflite", "keras", "vart", "detector haar"):
        assert name in r.output
    assert "board image only" in r.output  # no vart/xir here


def test_info_compares_the_model_and_board_fingerprints(fake_vitis, tiny_model_onnx, tmp_path, monkeypatch):
    import runtime.cli as rc

    xm = fake_vitis.write_fake_xmodel(str(tmp_path / "fp.xmodel"), tiny_model_onnx, 7, 6,
                                      fingerprint="0x101000056010407")
    # the shape of `xdputil query` output on a board (fields abridged)
    board = {"DPU IP Spec": {"DPU Core Count": 1}, "kernels": [{"DPU Arch": "DPUCZDX8G_ISA1_B4096",
                                                                "fingerprint": "0x101000016010407"}]}
    monkeypatch.setattr(rc, "dpu_query", lambda: board)
    r = CliRunner().invoke(cli, ["info", "--model", xm])
    assert r.exit_code == 0
    assert "VART will refuse it" in r.output and "--fingerprint 0x101000016010407" in r.output
    board["kernels"][0]["fingerprint"] = "0x101000056010407"
    r = CliRunner().invoke(cli, ["info", "--model", xm])
    assert "matches this board" in r.output


def test_failure_mid_run_is_reported_and_leaves_no_partial_output(face_video, tiny_model_onnx, tmp_path,
                                                                  monkeypatch):
    from runtime.backends.onnx_backend import OnnxBackend

    calls = []
    real = OnnxBackend._run

    def flaky(self, crops):
        calls.append(1)
        if len(calls) == 6:
            raise RuntimeError("DPU timeout")
        return real(self, crops)

    monkeypatch.setattr(OnnxBackend, "_run", flaky)
    out = tmp_path / "o.jsonl"
    r = CliRunner().invoke(cli, ["run", "--video", face_video[0], "--model", tiny_model_onnx, "--no-display",
                                 "--jsonl", str(out), "--quiet"])
    assert r.exit_code == 1 and "stopped: RuntimeError: DPU timeout" in r.output
    assert os.listdir(tmp_path) == []
