"""The VART backend with the vart stand-in (tests/runtime/fake_vitis: documented API, real computation:
int8 in -> dequantise -> ONNX Runtime -> quantise -> int8 out) over both xir implementations (the real
XIR where `make xir` built it, and the stand-in), reading real protobuf xmodels; and its graph
inspection of the two real KV260 xmodels."""
import sys
import threading

import numpy as np
import pytest

from runtime.backends import BackendError, load_backend
from runtime.backends.vart_backend import describe_xmodel, input_lut, load_dpu_subgraph
from runtime.landmarks import NUM_POINTS
from runtime.preprocess import DEFAULT_SPEC
from tests.runtime.fake_vitis import impl
from tests.runtime.fake_vitis.impl import CUSTOM_OP, FINGERPRINT, MNIST, require_vendor
from tests.runtime.fake_vitis.xir import write_fake_xmodel

xir_impl = impl.xir_impl  # the fixture: real XIR and stand-in
fake_vart = impl.fake_vart  # the fixture (vart stand-in)


@pytest.fixture()
def vitis(xir_impl, fake_vart):
    """`import xir, vart` give (one xir implementation, the vart stand-in) for this test."""
    return xir_impl, fake_vart


@pytest.fixture(scope="module")
def crops():
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, (6, 112, 112), dtype=np.uint8)


def _quant(y, fix):
    return np.clip(np.floor(y * 2.0 ** fix + 0.5), -128, 127) * 2.0 ** -fix


def test_vart_matches_onnx_within_quantisation_step(vitis, tiny_model_onnx, crops, tmp_path):
    ref = load_backend(tiny_model_onnx, threads=1).infer(crops)
    out_fix = 6  # outputs in [0, 1]: 6 keeps headroom (range +-2), step 1/64
    xm = write_fake_xmodel(str(tmp_path / "pfld.xmodel"), tiny_model_onnx, in_fix=7, out_fix=out_fix)
    b = load_backend(xm)
    assert b.name == "vart" and b.batch_size == 1
    y = b.infer(crops)
    assert y.shape == (len(crops), NUM_POINTS, 2) and y.dtype == np.float32
    step = 2.0 ** -out_fix
    assert np.abs(y - ref).max() <= step / 2 + 1e-6
    # the int8 grid really is the output grid: every value is a multiple of the step
    assert np.allclose(y / step, np.round(y / step), atol=1e-4)
    assert np.abs(y - ref).max() > 0  # (and quantisation did happen)


def test_input_fix_point_scaling_and_rounding(vitis, tiny_model_onnx, crops, tmp_path):
    """fix_point 7 makes the input lossless (u8 - 128); at 5 the backend must round half up,
    which the expected value reproduces exactly through the same ONNX model."""
    assert np.array_equal(input_lut(7), (np.arange(256) - 128).astype(np.int8))
    lut5 = input_lut(5)
    assert (lut5[130], lut5[129], lut5[126], lut5[125]) == (1, 0, 0, -1)  # 0.5 -> 1, -0.5 -> 0, -0.75 -> -1
    import onnxruntime as ort

    xm = write_fake_xmodel(str(tmp_path / "in5.xmodel"), tiny_model_onnx, in_fix=5, out_fix=6)
    y = load_backend(xm).infer(crops)
    deq = lut5[crops].astype(np.float32)[..., None] * np.float32(2.0 ** -5)  # what the DPU computes on
    sess = ort.InferenceSession(tiny_model_onnx, providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {"image": d[None]})[0] for d in deq]).reshape(y.shape)
    expected = _quant(ref.astype(np.float64), 6)
    assert np.abs(y - expected).max() <= 2.0 ** -6 + 1e-6  # at most one step (float noise at a tie)
    assert np.mean(np.isclose(y, expected, atol=1e-6)) > 0.99
    # truncating instead of rounding the input (what the Vitis examples do) would change the answer
    trunc = np.clip(np.trunc((crops.astype(np.float64) - 128) / 4), -128, 127).astype(np.int8)
    assert np.mean(trunc != lut5[crops]) > 0.3


def test_fixed_batch_pads_the_last_call(vitis, tiny_model_onnx, crops, tmp_path):
    _, vart = vitis
    xm = write_fake_xmodel(str(tmp_path / "b4.xmodel"), tiny_model_onnx, in_fix=7, out_fix=6, batch=4,
                               out_dims=[4, 1, 1, 196])
    b = load_backend(xm)
    assert b.batch_size == 4
    y = b.infer(crops)  # 6 faces = one full batch + one padded batch
    one = np.concatenate([b.infer(c) for c in crops])
    assert y.shape == (6, NUM_POINTS, 2) and np.array_equal(y, one)
    assert vart.created[-1].jobs_run == 2 + 6


def test_one_runner_per_thread(vitis, tiny_model_onnx, crops, tmp_path):
    _, vart = vitis
    xm = write_fake_xmodel(str(tmp_path / "mt.xmodel"), tiny_model_onnx, in_fix=7, out_fix=6)
    b = load_backend(xm)
    main = b.infer(crops)
    results, errors = {}, []

    def work(k):
        try:
            results[k] = b.infer(crops)
        except Exception as e:  # reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    assert b.runners == 4  # main thread + 3 workers, each with its own runner and buffers
    assert all(np.array_equal(r, main) for r in results.values())


def test_info_reports_fix_points_and_fingerprint(vitis, tiny_model_onnx, tmp_path):
    xm = write_fake_xmodel(str(tmp_path / "i.xmodel"), tiny_model_onnx, in_fix=7, out_fix=5)
    d = describe_xmodel(xm)
    assert d["dpu_subgraphs"] == 1 and d["problems"] == []
    assert (d["input_fix_point"], d["output_fix_point"]) == (7, 5)
    assert (d["input"], d["input_dims"], d["output"], d["output_dims"]) == ("image", [1, 112, 112, 1],
                                                                             "landmarks", [1, 196])
    assert d["dpu_fingerprint"] == "0x101000056010407"
    assert [s["device"] for s in d["subgraphs"]] == ["USER", "DPU", "CPU"]
    b = load_backend(xm)
    assert b.info()["dpu_fingerprint"] == "0x101000056010407" and b.info()["subgraph"] == "subgraph_pfld_dpu0"


@pytest.mark.parametrize("n", [0, 2])
def test_dpu_subgraph_count_must_be_one(vitis, tiny_model_onnx, tmp_path, n):
    xm = write_fake_xmodel(str(tmp_path / "s.xmodel"), tiny_model_onnx, in_fix=7, out_fix=6, dpu_subgraphs=n)
    with pytest.raises(BackendError, match="has %d DPU subgraphs.*exactly 1" % n):
        load_backend(xm)


@pytest.mark.parametrize("content", [b"garbage", b"", b'{"format": "fake-xmodel"}'])
def test_not_an_xmodel(vitis, tmp_path, content):
    p = tmp_path / "bad.xmodel"
    p.write_bytes(content)
    with pytest.raises(BackendError, match="bad.xmodel is (not a readable xmodel|empty|not an xmodel)"):
        load_backend(str(p))


def test_truncated_real_xmodel(vitis, tmp_path):
    """A copy cut short (an interrupted scp to the board) is refused, naming the file, not an abort."""
    require_vendor()
    data = MNIST.read_bytes()
    for cut in (7, len(data) // 2, len(data) - 1):
        p = tmp_path / "cut.xmodel"
        p.write_bytes(data[:cut])
        with pytest.raises(BackendError, match="cut.xmodel is not a readable xmodel.*truncated"):
            describe_xmodel(str(p))


def test_wrong_tensor_shape(vitis, tiny_model_onnx, tmp_path):
    xm = write_fake_xmodel(str(tmp_path / "o.xmodel"), tiny_model_onnx, in_fix=7, out_fix=6,
                           out_dims=[1, 68 * 2])
    with pytest.raises(BackendError, match="136 values per face; flm reads 196 values per face"):
        load_backend(xm)


def test_real_xmodels_graph_inspection(vitis):
    """The backend's view of the two real KV260 xmodels: neither fits flm, and it says why."""
    require_vendor()
    d = describe_xmodel(str(MNIST))
    assert [(s["name"], s["device"]) for s in d["subgraphs"]] == [("subgraph_input_1", "USER"),
                                                                  ("subgraph_quant_conv2d", "DPU"),
                                                                  ("subgraph_quant_dense_1_softmax", "CPU")]
    assert (d["subgraph"], d["dpu_fingerprint"], d["dpu_name"]) == ("subgraph_quant_conv2d", FINGERPRINT,
                                                                     "DPUCZDX8G_ISA1_B4096")
    assert (d["input"], d["input_dims"], d["input_fix_point"]) == ("quant_input_1", [1, 28, 28, 1], 6)
    assert (d["output"], d["output_dims"], d["output_fix_point"]) == ("quant_dense_1_softmax_fix", [1, 10],
                                                                       2)
    with pytest.raises(BackendError, match=r"cannot run in flm: its DPU subgraph subgraph_quant_conv2d "
                                           r"expects input quant_input_1 \[1, 28, 28, 1\] xint8, "
                                           r"fix_point 6; flm feeds \[batch, 112, 112, 1\]"):
        load_dpu_subgraph(str(MNIST))
    d = describe_xmodel(str(CUSTOM_OP))
    assert d["dpu_subgraphs"] == 2 and "subgraph" not in d
    assert [s["device"] for s in d["subgraphs"]] == ["USER", "DPU", "CPU", "DPU", "CPU"]
    with pytest.raises(BackendError, match="has 2 DPU subgraphs.*split by the CPU subgraph "
                                           r"subgraph_custom_layer \[custom_layer \(Mylayer\)"):
        load_backend(str(CUSTOM_OP))


def test_real_xmodel_refused_before_the_missing_dpu_runtime(xir_impl, monkeypatch):
    """On a host (XIR but no vart) the model's own problem is reported first, then the missing DPU."""
    require_vendor()
    monkeypatch.setitem(sys.modules, "vart", None)  # `import vart` raises ImportError
    with pytest.raises(BackendError, match=r"\[1, 28, 28, 1\].*flm feeds \[batch, 112, 112, 1\]"):
        load_backend(str(MNIST))


def test_fitting_xmodel_without_vart_says_what_it_needs(xir_impl, tiny_model_onnx, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vart", None)
    xm = write_fake_xmodel(str(tmp_path / "ok.xmodel"), tiny_model_onnx, in_fix=7, out_fix=6)
    with pytest.raises(BackendError, match=r"ok.xmodel fits flm \(DPU subgraph subgraph_pfld_dpu0 .*in image "
                                           r"\[1, 112, 112, 1\] xint8, fix_point 7.*no DPU runtime"):
        load_backend(xm)


def test_missing_runtime_names_the_board_image(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "xir", None)
    monkeypatch.setitem(sys.modules, "vart", None)
    p = tmp_path / "net.xmodel"
    p.write_text("{}")
    with pytest.raises(BackendError, match="only on the KV260 board image / a Vitis AI runtime.*make xir"):
        load_backend(str(p))


def test_spec_defaults():
    assert DEFAULT_SPEC.input_mean == 128.0  # the lossless fix_point-7 input relies on this


def _centred_onnx(src: str, dst: str, offset: float) -> str:
    """The model emitting landmarks - offset: what flm's PTQ xmodels compute (VitisConfig.output_offset)."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(src)
    out = m.graph.output[0]
    m.graph.initializer.append(numpy_helper.from_array(np.array(offset, np.float32), "flm_offset"))
    m.graph.node.append(helper.make_node("Sub", [out.name, "flm_offset"], ["centred"]))
    out.name = "centred"
    onnx.save(m, dst)
    return dst


def test_the_record_beside_a_centred_xmodel_gives_the_offset_back(vitis, tiny_model_onnx, crops, tmp_path,
                                                                   caplog):
    """A centred output fits position 7 ([-1, 1) around the crop centre, step 1/128) where the
    landmarks themselves need 6; the compile.json or bundle meta.json next to the xmodel says what to
    add back, and without either the raw centred output comes out."""
    import json

    ref = load_backend(tiny_model_onnx, threads=1).infer(crops)
    onx = _centred_onnx(tiny_model_onnx, str(tmp_path / "c.onnx"), 0.5)
    for folder, record in (("compiled", {"compile.json": {"xmodel": "vitis/vitis_ptq/flm_pfld.xmodel",
                                                          "output_offset": 0.5}}),
                           ("bundle", {"meta.json": {"output": {"dpu_offset": 0.5}}}),
                           ("bare", {})):
        (tmp_path / folder).mkdir()
        xm = write_fake_xmodel(str(tmp_path / folder / "flm_pfld.xmodel"), onx, in_fix=7, out_fix=7)
        for name, content in record.items():
            (tmp_path / folder / name).write_text(json.dumps(content))
        b = load_backend(xm)
        y = b.infer(crops)
        want = 0.0 if folder == "bare" else 0.5
        assert b.info()["output_offset"] == want
        source = b.info()["output_offset_source"]
        assert source == (None if folder == "bare" else str(tmp_path / folder / list(record)[0]))
        assert ("no compile.json or bundle meta.json beside it" in caplog.text) == (folder == "bare")
        assert np.abs(y - (ref - 0.5 + want)).max() <= 2.0 ** -7 / 2 + 1e-6, folder
    from runtime.backends.vart_backend import VartBackend

    given = VartBackend(xm, output_offset=0.5)
    assert np.abs(given.infer(crops) - ref).max() <= 2.0 ** -8 + 1e-6
    assert given.info()["output_offset_source"] == "given"
    (tmp_path / "bare" / "compile.json").write_text("{not json")
    with pytest.raises(BackendError, match=r"compile.json is not valid JSON \(line 1\)"):
        load_backend(xm)
