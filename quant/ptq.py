"""Post-training quantization: TFLite full-integer INT8 and ONNX Runtime static QDQ.

All calibrators see the same real crops (quant.calibration.calibration_crops), normalised
by the crop contract exactly as the runtime does.
  * TFLite: the converter's own calibration (min/max per tensor), full-integer ops only
    (TFLITE_BUILTINS_INT8), int8 or float I/O; per-tensor or per-channel weight scales.
  * pof2: the DPU-like fake-quant Keras model (quant.scheme "pof2", MIN_MSE positions from
    the same crops) converted to TFLite; its tensors carry power-of-two scales.
  * ONNX: onnxruntime.quantization.quantize_static from the FP32 ONNX (given the TFLite PTQ's
    activation ranges as TensorQuantOverrides, quant.onnx_ranges), QDQ format, U8
    activations and 7-bit S8 weights (U8S8 reduce_range), per tensor and per channel: this
    CPU's AVX2 U8S8 kernels saturate int16 pair sums with full-range int8 weights
    (docs/stack-notes.md), and U8U8 (8 bits, no saturation) runs a slow generic path
    (quant/config.py has the numbers; on AVX-512 VNNI both are exact, and U8S8 is
    still the fast one). `kernel_vs_qdq_float` in parity.json compares ORT's
    integer kernels with the same graph computed in float.
"""
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

from quant.config import GRANULARITIES, IO_TYPES, PtqConfig
from runtime.preprocess import DEFAULT_SPEC, CropSpec, normalize_input


def _representative(crops: np.ndarray, spec: CropSpec):
    x = normalize_input(crops, spec)

    def gen() -> Iterator[List[np.ndarray]]:
        for i in range(len(x)):
            yield [x[i:i + 1]]

    return gen


def _converter(model, io: str, int8_only: bool = True):
    import tensorflow as tf

    if io not in IO_TYPES:
        raise ValueError("io must be one of %s, got %r" % (", ".join(IO_TYPES), io))
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if int8_only:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io == "int8":
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv


def tflite_int8(model, crops: np.ndarray, spec: CropSpec = DEFAULT_SPEC, io: str = "int8",
                granularity: str = "per-tensor") -> bytes:
    """Full-integer TFLite of a float Keras model calibrated on `crops` (uint8 (N, 112, 112))."""
    if granularity not in GRANULARITIES:
        raise ValueError("granularity must be one of %s, got %r" % (", ".join(GRANULARITIES), granularity))
    conv = _converter(model, io)
    conv.representative_dataset = _representative(crops, spec)
    conv._experimental_disable_per_channel = granularity == "per-tensor"
    return conv.convert()


def tflite_from_fake_quant(qmodel, io: str = "int8") -> bytes:
    """Full-integer TFLite of a fake-quant (QAT or pof2) Keras model: scales come from its quantizers.

    No representative dataset: every tensor's range is in the graph. (Asking for
    TFLITE_BUILTINS_INT8 would make the converter demand one; `check_full_integer`
    verifies the result instead.)"""
    return _converter(qmodel, io, int8_only=False).convert()


class _Reader:
    """onnxruntime CalibrationDataReader over normalised crops (NHWC or NCHW as the model wants).

    ORT's histogram calibrators stack per-batch outputs, so every batch has the same size:
    the largest divisor of N not above `batch`."""

    def __init__(self, model_path: str, crops: np.ndarray, spec: CropSpec, batch: int = 32):
        import onnx

        from runtime.backends.onnx_backend import wants_nchw

        m = onnx.load(model_path, load_external_data=False)
        inp = m.graph.input[0]
        dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        self.name = inp.name
        x = normalize_input(crops, spec)
        if wants_nchw(dims):
            x = x.transpose(0, 3, 1, 2)
        batch = max(d for d in range(1, min(batch, len(x)) + 1) if len(x) % d == 0)
        self.batches = [x[i:i + batch] for i in range(0, len(x), batch)]
        self.i = 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {self.name: self.batches[self.i - 1]}

    def rewind(self):
        self.i = 0


def ort_static(fp32_onnx: str, out_path: str, crops: np.ndarray, spec: CropSpec = DEFAULT_SPEC,
               per_channel: bool = False, reduce_range: bool = PtqConfig.ort_reduce_range,
               method: str = PtqConfig.ort_calibrate_method, percentile: float = PtqConfig.act_percentile,
               weight_type: str = PtqConfig.ort_weight_type,
               overrides: Optional[Dict[str, list]] = None) -> Dict[str, Any]:
    """QDQ INT8 ONNX from the FP32 ONNX (written atomically to out_path); returns the settings used.

    `overrides`: ORT TensorQuantOverrides (quant.onnx_ranges) -- ranges found elsewhere win over
    ORT's calibration of those tensors."""
    import os
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from quant.onnx_save import save_onnx

    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(out_path))) as tmp:
        pre, quantized = os.path.join(tmp, "pre.onnx"), os.path.join(tmp, "q.onnx")
        quant_pre_process(fp32_onnx, pre, skip_symbolic_shape=True)
        quantize_static(pre, quantized, _Reader(pre, crops, spec), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QUInt8 if weight_type == "uint8" else QuantType.QInt8,
                        per_channel=per_channel, reduce_range=reduce_range,
                        calibrate_method=getattr(CalibrationMethod, method),
                        # ORT cuts (100 - p) / 2 % on each side: 100 - 2 (100 - p) cuts what
                        # quant.ranges cuts (the p-th percentile above, 100 - p below)
                        extra_options={"CalibPercentile": 100.0 - 2.0 * (100.0 - percentile),
                                       "CalibTensorRangeSymmetric": False,
                                       # flush collected outputs every 4 batches: bounded memory
                                       "CalibMaxIntermediateOutputs": 4,
                                       "TensorQuantOverrides": overrides or {}})
        save_onnx(onnx.load(quantized), out_path)
    bits = "7-bit" if reduce_range else "8-bit"
    return {"format": "QDQ", "activations": "uint8", "weights": "%s %s" % (weight_type, bits),
            "per_channel": per_channel, "reduce_range": reduce_range,
            "calibration": ("ranges given for %d tensors (quant.onnx_ranges), ORT's calibrator for any "
                            "other: " % len(overrides) if overrides else "")
            + method + (" %g" % percentile if method == "Percentile" else "")}
