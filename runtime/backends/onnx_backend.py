"""ONNX Runtime backend (flm's FP32/INT8 ONNX exports)."""
from typing import Any, Dict, Optional

import numpy as np

from runtime.backends.base import Backend, BackendError
from runtime.preprocess import DEFAULT_SPEC, CropSpec


class OnnxBackend(Backend):
    name = "onnx"

    def __init__(self, path: str, spec: CropSpec = DEFAULT_SPEC, threads: Optional[int] = None) -> None:
        super().__init__(path, spec)
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendError("the onnx backend needs onnxruntime: pip install onnxruntime (%s)" % e) from e
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise BackendError("%s is not a loadable ONNX model: %s" % (path, e)) from e
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        shape = list(inp.shape)
        self.nchw = len(shape) == 4 and shape[1] == 1 and shape[3] != 1
        self._fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.input_type = inp.type
        self._buf = None  # type: Optional[np.ndarray]

    @property
    def batch_size(self) -> Optional[int]:
        return self._fixed_batch

    def info(self) -> Dict[str, Any]:
        d = super().info()
        d.update(input=self.input_name, input_type=self.input_type, threads=self.session.get_session_options()
                 .intra_op_num_threads)
        return d

    def _input(self, crops_u8: np.ndarray) -> np.ndarray:
        n = len(crops_u8)
        shape = (n, 1) + crops_u8.shape[1:] if self.nchw else crops_u8.shape + (1,)
        if self._buf is None or self._buf.shape != shape:
            self._buf = np.empty(shape, np.float32)
        src = crops_u8[:, None] if self.nchw else crops_u8[..., None]
        np.subtract(src, self.spec.input_mean, out=self._buf, casting="unsafe")
        self._buf *= self.spec.input_scale
        return self._buf

    def _run(self, crops_u8: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: self._input(crops_u8)})[0]
