"""Foreign ONNX models (PFLD-pytorch style) behind flm's Backend: spec parsing, input preparation,
output decoding, and parity with flm's own ONNX backend on a wrapped copy of flm's model."""
import json

import cv2
import numpy as np
import pytest

from runtime.backends import BackendError
from runtime.backends.foreign import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ForeignOnnxBackend,
    ForeignSpec,
    decode_output,
    load_foreign,
    spec_from_options,
)

PFLD = "channels=3,size=112,norm=0-1,layout=nchw,out=flat,frame=crop01,output=1"


# ------------------------------------------------------------------------------ spec parsing
def test_compact_spec_parses_every_key():
    s = ForeignSpec.parse(PFLD)
    assert (s.channels, s.size, s.norm, s.layout, s.out, s.frame, s.output) == \
        (3, 112, "0-1", "nchw", "flat", "crop01", "1")
    assert ForeignSpec.parse(s.compact()) == s


def test_json_and_json_file_specs(tmp_path):
    d = {"channels": 1, "size": 96, "norm": "u8-127.5/128", "layout": "NHWC", "out": "planar",
         "frame": "pixels", "output": "landmarks"}
    s = ForeignSpec.parse(json.dumps(d))
    assert (s.channels, s.size, s.layout, s.output) == (1, 96, "nhwc", "landmarks")
    p = tmp_path / "spec.json"
    p.write_text(json.dumps(d))
    assert ForeignSpec.parse(str(p)) == s


def test_unset_keys_mean_read_from_model():
    s = ForeignSpec.parse("norm=-1-1,layout=auto")
    assert s.channels is None and s.size is None and s.layout is None and s.norm == "-1-1"


@pytest.mark.parametrize("text, names", [
    ("chanels=3", ["chanels", "unknown key"]),
    ("channels=2", ["channels", "2"]),
    ("channels=three", ["channels", "three"]),
    ("size=1.5", ["size", "1.5"]),
    ("norm=0-2", ["norm", "0-2"]),
    ("norm=u8-128/0", ["norm", "u8-128/0"]),
    ("layout=nwhc", ["layout", "nwhc"]),
    ("out=xy", ["out", "xy"]),
    ("frame=crop", ["frame", "crop"]),
    ("frame=auto", ["frame"]),
    ("channels", ["channels", "key=value"]),
    ("size=112,size=96", ["size", "twice"]),
    ('{"channels": 3,', ["JSON"]),
    ('{"colour": 3}', ["colour", "unknown key"]),
])
def test_bad_spec_names_the_key_and_value(text, names):
    with pytest.raises(ValueError) as e:
        ForeignSpec.parse(text)
    for n in names:
        assert n in str(e.value)


def test_cli_option_parsing_gives_bad_parameter():
    import click

    assert spec_from_options(None) is None
    assert spec_from_options(PFLD).channels == 3
    with pytest.raises(click.BadParameter, match="layout"):
        spec_from_options("layout=chw")


def test_decode_output_layouts_and_frames():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1, (2, 98, 2)).astype(np.float32)
    flat = pts.reshape(2, -1)
    planar = pts.transpose(0, 2, 1).reshape(2, -1)
    np.testing.assert_allclose(decode_output(flat, "flat", "crop01", 112), flat)
    np.testing.assert_allclose(decode_output(pts, "pairs", "crop01", 112), flat)
    np.testing.assert_allclose(decode_output(planar, "planar", "crop01", 112), flat)
    np.testing.assert_allclose(decode_output(flat * 96, "flat", "pixels", 96), flat, atol=1e-6)
    np.testing.assert_allclose(decode_output(flat * 2 - 1, "flat", "-1-1", 112), flat, atol=1e-6)
    with pytest.raises(BackendError, match="136 values"):
        decode_output(np.zeros((2, 136)), "flat", "crop01", 112)


# ------------------------------------------------------------------------------ probe models
def probe_model(path, shape, outputs=(("feat", 64), ("lm", 196)), dtype=1):
    """ONNX graph whose outputs are the first k values of its flattened input: it shows exactly
    what the backend fed it (normalisation, channel replication, layout, resizing)."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Flatten", ["x"], ["flat"], axis=1)]
    inits, outs = [], []
    for name, k in outputs:
        inits += [helper.make_tensor(name + "_s", TensorProto.INT64, [1], [0]),
                  helper.make_tensor(name + "_e", TensorProto.INT64, [1], [k]),
                  helper.make_tensor(name + "_a", TensorProto.INT64, [1], [1])]
        nodes.append(helper.make_node("Slice", ["flat", name + "_s", name + "_e", name + "_a"], [name]))
        outs.append(helper.make_tensor_value_info(name, dtype, [shape[0], k]))
    graph = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("x", dtype, shape)], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def crops(n=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 112, 112), dtype=np.uint8)


def test_nchw_rgb_zero_one_replicates_gray(tmp_path):
    m = probe_model(tmp_path / "p.onnx", ["N", 3, 112, 112])
    be = load_foreign(m, PFLD)
    x = crops()
    got = be.infer(x).reshape(len(x), -1)
    # NCHW: the first 196 values are channel 0, row 0 (112) and row 1 (84)
    np.testing.assert_allclose(got, x.reshape(len(x), -1)[:, :196] / 255.0, rtol=1e-6)
    assert be.info()["note"] == "gray crop replicated into 3 channels"
    buf = be._bufs[len(x)]
    np.testing.assert_array_equal(buf[:, 0], buf[:, 2])  # every channel holds the gray crop


def test_nhwc_imagenet_per_channel_and_pixels_frame(tmp_path):
    m = probe_model(tmp_path / "p.onnx", ["N", 112, 112, 3], outputs=(("lm", 196),))
    be = load_foreign(m, "norm=imagenet,frame=pixels")  # channels/size/layout/output read from the model
    f = be.foreign
    assert (f.layout, f.channels, f.size, f.output) == ("nhwc", 3, 112, "0")
    x = crops()
    got = be.infer(x).reshape(len(x), -1)
    px = x.reshape(len(x), -1)[:, :66].astype(np.float64) / 255.0  # 66 pixels x 3 channels >= 196
    want = ((px[:, :, None] - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).reshape(len(x), -1)[:, :196]
    np.testing.assert_allclose(got, want / 112.0, rtol=1e-5, atol=1e-6)


def test_resizes_to_the_model_size_and_fixed_batch(tmp_path):
    m = probe_model(tmp_path / "p.onnx", [1, 1, 64, 64], outputs=(("lm", 196),))
    be = load_foreign(m, "norm=u8-128/128")
    assert be.batch_size == 1 and be.foreign.size == 64
    x = crops(5)
    got = be.infer(x).reshape(len(x), -1)
    small = np.stack([cv2.resize(c, (64, 64), interpolation=cv2.INTER_AREA) for c in x])
    np.testing.assert_allclose(got, (small.reshape(len(x), -1)[:, :196] - 128.0) / 128.0, atol=1e-6)


def test_load_errors_name_the_problem(tmp_path):
    two = probe_model(tmp_path / "two.onnx", ["N", 3, 112, 112], outputs=(("a", 196), ("b", 196)))
    with pytest.raises(BackendError, match="output=INDEX"):
        load_foreign(two, "norm=0-1")
    with pytest.raises(BackendError, match="channels=1 but input"):
        load_foreign(two, "channels=1,output=0")
    with pytest.raises(BackendError, match="size=96"):
        load_foreign(two, "size=96,output=0")
    with pytest.raises(BackendError, match="output=5"):
        load_foreign(two, "output=5")
    feat = probe_model(tmp_path / "feat.onnx", ["N", 3, 112, 112])
    with pytest.raises(BackendError, match="64 values per face"):
        load_foreign(feat, "output=0")
    assert load_foreign(feat, "output=lm").output_name == "lm"
    with pytest.raises(BackendError, match="unknown key"):
        load_foreign(feat, "outptu=1")
    with pytest.raises(BackendError, match="not found"):
        load_foreign(str(tmp_path / "missing.onnx"), PFLD)


# ------------------------------------------------------------------------------ parity with flm
@pytest.fixture(scope="module")
def flm_and_foreign(tmp_path_factory):
    """(flm ONNX, PFLD-pytorch-style ONNX) of one tiny flm model (tests/runtime/conftest.py).

    The foreign one wraps the same Keras model: input (N, 3, 112, 112) in [0, 1], NCHW; a 1x1
    conv averages the channels and maps [0, 1] to flm's (u8 - 128) / 128; two outputs (a feature
    tensor first, the 196 landmarks second, as PFLD-pytorch exports), all through tf2onnx."""
    import tensorflow as tf
    import tf2onnx

    from keras_flm.keras_compat import get_keras
    from tests.runtime.conftest import build_tiny_model

    keras = get_keras()
    flm = build_tiny_model()
    d = tmp_path_factory.mktemp("foreign")
    paths = {"flm": str(d / "flm.onnx"), "foreign": str(d / "pfld_like.onnx")}
    sig = (tf.TensorSpec((None, 112, 112, 1), tf.float32, name="image"),)
    tf2onnx.convert.from_keras(flm, input_signature=sig, opset=13, output_path=paths["flm"])
    inp = keras.Input((3, 112, 112), name="input")
    x = keras.layers.Permute((2, 3, 1))(inp)
    gray = keras.layers.Conv2D(1, 1, kernel_initializer=keras.initializers.Constant(255.0 / (3 * 128.0)),
                               bias_initializer=keras.initializers.Constant(-1.0), name="to_flm")(x)
    feat = keras.layers.GlobalAveragePooling2D(name="features")(gray)
    wrapped = keras.Model(inp, [feat, flm(gray)])
    fn = tf.function(lambda t: wrapped(t, training=False))
    proto, _ = tf2onnx.convert.from_function(
        fn, input_signature=[tf.TensorSpec((None, 3, 112, 112), tf.float32, name="input")], opset=13)
    with open(paths["foreign"], "wb") as f:
        f.write(proto.SerializeToString())
    return paths


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    """A 10-face synthetic WFLW-layout root (5 test faces)."""
    from keras_flm.synth import write_dataset

    root = tmp_path_factory.mktemp("synth") / "faces"
    write_dataset(str(root), 10, seed=3, test_fraction=0.5, progress=False)
    return str(root)


@pytest.fixture(scope="module")
def synth_records(synth_root):
    from runtime.wflw import read_annotations

    return read_annotations(synth_root, "test")


def test_foreign_backend_matches_flm_onnx_backend(flm_and_foreign, synth_records):
    from runtime import evaluate as rev
    from runtime.backends import load_backend

    own = load_backend(flm_and_foreign["flm"])
    foreign = ForeignOnnxBackend(flm_and_foreign["foreign"], ForeignSpec.parse(PFLD))
    assert len(foreign.session.get_outputs()) == 2 and foreign.output_index == 1
    x = np.stack([rev.crop_face(rev.load_image(r), rev.face_box(r))[0] for r in synth_records])
    a, b = own.infer(x), foreign.infer(x)
    assert a.shape == b.shape == (len(x), 98, 2)
    assert np.abs(a - b).max() < 1e-4
    assert np.abs(a - a.mean(0)).max() > 1e-4  # input-dependent output: the comparison means something
    ra, rb = rev.evaluate(own, synth_records), rev.evaluate(foreign, synth_records)
    assert ra["metrics"]["count"] == rb["metrics"]["count"] == len(synth_records)
    assert abs(ra["metrics"]["nme"] - rb["metrics"]["nme"]) < 1e-5
    assert rb["source"]["backend"] == "onnx-foreign" and "output" in rb["source"]


def test_wrong_normalisation_is_visible(flm_and_foreign):
    from runtime.backends import load_backend

    x = crops(4, seed=1)
    right = load_backend(flm_and_foreign["flm"]).infer(x)
    wrong = load_foreign(flm_and_foreign["foreign"], PFLD.replace("norm=0-1", "norm=-1-1")).infer(x)
    assert np.abs(right - wrong).max() > 1e-3


# ------------------------------------------------------------------------------ flm-dpu wiring
def test_flm_dpu_bench_and_eval_take_a_foreign_spec(tmp_path, synth_root):
    from click.testing import CliRunner

    from runtime.cli import cli

    m = probe_model(tmp_path / "p.onnx", ["N", 3, 112, 112])
    res = CliRunner().invoke(cli, ["bench", "--model", m, "--foreign-spec", PFLD, "--iters", "2",
                                   "--batch", "1"])
    assert res.exit_code == 0, res.output
    assert "onnx-foreign" in res.output
    res = CliRunner().invoke(cli, ["eval", "--model", m, "--foreign-spec", PFLD, "--data", synth_root])
    assert res.exit_code == 0, res.output
    assert "nme" in res.output
    res = CliRunner().invoke(cli, ["eval", "--model", m, "--foreign-spec", "chanels=3", "--data", synth_root])
    assert res.exit_code == 2 and "unknown key 'chanels'" in res.output
    res = CliRunner().invoke(cli, ["bench", "--model", m, "--foreign-spec", PFLD, "--backend", "tflite"])
    assert res.exit_code != 0 and "--foreign-spec takes an ONNX model" in res.output


def test_flm_dpu_run_takes_a_foreign_spec(tmp_path, flm_and_foreign):
    """The PFLD-pytorch-layout wrapper of a model runs in the live pipeline and tracks exactly as
    flm's own export of the same model does (same frames, same boxes, same landmarks)."""
    import json

    import cv2
    from click.testing import CliRunner

    from keras_flm.synth import write_face_video
    from runtime.cli import cli

    video = str(tmp_path / "face.mp4")
    write_face_video(video, 8, seed=3)
    # --images: every frame is detected and cropped on its own, so both runs see the same crops and
    # must agree to JSONL's 0.1-px rounding (on a video, tracking feeds each output back into the next
    # crop and float-level differences compound)
    frames = tmp_path / "frames"
    frames.mkdir()
    cap = cv2.VideoCapture(video)
    for i in range(8):
        ok, img = cap.read()
        assert ok
        cv2.imwrite(str(frames / ("%02d.png" % i)), img)
    cap.release()
    out = {}
    for key, extra in (("flm", []), ("foreign", ["--foreign-spec", PFLD])):
        jsonl = str(tmp_path / (key + ".jsonl"))
        res = CliRunner().invoke(cli, ["run", "--images", str(frames), "--model", flm_and_foreign[key],
                                       "--no-display", "--jsonl", jsonl, "--quiet"] + extra)
        assert res.exit_code == 0, res.output
        with open(jsonl) as f:
            out[key] = [json.loads(line) for line in f if line.strip()]
    faces = [[fc["landmarks"] for fc in fr.get("faces", [])] for fr in out["flm"]]
    assert sum(len(f) for f in faces) > 0  # the comparison below is about real landmarks
    other = [[fc["landmarks"] for fc in fr.get("faces", [])] for fr in out["foreign"]]
    assert len(faces) == len(other)
    for a, b in zip(faces, other):
        assert len(a) == len(b)
        for pa, pb in zip(a, b):
            assert np.abs(np.asarray(pa) - np.asarray(pb)).max() <= 0.1 + 1e-6  # JSONL keeps 0.1 px
    res = CliRunner().invoke(cli, ["run", "--video", video, "--foreign-spec", PFLD, "--no-display"])
    assert res.exit_code == 2 and "pass it with --model" in res.output
