"""The VART backend against the xir/vart stand-ins in tests/runtime/fake_vitis (documented API,
real computation: int8 in -> dequantise -> ONNX Runtime -> quantise -> int8 out)."""
import importlib
import os
import sys
import threading

import numpy as np
import pytest

from runtime.backends import BackendError, load_backend
from runtime.backends.vart_backend import input_lut
from runtime.landmarks import NUM_POINTS
from runtime.preprocess import DEFAULT_SPEC

FAKE = os.path.join(os.path.dirname(__file__), "fake_vitis")


@pytest.fixture()
def vitis(monkeypatch):
    """Make `import xir, vart` find the stand-ins for this test only."""
    monkeypatch.syspath_prepend(FAKE)
    for m in ("xir", "vart"):
        monkeypatch.delitem(sys.modules, m, raising=False)
    xir = importlib.import_module("xir")
    vart = importlib.import_module("vart")
    yield xir, vart
    for m in ("xir", "vart"):
        sys.modules.pop(m, None)


@pytest.fixture(scope="module")
def crops():
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, (6, 112, 112), dtype=np.uint8)


def _quant(y, fix):
    return np.clip(np.floor(y * 2.0 ** fix + 0.5), -128, 127) * 2.0 ** -fix


def test_vart_matches_onnx_within_quantisation_step(vitis, tiny_model_onnx, crops, tmp_path):
    xir, _ = vitis
    ref = load_backend(tiny_model_onnx, threads=1).infer(crops)
    out_fix = 6  # outputs in [0, 1]: 6 keeps headroom (range +-2), step 1/64
    xm = xir.write_fake_xmodel(str(tmp_path / "pfld.xmodel"), tiny_model_onnx, in_fix=7, out_fix=out_fix)
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
    xir, _ = vitis
    assert np.array_equal(input_lut(7), (np.arange(256) - 128).astype(np.int8))
    lut5 = input_lut(5)
    assert (lut5[130], lut5[129], lut5[126], lut5[125]) == (1, 0, 0, -1)  # 0.5 -> 1, -0.5 -> 0, -0.75 -> -1
    import onnxruntime as ort

    xm = xir.write_fake_xmodel(str(tmp_path / "in5.xmodel"), tiny_model_onnx, in_fix=5, out_fix=6)
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
    xir, vart = vitis
    xm = xir.write_fake_xmodel(str(tmp_path / "b4.xmodel"), tiny_model_onnx, in_fix=7, out_fix=6, batch=4,
                               out_dims=[4, 1, 1, 196])
    b = load_backend(xm)
    assert b.batch_size == 4
    y = b.infer(crops)  # 6 faces = one full batch + one padded batch
    one = np.concatenate([b.infer(c) for c in crops])
    assert y.shape == (6, NUM_POINTS, 2) and np.array_equal(y, one)
    assert vart.created[-1].jobs_run == 2 + 6


def test_one_runner_per_thread(vitis, tiny_model_onnx, crops, tmp_path):
    xir, vart = vitis
    xm = xir.write_fake_xmodel(str(tmp_path / "mt.xmodel"), tiny_model_onnx, in_fix=7, out_fix=6)
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
    xir, _ = vitis
    from runtime.backends.vart_backend import describe_xmodel

    xm = xir.write_fake_xmodel(str(tmp_path / "i.xmodel"), tiny_model_onnx, in_fix=7, out_fix=5)
    d = describe_xmodel(xm)
    assert d["dpu_subgraphs"] == 1
    assert (d["input_fix_point"], d["output_fix_point"]) == (7, 5)
    assert d["dpu_fingerprint"] == "0x101000056010407"
    assert [s["device"] for s in d["subgraphs"]] == ["USER", "DPU", "CPU"]


@pytest.mark.parametrize("n", [0, 2])
def test_dpu_subgraph_count_must_be_one(vitis, tiny_model_onnx, tmp_path, n):
    xir, _ = vitis
    xm = xir.write_fake_xmodel(str(tmp_path / "s.xmodel"), tiny_model_onnx, in_fix=7, out_fix=6,
                               dpu_subgraphs=n)
    with pytest.raises(BackendError, match="has %d DPU subgraphs.*exactly 1" % n):
        load_backend(xm)


def test_not_an_xmodel(vitis, tmp_path):
    p = tmp_path / "bad.xmodel"
    p.write_text("garbage")
    with pytest.raises(BackendError, match="bad.xmodel is not a loadable xmodel"):
        load_backend(str(p))


def test_wrong_tensor_shape(vitis, tiny_model_onnx, tmp_path):
    xir, _ = vitis
    xm = xir.write_fake_xmodel(str(tmp_path / "o.xmodel"), tiny_model_onnx, in_fix=7, out_fix=6,
                               out_dims=[1, 68 * 2])
    with pytest.raises(BackendError, match="expected 196 values per face"):
        load_backend(xm)


def test_missing_runtime_names_the_board_image(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_vitis(name, *a, **k):
        if name in ("xir", "vart"):
            raise ImportError("No module named %r" % name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_vitis)
    p = tmp_path / "net.xmodel"
    p.write_text("{}")
    with pytest.raises(BackendError, match="only on the KV260 board image / a Vitis AI runtime"):
        load_backend(str(p))


def test_spec_defaults():
    assert DEFAULT_SPEC.input_mean == 128.0  # the lossless fix_point-7 input relies on this
