"""`flm release` and the committed release.

1. Mechanics on the tiny run: every file copied, metrics.json measured on the release's own files,
   md5 sums in meta.json, the release loads as a bundle, a rebuild replaces it, a missing artifact
   names the command that makes it. (INT8 slots hold the FP32 exports here: what is released is
   whatever the run holds; real PTQ/QAT files are the quant tests' and the committed release's job.)
2. The committed release models/<RELEASE_NAME>: its files load and reproduce its metrics.json on
   the 68 real test faces.
"""
import json
import os
import shutil

import pytest

from runtime.release import RELEASE_NAME

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMITTED = os.path.join(REPO, "models", RELEASE_NAME)


def test_host_models_take_the_int8_file_with_the_lower_validation_nme():
    from quant.release import host_models

    scored = {"ptq_int8.onnx": {"val_nme": 0.0443}, "qat_int8.onnx": {"val_nme": 0.0433},
              "ptq_int8.tflite": {"val_nme": 0.0444}, "qat_int8.tflite": {"val_nme": 0.0447}}
    assert host_models(scored) == {"onnx": "qat_int8.onnx", "tflite": "ptq_int8.tflite", "keras": "fp32.h5"}
    # no validation split: the first candidates (PTQ for ONNX Runtime, QAT for TFLite)
    unscored = {k: {} for k in scored}
    assert host_models(unscored) == {"onnx": "ptq_int8.onnx", "tflite": "qat_int8.tflite", "keras": "fp32.h5"}


def test_run_default_int8_reads_the_runs_validation_scores(tmp_path):
    from quant.release import run_default_int8

    for f in ("ptq_int8.tflite", "ptq_int8.onnx", "qat_int8.tflite", "qat_int8.onnx"):
        (tmp_path / f).write_bytes(b"")
    scores = {"ptq_int8_onnx_val": {"nme": 0.05}, "qat_int8_onnx_val": {"nme": 0.04},
              "qat_int8_onnx": {"nme": 0.01}}  # test scores never decide
    (tmp_path / "metrics.json").write_text(json.dumps(scores))
    assert run_default_int8(str(tmp_path)) == "qat_int8.onnx"
    scores["ptq_int8_onnx_val"]["nme"] = 0.03
    (tmp_path / "metrics.json").write_text(json.dumps(scores))
    assert run_default_int8(str(tmp_path)) == "ptq_int8.onnx"


def test_format_label_states_the_granularity_the_onnx_file_holds():
    from quant.release import MODEL_FILES, format_label

    fmts = {f: fmt for f, _, fmt in MODEL_FILES}
    assert format_label(fmts["fp32.h5"], "/no/such/file.h5") == "Keras H5"  # no placeholder: not read
    label = format_label(fmts["qat_int8.onnx"], os.path.join(COMMITTED, "qat_int8.onnx"))
    assert label == "ONNX QDQ (U8S8, 7-bit weights per channel)"
    # the label the committed card was built with
    with open(os.path.join(COMMITTED, "MODEL_CARD.md")) as f:
        assert label in f.read()


def test_release_from_a_run(release_run, tmp_path):
    from quant.release import MODEL_FILES, build_release
    from runtime.bundle import file_md5, load_bundle

    out = str(tmp_path / "models")
    path = build_release(release_run, "tiny", out, log=lambda *_: None)
    assert path == os.path.join(out, "tiny")
    names = set(os.listdir(path))
    written = {"config.json", "metrics.json", "MODEL_CARD.md", "meta.json"}
    assert {m[0] for m in MODEL_FILES} | written <= names
    meta = json.load(open(os.path.join(path, "meta.json")))
    for f, rec in meta["files"].items():
        assert rec["md5"] == file_md5(os.path.join(path, f))
    b = load_bundle(path)
    assert b.model_for().endswith("ptq_int8.onnx")  # the host default is the INT8 ONNX (a tie: PTQ)
    metrics = json.load(open(os.path.join(path, "metrics.json")))
    assert metrics["default_int8"] == "ptq_int8.onnx" and metrics["host_models"] == meta["models"]
    fp32, onnx = metrics["models"]["fp32.h5"]["test"], metrics["models"]["ptq_int8.onnx"]["test"]
    assert fp32["count"] == 68 and 0 < fp32["nme"] < 1
    assert abs(fp32["nme"] - onnx["nme"]) < 1e-4  # same weights, two engines
    card = open(os.path.join(path, "MODEL_CARD.md")).read()
    assert "research only" in card.lower() and "%.2f" % (100 * fp32["nme"]) in card
    from keras_flm.config import RunConfig, describe_augment

    assert describe_augment(RunConfig.load(os.path.join(release_run, "config.json")).augment) in card
    # the host default is also scored with mirror averaging, its own number on the card
    mirror = metrics["mirror"]
    assert mirror["model"] == "ptq_int8.onnx" and mirror["test"]["count"] == 68
    assert 0 < mirror["test"]["nme"] < 1 and mirror["test"]["nme"] != onnx["nme"]
    assert "--mirror" in card and "%.2f %%" % (100 * mirror["test"]["nme"]) in card
    # every WFLW subset the metrics hold has its row filled (the large-pose row once read "–")
    assert "largepose" in fp32["attributes"]
    for name, sub in fp32["attributes"].items():
        row = [line for line in card.splitlines() if line.startswith("| %s |" % name)]
        assert row and "| %d |" % sub["count"] in row[0], (name, row)
    # a second release replaces the first in place, leaving no scratch copies
    (tmp_path / "models" / "tiny" / "stale.txt").write_text("x")
    build_release(release_run, "tiny", out, log=lambda *_: None)
    assert sorted(os.listdir(out)) == ["tiny"] and "stale.txt" not in os.listdir(path)


def test_release_names_what_is_missing(release_run, tmp_path):
    from quant.release import ReleaseError, build_release

    run = str(tmp_path / "run")
    shutil.copytree(release_run, run)
    os.remove(os.path.join(run, "qat_int8.onnx"))
    with pytest.raises(ReleaseError, match="qat_int8.onnx.*flm quantize qat"):
        build_release(run, "x", str(tmp_path / "models"), log=lambda *_: None)
    assert not os.path.exists(str(tmp_path / "models"))


def test_committed_release_reproduces_its_metrics(faces98):
    """The release in the repository scores what its metrics.json says on the 68 test faces."""
    from keras_flm import evaluate as kev
    from runtime.bundle import load_bundle
    from runtime.wflw import read_annotations

    assert os.path.isfile(os.path.join(COMMITTED, "meta.json")), "no release in %s" % COMMITTED
    metrics = json.load(open(os.path.join(COMMITTED, "metrics.json")))
    spec = load_bundle(COMMITTED).spec
    test = read_annotations(str(faces98), "test")
    assert metrics["test_data"]["faces"] == len(test)
    for fname, entry in metrics["models"].items():
        got = kev.evaluate_model(os.path.join(COMMITTED, fname), test, spec)["metrics"]
        # tolerance: thread-count and oneDNN re-association differences only (0.01 pp)
        assert abs(got["nme"] - entry["test"]["nme"]) < 1e-4, fname
        assert got["count"] == entry["test"]["count"]
    if "mirror" in metrics:  # releases since stop 29 also record the host default with --mirror
        from runtime.backends import load_backend
        from runtime.evaluate import evaluate

        be = load_backend(os.path.join(COMMITTED, metrics["mirror"]["model"]), spec=spec, mirror=True)
        got = evaluate(be, test, spec=spec)["metrics"]
        be.close()
        assert abs(got["nme"] - metrics["mirror"]["test"]["nme"]) < 1e-4


def test_release_started_from_a_release_states_the_lineage(release_run, tmp_path):
    """A run started with --init models/NAME keeps that release's training summary, so the new card
    still tells the whole schedule once the old release is replaced."""
    from keras_flm.config import RunConfig
    from keras_flm.lineage import lineage
    from quant.release import build_release

    first = build_release(release_run, "first", str(tmp_path / "models"), log=lambda *_: None)
    run = str(tmp_path / "run")
    shutil.copytree(release_run, run)
    cfg = RunConfig.load(os.path.join(run, "config.json"))
    cfg.train.init = first
    cfg.train.landmark_loss = "wing"
    cfg.save(os.path.join(run, "config.json"))
    state_path = os.path.join(run, "train_state.json")
    state = json.load(open(state_path))
    state.update(epochs_done=state["epochs_done"] + 3, train_seconds=state["train_seconds"] + 60.0)
    json.dump(state, open(state_path, "w"))  # the continued run trained on
    prior = json.load(open(os.path.join(first, "metrics.json")))["training"]
    # released under a new name, then twice over the release it started from (a re-card): the
    # lineage counts each sitting once
    for name in ("second", "first", "first"):
        released = build_release(run, name, str(tmp_path / "models"), log=lambda *_: None)
        tr = json.load(open(os.path.join(released, "metrics.json")))["training"]
        assert tr["init_training"] == prior and tr["landmark_loss"] == "wing", name
        epochs, seconds = lineage(tr)
        assert epochs == tr["epochs_done"] + prior["epochs_done"] > tr["epochs_done"], name
        card = open(os.path.join(released, "MODEL_CARD.md")).read()
        assert "Wing landmark loss" in card and "In all: %d epochs" % epochs in card


@pytest.mark.parametrize("weights", ["", "fp32.h5"])
def test_lineage_follows_runs_started_from_runs(release_run, tmp_path, weights):
    """--init runs/A or runs/A/fp32.h5 (a run, not a release): the card counts A's sitting and A's own
    start."""
    from keras_flm.config import RunConfig
    from keras_flm.lineage import lineage
    from quant.release import build_release

    first = build_release(release_run, "first", str(tmp_path / "models"), log=lambda *_: None)
    prior = json.load(open(os.path.join(first, "metrics.json")))["training"]
    runs = []
    for i, init in enumerate((first, None)):  # run a starts from the release, run b from run a
        run = str(tmp_path / ("run%d" % i))
        shutil.copytree(release_run, run)
        cfg = RunConfig.load(os.path.join(run, "config.json"))
        cfg.train.init = init or os.path.join(runs[-1], weights)
        cfg.save(os.path.join(run, "config.json"))
        state = json.load(open(os.path.join(run, "train_state.json")))
        state.update(epochs_done=7 + i, train_seconds=100.0 + i)
        json.dump(state, open(os.path.join(run, "train_state.json"), "w"))
        runs.append(run)
    released = build_release(runs[-1], "second", str(tmp_path / "models"), log=lambda *_: None)
    tr = json.load(open(os.path.join(released, "metrics.json")))["training"]
    assert tr["epochs_done"] == 8 and tr["init_training"]["epochs_done"] == 7
    assert tr["init_training"]["init_training"] == prior
    assert lineage(tr) == (8 + 7 + prior["epochs_done"], 101.0 + 100.0 + prior["train_seconds"])


def test_snapshot_keeps_the_lineage_when_the_start_is_rebuilt(release_run, tmp_path):
    """A run snapshots its start's history when it starts (init_training.json); rebuilding the
    release it started from (same name, other weights and history) does not rewrite its card."""
    from keras_flm.config import RunConfig
    from keras_flm.lineage import INIT_SNAPSHOT, snapshot_init
    from quant.release import build_release

    models = str(tmp_path / "models")
    first = build_release(release_run, "first", models, log=lambda *_: None)
    prior = json.load(open(os.path.join(first, "metrics.json")))["training"]
    run = str(tmp_path / "run")
    shutil.copytree(release_run, run)
    cfg = RunConfig.load(os.path.join(run, "config.json"))
    cfg.train.init = first
    cfg.save(os.path.join(run, "config.json"))
    assert snapshot_init(run, first) == prior
    assert json.load(open(os.path.join(run, INIT_SNAPSHOT)))["init"] == first
    state = json.load(open(os.path.join(run, "train_state.json")))
    state.update(epochs_done=5, train_seconds=50.0)
    json.dump(state, open(os.path.join(run, "train_state.json"), "w"))
    other = str(tmp_path / "other")  # another sitting, released over "first"
    shutil.copytree(release_run, other)
    st = json.load(open(os.path.join(other, "train_state.json")))
    st.update(epochs_done=99, train_seconds=9999.0)
    json.dump(st, open(os.path.join(other, "train_state.json"), "w"))
    build_release(other, "first", models, log=lambda *_: None)
    assert json.load(open(os.path.join(first, "metrics.json")))["training"]["epochs_done"] == 99
    released = build_release(run, "second", models, log=lambda *_: None)
    tr = json.load(open(os.path.join(released, "metrics.json")))["training"]
    assert tr["epochs_done"] == 5 and tr["init_training"] == prior


def test_model_card_states_frozen_bn_and_a_mixed_policy():
    """The training line names what changes how a run trains: frozen BatchNorm and a bfloat16 policy
    (absent from older summaries, which must still render)."""
    from keras_flm.config import RunConfig
    from quant.release import model_card

    metrics = json.load(open(os.path.join(COMMITTED, "metrics.json")))
    cfg = RunConfig.load(os.path.join(COMMITTED, "config.json"))
    for key in ("freeze_bn", "policy"):
        metrics["training"].pop(key, None)
    plain = model_card(metrics, cfg)
    assert "BatchNorm frozen" not in plain and "compute (float32 weights)" not in plain
    metrics["training"].update(freeze_bn=True, policy="mixed_bfloat16")
    card = model_card(metrics, cfg)
    assert "(BatchNorm frozen)" in card and "mixed_bfloat16 compute (float32 weights)" in card
    metrics["training"]["policy"] = "float32"
    assert "compute (float32 weights)" not in model_card(metrics, cfg)


def test_model_card_names_extra_training_faces():
    """Synthetic faces from --extra-train roots are said to be there (and not for runs without them)."""
    from keras_flm.config import RunConfig
    from quant.release import model_card

    metrics = json.load(open(os.path.join(COMMITTED, "metrics.json")))
    cfg = RunConfig.load(os.path.join(COMMITTED, "config.json"))
    metrics["training"].pop("extra_train", None)
    assert "--extra-train" not in model_card(metrics, cfg)
    metrics["training"].update(extra_train=[{"root": "/x/runs/pose_data", "faces": 2333}], train_faces=6567)
    assert "Of the 6567 training faces, 2333 come from `flm train --extra-train` roots (pose_data)" \
        in model_card(metrics, cfg)


def test_model_card_says_how_turned_validation_faces_chose_the_epoch():
    from keras_flm.config import RunConfig
    from quant.release import model_card

    metrics = json.load(open(os.path.join(COMMITTED, "metrics.json")))
    cfg = RunConfig.load(os.path.join(COMMITTED, "config.json"))
    metrics["training"].pop("turned_val", None)
    assert "turned copies of the validation faces" not in model_card(metrics, cfg)
    metrics["training"].update(turned_val={"root": "/x/runs/pose_val", "faces": 431}, best_val_nme=0.0327,
                               best_turned_val_nme=0.041)
    card = model_card(metrics, cfg)
    assert "431 turned copies of the validation faces" in card and "weighted at 13 %" in card
    assert "real faces 3.27 %, turned 4.10 %" in card


def test_refresh_rewrites_onnx_files_and_the_records_of_their_size(release_run, tmp_path, monkeypatch):
    """A release's ONNX re-written through today's save passes (an ORT-style QDQ file loses its int32
    bias zero points): metrics.json, the card and meta.json follow; a card metrics.json does not
    render, or outputs that change, are refused with the release left byte for byte as it was."""
    import onnx

    from keras_flm.config import RunConfig
    from quant import release as R
    from runtime.bundle import file_md5
    from tests.quant.qdq_graphs import qdq_conv

    models = str(tmp_path / "models")
    rel = R.build_release(release_run, "tiny", models, log=lambda *_: None)
    qat = os.path.join(rel, "qat_int8.onnx")
    onnx.save(qdq_conv(), qat)
    before = os.path.getsize(qat)
    # a release made before `flm release` measured --mirror: no record, no card line
    path = os.path.join(rel, "metrics.json")
    metrics = json.load(open(path))
    mirror = metrics.pop("mirror")
    json.dump(metrics, open(path, "w"))
    cfg = RunConfig.load(os.path.join(rel, "config.json"))
    open(os.path.join(rel, "MODEL_CARD.md"), "w", encoding="utf-8").write(R.model_card(metrics, cfg))
    changed = R.refresh_release(rel, log=lambda *_: None)
    after = os.path.getsize(qat)
    assert changed["qat_int8.onnx"] == (before, after) and after < before and "ptq_int8.onnx" in changed
    metrics = json.load(open(os.path.join(rel, "metrics.json")))
    assert metrics["models"]["qat_int8.onnx"]["bytes"] == after
    again = metrics["mirror"]  # measured again on the same file: the same scores
    assert again["model"] == mirror["model"] == "ptq_int8.onnx"
    assert again["test"]["nme"] == pytest.approx(mirror["test"]["nme"], abs=1e-6)
    assert again["val_nme"] == pytest.approx(mirror["val_nme"], abs=1e-6)
    assert "--mirror" in open(os.path.join(rel, "MODEL_CARD.md"), encoding="utf-8").read()
    card = open(os.path.join(rel, "MODEL_CARD.md")).read()
    assert card == R.model_card(metrics, RunConfig.load(os.path.join(rel, "config.json")))
    meta = json.load(open(os.path.join(rel, "meta.json")))
    assert set(meta["files"]) == set(os.listdir(rel)) - {"meta.json"}
    for f, rec in meta["files"].items():
        assert rec == {"md5": file_md5(os.path.join(rel, f)), "bytes": os.path.getsize(os.path.join(rel, f))}

    def snapshot():
        return {f: open(os.path.join(rel, f), "rb").read() for f in os.listdir(rel)}

    kept = snapshot()
    monkeypatch.setattr(R, "_same_outputs", lambda a, b: False)
    with pytest.raises(R.ReleaseError, match="outputs differ"):
        R.refresh_release(rel, log=lambda *_: None)
    monkeypatch.undo()
    assert snapshot() == kept
    with open(os.path.join(rel, "MODEL_CARD.md"), "a") as f:
        f.write("\na hand-written weakness\n")
    kept = snapshot()
    with pytest.raises(R.ReleaseError, match="not what its metrics.json renders"):
        R.refresh_release(rel, log=lambda *_: None)
    assert snapshot() == kept and os.listdir(models) == ["tiny"]


def test_lineage_total_is_a_lower_bound_when_the_oldest_start_is_unrecorded():
    """A chain whose oldest step started from weights without a recorded schedule (an .h5, a run
    gone before snapshots) must not claim its sum as the whole training time."""
    from quant.release import _lineage_lines

    known = {"epochs_done": 5, "train_seconds": 3600.0, "init": None}
    tr = {"epochs_done": 3, "train_seconds": 1800.0, "init": "models/x", "init_training": known}
    assert _lineage_lines(tr) == ["- Before that, newest first: 5 epochs (1.0 h). In all: 8 epochs, "
                                  "1.5 CPU-hours."]
    known["init"] = "runs/old/last.h5"
    line = _lineage_lines(tr)[0]
    assert "In all: at least 8 epochs, 1.5 CPU-hours" in line
    assert "`runs/old/last.h5` was not recorded" in line


def test_measured_weaknesses_come_from_the_release_metrics():
    """The card lists what its own numbers show (a more accurate foreign model, drift over target,
    the worst attribute); a foreign model behind it and drift within target add no line."""
    from quant.release import measured_weaknesses

    test = {"count": 68, "nme": 0.08, "attributes": {"blur": {"count": 28, "nme": 0.09},
                                                     "largepose": {"count": 13, "nme": 0.16}}}
    metrics = {"default_int8": "qat_int8.onnx", "models": {"qat_int8.onnx": {"test": test}},
               "speed": {"rows": [{"name": "PFLD", "method": "foreign", "nme": 0.06},
                                  {"name": "qat_int8_onnx", "method": "QAT INT8", "nme": 0.08}]},
               "tracking": {"recrop_ok": False, "one_shot_nme": 0.08, "recrop_nme": 0.1, "iterations": 10,
                            "recrop_increase": 0.25, "target_increase": 0.1}}
    got = measured_weaknesses(metrics)
    assert got[0] == ("Less accurate than PFLD on the same 68 test faces: 8.00 % (`qat_int8.onnx`) "
                      "against 6.00 %.")
    assert got[1] == ("Drifts when re-cropped from its own landmarks on the test faces: one-shot NME 8.00 % "
                      "-> 10.00 % after 10 re-crops (+25.0 %; target <= +10 %: FAIL).")
    assert got[2] == "Weakest on largepose faces: 16.00 % test NME (13 faces), 2.0× its overall 8.00 %."
    metrics["speed"]["rows"][0]["nme"] = 0.09
    metrics["tracking"]["recrop_ok"] = True
    test["attributes"] = {}
    assert measured_weaknesses(metrics) == []


def test_weakness_lines_live_in_metrics_so_a_refresh_keeps_them(release_run, tmp_path):
    """`flm release --weakness` lines are stored in metrics.json: the card renders from it alone, and
    refresh_release (which refuses a card metrics.json cannot render) accepts the release and keeps them."""
    import quant.release as R

    line = "loses faces in the video's cross-fades"
    rel = R.build_release(release_run, "weak", str(tmp_path / "models"), weaknesses=(line,),
                          log=lambda *_: None)
    assert json.load(open(os.path.join(rel, "metrics.json")))["weaknesses"] == [line]
    card = open(os.path.join(rel, "MODEL_CARD.md"), encoding="utf-8").read()
    assert "- %s\n" % line in card
    R.refresh_release(rel, log=lambda *_: None)
    assert open(os.path.join(rel, "MODEL_CARD.md"), encoding="utf-8").read() == card
