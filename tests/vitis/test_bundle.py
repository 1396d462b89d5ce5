"""Board bundle: contents, md5s, meta.json keys, tarball, what the runtime loader sees, and the xmodel
checks it runs before bundling (real XIR where `make xir` built it, and the stand-in)."""
import json
import os
import tarfile

import pytest
from click.testing import CliRunner

from keras_flm.cli import cli
from runtime.landmarks import MIRROR, NUM_POINTS, OUTER_EYE_CORNERS
from runtime.preprocess import CONTRACT_VERSION, CropSpec
from tests.runtime.fake_vitis import impl
from tests.runtime.fake_vitis.impl import CUSTOM_OP, MNIST, require_vendor
from vitis.bundle import BundleError, build_bundle
from vitis.compile import compile_model, resolve_arch
from vitis.files import md5_file

from .test_compile import _runner_from_fake
from .test_inspect_check import _install_xmodel

xir_impl = impl.xir_impl  # the fixture: real XIR and stand-in

META_KEYS = {"format", "format_version", "model_name", "architecture", "run", "created", "crop", "input",
             "output", "landmarks", "models", "files", "dpu", "accuracy", "accuracy_reference", "versions"}


@pytest.fixture
def compiled_run(run_dir):
    (run_dir / "vitis_qat.h5").write_bytes((run_dir / "fp32.h5").read_bytes())
    compile_model(str(run_dir), "vitis_qat", resolve_arch(fingerprint="0x101000016010407"),
                  runner=_runner_from_fake())
    for name, payload in (("fp32.onnx", b"onnx-fp32"), ("qat_int8.onnx", b"onnx-qat"),
                          ("ptq_int8.tflite", b"tfl-ptq"), ("fp32.tflite", b"tfl-fp32")):
        (run_dir / name).write_bytes(payload)
    (run_dir / "metrics.json").write_text(json.dumps({
        "fp32": {"nme": 0.051, "fr": 0.02, "auc": 0.49, "ced": [0.0, 0.5, 1.0]},
        "pof2_int8": {"nme": 0.053, "fr": 0.03, "auc": 0.47},
        "ptq_int8": {"nme": 0.056, "regions": {"contour": 0.08}}}))
    return run_dir


def test_bundle_contents_md5_and_meta(compiled_run, xir_impl):
    meta = build_bundle(str(compiled_run))
    b = compiled_run / "bundle"
    on_disk = sorted(os.listdir(b))
    assert on_disk == sorted(["meta.json", "flm_pfld.xmodel", "fp32.onnx", "qat_int8.onnx", "ptq_int8.tflite",
                              "fp32.tflite"])
    assert json.loads((b / "meta.json").read_text()) == meta
    assert set(meta) == META_KEYS and meta["format"] == "flm-bundle"
    for name, rec in meta["files"].items():
        assert rec["md5"] == md5_file(str(b / name)) == md5_file(str(compiled_run / rec["source"]))
        assert rec["bytes"] == os.path.getsize(b / name)
    assert set(meta["files"]) == set(on_disk) - {"meta.json"}
    # The host models follow the xmodel's mode (QAT) first, then PTQ INT8, then FP32.
    assert meta["models"] == {"vart": "flm_pfld.xmodel", "onnx": "qat_int8.onnx", "tflite": "ptq_int8.tflite"}
    assert meta["dpu"]["fingerprint"] == "0x101000016010407" and meta["dpu"]["compiled_from"] == "vitis_qat"
    assert meta["dpu"]["dpu_subgraphs"] == 1 and meta["dpu"]["fingerprint_source"] == "xmodel (XIR)"
    assert (meta["input"]["dpu_fix_point"], meta["output"]["dpu_fix_point"]) == (7, 6)  # read from the file
    assert meta["output"]["dpu_offset"] == 0.0  # the QAT xmodel emits the landmarks themselves
    assert meta["crop"] == CropSpec().to_dict() and meta["crop"]["version"] == CONTRACT_VERSION
    assert meta["input"]["shape"] == [1, 112, 112, 1] and "input_scale" in meta["input"]["normalisation"]
    lm = meta["landmarks"]
    assert lm["num_points"] == NUM_POINTS and tuple(lm["outer_eye_corners"]) == OUTER_EYE_CORNERS
    assert tuple(lm["mirror"]) == MIRROR
    assert meta["accuracy"]["fp32"] == {"nme": 0.051, "fr": 0.02, "auc": 0.49}  # scalars only
    assert meta["accuracy_reference"] == {"fp32": "fp32", "pof2_int8": "pof2_int8"}
    assert meta["architecture"]["width"] == 0.25 and meta["versions"]["run"] == {"tensorflow": "test"}


def test_tarball_holds_the_same_files(compiled_run):
    build_bundle(str(compiled_run))
    with tarfile.open(str(compiled_run / "bundle.tar.gz")) as tar:
        names = sorted(m.name for m in tar.getmembers() if m.isfile())
        meta = json.load(tar.extractfile("tiny-bundle/meta.json"))
    assert names == sorted("tiny-bundle/" + n for n in os.listdir(compiled_run / "bundle"))
    assert meta["run"] == "tiny"


def test_runtime_loader_reads_the_bundle(compiled_run):
    from runtime.bundle import load_bundle

    build_bundle(str(compiled_run))
    b = load_bundle(str(compiled_run / "bundle"))
    assert b.spec == CropSpec()
    assert os.path.basename(b.files["vart"]) == "flm_pfld.xmodel"
    assert os.path.basename(b.model_for("onnx")) == "qat_int8.onnx"


def test_bundle_without_xmodel_for_hosts(run_dir):
    (run_dir / "fp32.onnx").write_bytes(b"onnx")
    meta = build_bundle(str(run_dir), tarball=False)
    assert meta["dpu"] is None and meta["models"] == {"onnx": "fp32.onnx"}
    assert meta["accuracy"] == {} and meta["input"]["dpu_fix_point"] is None
    assert not (run_dir / "bundle.tar.gz").exists()


def test_bundle_errors_leave_the_old_bundle(compiled_run):
    build_bundle(str(compiled_run))
    before = (compiled_run / "bundle" / "meta.json").read_text()
    xmodel = compiled_run / "vitis" / "vitis_qat" / "flm_pfld.xmodel"
    xmodel.write_bytes(b"tampered")
    with pytest.raises(BundleError, match="changed after compiling"):
        build_bundle(str(compiled_run))
    assert (compiled_run / "bundle" / "meta.json").read_text() == before
    assert not [p for p in os.listdir(compiled_run) if p.startswith(".flm-tmp")]


def test_nothing_to_bundle(run_dir):
    with pytest.raises(BundleError, match="nothing to bundle"):
        build_bundle(str(run_dir))


def test_cli_bundle(compiled_run):
    r = CliRunner().invoke(cli, ["vitis", "bundle", "--run", str(compiled_run)])
    assert r.exit_code == 0, r.output
    assert "flm_pfld.xmodel" in r.output and "0x101000016010407" in r.output
    assert (compiled_run / "bundle.tar.gz").is_file()


@pytest.mark.parametrize("src,n,match", [
    (MNIST, 1, r"expects input quant_input_1 \[1, 28, 28, 1\] xint8, fix_point 6; "
               r"flm feeds \[batch, 112, 112, 1\]"),
    (CUSTOM_OP, 2, "has 2 DPU subgraphs.*split by the CPU subgraph subgraph_custom_layer"),
], ids=["mnist", "custom_op"])
def test_bundle_refuses_an_xmodel_failing_the_checks(run_dir, xir_impl, src, n, match):
    require_vendor()
    (run_dir / "fp32.onnx").write_bytes(b"onnx")
    build_bundle(str(run_dir), tarball=False)  # a host-only bundle from before
    before = (run_dir / "bundle" / "meta.json").read_text()
    _install_xmodel(run_dir, src, n)
    with pytest.raises(BundleError, match="fails the board checks .*so it is not bundled") as e:
        build_bundle(str(run_dir))
    assert e.match(match) and "flm vitis check --run" in str(e.value)
    assert (run_dir / "bundle" / "meta.json").read_text() == before


def test_bundle_without_xir_checks_the_compile_record(run_dir, monkeypatch):
    import vitis.tools

    require_vendor()
    monkeypatch.setattr(vitis.tools, "load_xir", lambda: None)
    _install_xmodel(run_dir, CUSTOM_OP, 2)
    with pytest.raises(BundleError, match=r"(?s)read with compile.json.*has 2 DPU subgraphs \(compile log\)"):
        build_bundle(str(run_dir))
