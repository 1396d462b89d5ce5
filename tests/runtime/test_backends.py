"""Backends agree with each other on the same crops, load through files and bundles, and
reject wrong inputs and wrong models with messages that name the problem."""
import json
import os

import numpy as np
import pytest

from runtime.backends import BackendError, backend_for_path, load_backend, resolve_model
from runtime.backends.base import input_lut
from runtime.bundle import load_bundle
from runtime.landmarks import NUM_POINTS
from runtime.preprocess import DEFAULT_SPEC, CropSpec, normalize_input


@pytest.fixture(scope="module")
def crops():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (5, 112, 112), dtype=np.uint8)
    x[0] = 0
    x[1] = 255
    return x


@pytest.fixture(scope="module")
def outputs(tiny_models, crops):
    out = {}
    for kind in ("onnx", "tflite", "h5"):
        b = load_backend(tiny_models[kind], threads=1)
        out[b.name] = b.infer(crops)
        b.close()
    return out


def test_lut_matches_normalize_input():
    u8 = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    spec = CropSpec(size=16)
    assert np.array_equal(input_lut(spec)[u8][..., None], normalize_input(u8, spec))


def test_outputs_are_landmarks(outputs):
    for name, y in outputs.items():
        assert y.shape == (5, NUM_POINTS, 2) and y.dtype == np.float32, name
        assert np.all(np.isfinite(y))
        # the tiny model answers "a face filling the crop": points spread inside [0, 1]
        assert 0.5 < np.ptp(y[0], axis=0).min() < 1.0, name


@pytest.mark.parametrize("other", ["tflite", "keras"])
def test_backends_agree(outputs, other):
    ref, y = outputs["onnx"], outputs[other]
    assert np.abs(ref - y).max() < 1e-4
    # and they agree on the input-dependent part, not only on the constant mean shape
    d_ref, d_y = ref - ref.mean(0), y - y.mean(0)
    assert np.abs(d_ref).max() > 1e-3
    assert np.corrcoef(d_ref.ravel(), d_y.ravel())[0, 1] > 0.999


def test_batches_and_layouts_agree(tiny_models, crops, outputs):
    b = load_backend(tiny_models["onnx"], threads=1)
    one_by_one = np.concatenate([b.infer(c) for c in crops])
    assert np.abs(one_by_one - outputs["onnx"]).max() < 1e-5
    assert np.array_equal(b.infer(crops[..., None]), b.infer(crops))


def test_tflite_batch_resize(tiny_models, crops, outputs):
    b = load_backend(tiny_models["tflite"])
    assert np.abs(b.infer(crops[:2]) - outputs["tflite"][:2]).max() < 1e-5
    assert np.abs(b.infer(crops) - outputs["tflite"]).max() < 1e-5


def test_bad_crops_rejected(tiny_models):
    b = load_backend(tiny_models["onnx"])
    with pytest.raises(ValueError, match="uint8"):
        b.infer(np.zeros((1, 112, 112), np.float32))
    with pytest.raises(ValueError, match="112"):
        b.infer(np.zeros((1, 96, 96), np.uint8))


def test_backend_from_suffix_and_override(tiny_models, tmp_path):
    assert backend_for_path("a/b.xmodel") == "vart"
    assert backend_for_path("m.TFLITE") == "tflite"
    with pytest.raises(BackendError, match="cannot tell the backend"):
        backend_for_path("model.bin")
    with pytest.raises(BackendError, match="unknown backend"):
        load_backend(tiny_models["onnx"], backend="tensorrt")
    with pytest.raises(BackendError, match="not found"):
        load_backend(str(tmp_path / "missing.onnx"))


def test_wrong_kind_of_file(tiny_models, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a model")
    with pytest.raises(BackendError, match="junk.onnx is not a loadable ONNX model"):
        load_backend(str(junk))
    # a real TFLite file forced through the ONNX engine
    with pytest.raises(BackendError, match="not a loadable ONNX model"):
        load_backend(tiny_models["tflite"], backend="onnx")
    with pytest.raises(BackendError, match="not a loadable TFLite model"):
        load_backend(tiny_models["onnx"], backend="tflite")


def test_model_with_wrong_output_is_rejected(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 112, 112, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 10])
    nodes = [helper.make_node("Slice", ["image", "s", "e", "a"], ["sl"]),
             helper.make_node("Reshape", ["sl", "shape"], ["y"])]
    inits = [shape, helper.make_tensor("s", TensorProto.INT64, [1], [0]),
             helper.make_tensor("e", TensorProto.INT64, [1], [10]),
             helper.make_tensor("a", TensorProto.INT64, [1], [1])]
    g = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    p = tmp_path / "ten.onnx"
    onnx.save(m, str(p))
    with pytest.raises(BackendError, match="10 values per face; a landmark model outputs 196"):
        load_backend(str(p))


def _bundle(tmp_path, tiny_models, meta):
    d = tmp_path / "bundle"
    d.mkdir()
    for kind in ("onnx", "tflite"):
        (d / os.path.basename(tiny_models[kind])).write_bytes(open(tiny_models[kind], "rb").read())
    (d / "meta.json").write_text(json.dumps(meta))
    return d


def test_bundle_dir(tiny_models, tmp_path, crops, outputs):
    import hashlib

    md5 = hashlib.md5(open(tiny_models["tflite"], "rb").read()).hexdigest()
    spec = CropSpec(scale=1.25)
    d = _bundle(tmp_path, tiny_models, {"format": "flm-bundle", "format_version": 1, "crop": spec.to_dict(),
                                        "models": {"onnx": "tiny.onnx", "tflite": "tiny.tflite"},
                                        "files": {"tiny.tflite": {"md5": md5}}})
    path, name, got = resolve_model(str(d))
    assert (os.path.basename(path), name, got) == ("tiny.onnx", "onnx", spec)  # host: ONNX first
    b = load_backend(str(d), backend="tflite")
    assert b.name == "tflite" and b.spec == spec  # the bundle's crop contract travels with the model
    assert np.abs(b.infer(crops) - outputs["tflite"]).max() < 1e-5
    # a corrupted copy is caught by its md5
    with open(d / "tiny.tflite", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BackendError, match="corrupt"):
        load_backend(str(d), backend="tflite")


def test_bundle_errors(tiny_models, tmp_path):
    with pytest.raises(BackendError, match="meta.json is missing"):
        load_backend(str(tmp_path))
    d = _bundle(tmp_path, tiny_models, {"models": {"onnx": "tiny.onnx"}})
    with pytest.raises(BackendError, match='no "crop"'):
        load_bundle(str(d))
    meta = {"crop": DEFAULT_SPEC.to_dict(), "models": {"vart": "net.xmodel"}}
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(BackendError, match="net.xmodel.*does not exist"):
        load_bundle(str(d))
    (d / "meta.json").write_text(json.dumps({"crop": dict(DEFAULT_SPEC.to_dict(), version=99)}))
    with pytest.raises(BackendError, match="contract version 99"):
        load_bundle(str(d))
    (d / "meta.json").write_text("{not json")
    with pytest.raises(BackendError, match="not valid JSON"):
        load_bundle(str(d))
    (d / "meta.json").write_text(json.dumps({"crop": DEFAULT_SPEC.to_dict()}))
    b = load_bundle(str(d))  # no names: found by suffix
    assert set(b.files) == {"onnx", "tflite"}
    with pytest.raises(BackendError, match="no model for backend 'vart'"):
        b.model_for("vart")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_tflite_int8_io(tiny_models, crops, outputs, tmp_path):
    """Full-integer TFLite (int8 input and output tensors): the backend quantises the crop with
    the input tensor's scale/zero point and dequantises the output."""
    import tensorflow as tf

    from keras_flm.keras_compat import get_keras

    model = get_keras().models.load_model(tiny_models["h5"], compile=False)
    rng = np.random.default_rng(5)
    calib = [normalize_input(rng.integers(0, 256, (1, 112, 112), dtype=np.uint8)) for _ in range(8)]

    def convert(io_type):
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([c] for c in calib)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = io_type
        conv.inference_output_type = io_type
        p = tmp_path / f"int8_{io_type.name}.tflite"
        p.write_bytes(conv.convert())
        return load_backend(str(p))

    b = convert(tf.int8)
    assert b.info()["input_dtype"] == "int8" and b.info()["output_dtype"] == "int8"
    ref = convert(tf.float32)  # same integer graph; TFLite itself (de)quantises the IO
    assert ref.info()["input_dtype"] == "float32"
    y, y_ref = b.infer(crops), ref.infer(crops)
    # the only difference is where the IO is (de)quantised: at most one output step apart,
    # while a wrong scale or zero point costs >> 0.05
    out_scale = b.interp.get_output_details()[0]["quantization"][0]
    assert 0 < out_scale < 0.02
    assert np.abs(y - y_ref).max() <= out_scale * 1.01
    # and it is still the model: close to the float TFLite on the random crops, which look like
    # the calibration data (the all-black/all-white crops 0 and 1 lie outside its ranges)
    assert np.abs(y[2:] - outputs["tflite"][2:]).mean() < 0.05
