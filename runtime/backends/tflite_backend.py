"""TFLite backend: LiteRT (`ai_edge_litert`) or tflite-runtime when present, TF's
interpreter otherwise. Handles float and int8/uint8 input/output tensors."""
from typing import Any, Dict, Optional

import numpy as np

from runtime.backends.base import Backend, BackendError
from runtime.preprocess import DEFAULT_SPEC, CropSpec


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter
    except ImportError:
        pass
    try:
        import tensorflow as tf
        return tf.lite.Interpreter
    except ImportError:
        raise BackendError("the tflite backend needs ai-edge-litert, tflite-runtime or tensorflow") from None


class TfliteBackend(Backend):
    name = "tflite"

    def __init__(self, path: str, spec: CropSpec = DEFAULT_SPEC, threads: Optional[int] = None) -> None:
        super().__init__(path, spec)
        try:
            self.interp = _interpreter_class()(model_path=path, num_threads=threads or 2)
        except ValueError as e:
            raise BackendError("%s is not a loadable TFLite model: %s" % (path, e)) from e
        self._batch = None  # type: Optional[int]
        self._alloc(1)

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
        d.update(input_dtype=str(np.dtype(self.d_in["dtype"])),
                 output_dtype=str(np.dtype(self.d_out["dtype"])))
        return d

    def _run(self, crops_u8: np.ndarray) -> np.ndarray:
        n = len(crops_u8)
        if n != self._batch:
            self._alloc(n)
        x = (crops_u8.astype(np.float32) - self.spec.input_mean) * self.spec.input_scale
        if self.d_in["dtype"] == np.float32:
            self._buf[..., 0] = x
        else:
            info = np.iinfo(self.d_in["dtype"])
            q = np.round(x / self.in_scale + self.in_zero)
            self._buf[..., 0] = np.clip(q, info.min, info.max)
        self.interp.set_tensor(self.d_in["index"], self._buf)
        self.interp.invoke()
        y = self.interp.get_tensor(self.d_out["index"])
        if self.d_out["dtype"] != np.float32:
            y = (y.astype(np.float32) - self.out_zero) * self.out_scale
        return y
