"""FP32 exports (TFLite, ONNX) and the parity check every export gets.

Parity runs the exported file through the runtime's own backend (runtime.backends:
the code that serves it) on real crops and compares with the Keras model on the same
crops: max |diff| in crop-normalised units, printed and stored in run/parity.json.
"""
import time
from typing import Any, Dict, Optional

import numpy as np

from runtime.backends import load_backend
from runtime.preprocess import DEFAULT_SPEC, CropSpec, normalize_input


def keras_predict(model, crops: np.ndarray, spec: CropSpec = DEFAULT_SPEC, batch: int = 32) -> np.ndarray:
    """(N, 98, 2) landmarks of a Keras model (first output) through a traced tf.function."""
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False))
    x = normalize_input(crops, spec)
    outs = []
    for i in range(0, len(x), batch):
        y = fn(tf.constant(x[i:i + batch]))
        outs.append((y[0] if isinstance(y, (list, tuple)) else y).numpy())
    return np.concatenate(outs).reshape(len(x), -1, 2)


def parity(path: str, reference: np.ndarray, crops: np.ndarray, spec: CropSpec = DEFAULT_SPEC,
           tolerance: Optional[float] = None) -> Dict[str, Any]:
    """Compare `path` served by its runtime backend with `reference` (N, 98, 2) on `crops`."""
    be = load_backend(path, spec=spec)
    try:
        pred = be.infer(crops)
    finally:
        be.close()
    d = np.abs(pred.astype(np.float64) - reference.astype(np.float64))
    out = {"file": path, "backend": be.name, "crops": int(len(crops)), "max_abs_diff": float(d.max()),
           "mean_abs_diff": float(d.mean()), "max_abs_diff_px": float(d.max() * spec.size)}
    if tolerance is not None:
        out.update(tolerance=float(tolerance), ok=bool(d.max() <= tolerance))
    return out


def tflite_fp32(model) -> bytes:
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def onnx_model(model, opset: int, spec: CropSpec = DEFAULT_SPEC):
    """ONNX ModelProto of a Keras model: fixed opset, dynamic batch, NHWC float input "image"."""
    import tensorflow as tf
    import tf2onnx

    sig = [tf.TensorSpec((None, spec.size, spec.size, 1), tf.float32, name="image")]
    fn = tf.function(lambda x: model(x, training=False))
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=sig, opset=opset)
    return proto


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def ort_kernel_check(path: str, crops: np.ndarray, spec: CropSpec = DEFAULT_SPEC) -> Dict[str, Any]:
    """ONNX Runtime's int8 kernels vs the same QDQ graph computed in float (no graph fusion).

    On AVX2 without VNNI, U8S8 kernels sum pairs of u8*s8 products in int16 and can
    saturate with full 8-bit weights (docs/stack-notes.md); this difference shows it.
    """
    import onnxruntime as ort

    be = load_backend(path, spec=spec)
    try:
        fused = be.infer(crops)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        x = normalize_input(crops, spec)
        if getattr(be, "nchw", False):
            x = x.transpose(0, 3, 1, 2)
        ref = sess.run(None, {sess.get_inputs()[0].name: x})[0].reshape(fused.shape)
    finally:
        be.close()
    return {"kernel_vs_qdq_float_max_abs_diff": float(np.abs(fused - ref).max()),
            "kernel_vs_qdq_float_mean_abs_diff": float(np.abs(fused - ref).mean())}
