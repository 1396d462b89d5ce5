"""Default-model resolution: no --model -> the released model (and flm-dpu says which); no release ->
the clear "no model given" error; on a board a compiled bundle inside the release wins."""
import json

import pytest
from click.testing import CliRunner

from runtime import release
from runtime.cli import cli
from runtime.preprocess import DEFAULT_SPEC
from tests.runtime.test_foreign import PFLD, probe_model


def make_release(root, with_bundle=False):
    """A minimal release: meta.json in the bundle format + a 112x112x1 -> 196 ONNX model."""
    root.mkdir(parents=True)
    probe_model(root / "ptq_int8.onnx", ["N", 112, 112, 1], outputs=(("lm", 196),))
    meta = {"format": "flm-bundle", "format_version": 1, "crop": DEFAULT_SPEC.to_dict(),
            "models": {"onnx": "ptq_int8.onnx"}}
    (root / "meta.json").write_text(json.dumps(meta))
    if with_bundle:
        b = root / release.BUNDLE_SUBDIR
        b.mkdir()
        (b / "net.xmodel").write_bytes(b"not a real xmodel")
        (b / "meta.json").write_text(json.dumps(dict(meta, models={"vart": "net.xmodel"})))
    return root


@pytest.fixture
def no_release(monkeypatch, tmp_path):
    monkeypatch.delenv("FLM_DPU_MODEL", raising=False)
    nowhere = [str(tmp_path / "none")]
    monkeypatch.setattr(release, "release_candidates", lambda name=release.RELEASE_NAME: nowhere)


@pytest.fixture
def images(tmp_path):
    import cv2
    import numpy as np

    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "a.png"), np.full((120, 160, 3), 90, np.uint8))
    return str(d)


def test_candidates_put_the_env_first_then_the_checkout_then_the_install(monkeypatch, tmp_path):
    monkeypatch.setenv("FLM_RELEASE_DIR", str(tmp_path / "mine"))
    c = release.release_candidates()
    assert c[0] == str(tmp_path / "mine")
    assert c[1].endswith("models/" + release.RELEASE_NAME)
    assert c[2].endswith("share/flm/release")


def test_no_release_gives_the_no_model_error(no_release, images):
    assert release.default_model() is None
    res = CliRunner().invoke(cli, ["run", "--images", images, "--no-display"])
    assert res.exit_code == 2
    assert "no model given and no released model installed" in res.output and "--model" in res.output


def test_no_model_runs_the_release_and_says_so(monkeypatch, tmp_path, images):
    rel = make_release(tmp_path / "rel")
    monkeypatch.delenv("FLM_DPU_MODEL", raising=False)
    monkeypatch.setenv("FLM_RELEASE_DIR", str(rel))
    assert release.find_release() == str(rel) and release.default_model() == str(rel)
    jsonl = str(tmp_path / "o.jsonl")
    res = CliRunner().invoke(cli, ["run", "--images", images, "--no-display", "--jsonl", jsonl])
    assert res.exit_code == 0, res.output
    assert "using the released model %s" % rel in res.output
    assert "ptq_int8.onnx" in res.output  # the pipeline banner names the file that runs


def test_a_compiled_bundle_wins_only_where_vart_runs(monkeypatch, tmp_path):
    rel = make_release(tmp_path / "rel", with_bundle=True)
    monkeypatch.setenv("FLM_RELEASE_DIR", str(rel))
    monkeypatch.setattr(release, "vitis_runtime_present", lambda: False)
    assert release.default_model() == str(rel)  # host: the INT8 ONNX of the release
    monkeypatch.setattr(release, "vitis_runtime_present", lambda: True)
    assert release.default_model() == str(rel / release.BUNDLE_SUBDIR)  # board: its xmodel bundle


def test_a_foreign_spec_needs_a_model(no_release, images):
    res = CliRunner().invoke(cli, ["run", "--images", images, "--no-display", "--foreign-spec", PFLD])
    assert res.exit_code == 2 and "pass it with --model" in res.output
