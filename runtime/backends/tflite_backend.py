"""TFLite backend: LiteRT (`ai_edge_litert`) or tflite-runtime when present, TF's
interpreter otherwise (TF is imported only then). Handles float and int8/uint8 I/O.

uint8 crop -> model input goes through a 256-entry lookup table (float, or the int8
quantisation of the float input), so a call allocates nothing but the output copy."""
from typing import Any, Dict, Optional, Tuple

import numpy as np

from runtime.backends.base import Backend, BackendError, check_output_size, input_lut
from runtime.preprocess import DEFAULT_SPEC, CropSpec


def interpreter_class() -> Tuple[Any, str]:
    """(Interpreter class, provider name): LiteRT, then tflite-runtime, then TensorFlow."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter, "tflite_runtime"
    except ImportError:
        pass
    try:
        import tensorflow as tf
        return tf.lite.Interpreter, "tensorflow"
    except ImportError:
        raise BackendError("the tflite backend needs ai-edge-litert (pip install ai-edge-litert), "
                           "tflite-runtime or tensorflow") from None


class TfliteBackend(Backend):
    name = "tflite"

    def __init__(self, path: str, spec: CropSpec = DEFAULT_SPEC, threads: Optional[int] = None) -> None:
        super().__init__(path, spec)
        cls, self.provider = interpreter_class()
        try:
            self.interp = cls(model_path=path, num_threads=threads or 2)
        except (ValueError, RuntimeError) as e:
            raise BackendError("%s is not a loadable TFLite model: %s" % (path, e)) from e
        self.threads = threads or 2
        d_in = self.interp.get_input_details()[0]
        shape = list(d_in["shape"])
        if len(shape) != 4 or shape[1:] != [spec.size, spec.size, 1]:
            raise BackendError("%s: input %s has shape %s; expected (N, %d, %d, 1)"
                               % (path, d_in["name"], shape, spec.size, spec.size))
        d_out = self.interp.get_output_details()[0]
        check_output_size(int(np.prod(d_out["shape"][1:])), path, "output %s" % d_out["name"])
        self._batch = None  # type: Optional[int]
        self._alloc(1)
        lut = input_lut(spec)
        if self.d_in["dtype"] == np.float32:
            self._lut = lut
        else:
            info = np.iinfo(self.d_in["dtype"])
            q = np.round(lut.astype(np.float64) / self.in_scale + self.in_zero)
            self._lut = np.clip(q, info.min, info.max).astype(self.d_in["dtype"])

    def _alloc(self, n: int) -> None:
        d_in = self.interp.get_input_details()[0]
        if self._batch != n:
            self.interp.resize_tensor_input(d_in["index"], [n, self.spec.size, self.spec.size, 1])
            self.interp.allocate_tensors()
            self._batch = n
        self.d_in = self.interp.get_input_details()[0]
        self.d_out = self.interp.get_output_details()[0]
        self.in_scale, self.in_zero = self.d_in["quantization"]
        self.out_scale, self.out_zero = self.d_out["quantization"]
        self._buf = np.empty((n, self.spec.size, self.spec.size, 1), self.d_in["dtype"])

    def info(self) -> Dict[str, Any]:
        d = super().info()
        d.update(provider=self.provider, threads=self.threads, input_dtype=str(np.dtype(self.d_in["dtype"])),
                 output_dtype=str(np.dtype(self.d_out["dtype"])))
        return d

    def _run(self, crops_u8: np.ndarray) -> np.ndarray:
        n = len(crops_u8)
        if n != self._batch:
            self._alloc(n)
        np.take(self._lut, crops_u8, out=self._buf.reshape(crops_u8.shape))
        self.interp.set_tensor(self.d_in["index"], self._buf)
        self.interp.invoke()
        y = self.interp.get_tensor(self.d_out["index"])
        if self.d_out["dtype"] != np.float32:
            y = (y.astype(np.float32) - self.out_zero) * self.out_scale
        return y
