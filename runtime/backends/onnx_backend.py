"""ONNX Runtime backend (flm's FP32/INT8 ONNX exports).

Thread count is configurable (`threads`): in the live pipeline one intra-op thread usually
wins, because the other core decodes video and draws the overlay."""
from typing import Any, Dict, Optional, Sequence

import numpy as np

from runtime.backends.base import Backend, BackendError, check_output_size, input_lut
from runtime.preprocess import DEFAULT_SPEC, CropSpec


def wants_nchw(shape: Sequence[Any]) -> bool:
    """True when a 4-D one-channel input shape is (N, 1, H, W) rather than (N, H, W, 1)."""
    return len(shape) == 4 and shape[1] == 1 and shape[3] != 1


def _static(dim: Any) -> Optional[int]:
    return dim if isinstance(dim, int) and dim > 0 else None


def make_session(path: str, threads: Optional[int], who: str, profile_prefix: Optional[str] = None):
    """One ONNX Runtime CPU session, loaded once; `who` names the caller in import errors. With
    `profile_prefix` ORT records per-node times (scripts/profile_onnx_ops.py) under the same options."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise BackendError("%s needs onnxruntime: pip install onnxruntime (%s)" % (who, e)) from e
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    try:
        return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise BackendError("%s is not a loadable ONNX model: %s" % (path, e)) from e


class OnnxBackend(Backend):
    name = "onnx"

    def __init__(self, path: str, spec: CropSpec = DEFAULT_SPEC, threads: Optional[int] = None) -> None:
        super().__init__(path, spec)
        self.session = make_session(path, threads, "the onnx backend")
        inp = self.session.get_inputs()[0]
        out = self.session.get_outputs()[0]
        self.input_name = inp.name
        self.output_name = out.name
        shape = list(inp.shape)
        if len(shape) != 4 or 1 not in (shape[1], shape[3]):
            raise BackendError("%s: input %s has shape %s; expected (N, %d, %d, 1) or (N, 1, %d, %d)"
                               % (path, inp.name, shape, spec.size, spec.size, spec.size, spec.size))
        if inp.type != "tensor(float)":
            raise BackendError("%s: input %s is %s; flm models take the float input of the crop contract"
                               % (path, inp.name, inp.type))
        self.nchw = wants_nchw(shape)
        self._fixed_batch = _static(shape[0])
        dims = [_static(d) for d in out.shape[1:]]
        check_output_size(int(np.prod(dims)) if dims and all(dims) else None, path, "output %s" % out.name)
        self.input_type = inp.type
        self.threads = threads
        self._lut = input_lut(spec)
        self._bufs = {}  # type: Dict[int, np.ndarray]

    @property
    def batch_size(self) -> Optional[int]:
        return self._fixed_batch

    def info(self) -> Dict[str, Any]:
        d = super().info()
        d.update(input=self.input_name, input_type=self.input_type, threads=self.threads or "default")
        return d

    def _input(self, crops_u8: np.ndarray) -> np.ndarray:
        n = len(crops_u8)
        buf = self._bufs.get(n)
        if buf is None:  # one buffer per batch size seen: no per-call allocation after warm-up
            shape = (n, 1) + crops_u8.shape[1:] if self.nchw else crops_u8.shape + (1,)
            buf = self._bufs[n] = np.empty(shape, np.float32)
        np.take(self._lut, crops_u8, out=buf.reshape(crops_u8.shape))
        return buf

    def _run(self, crops_u8: np.ndarray) -> np.ndarray:
        if self._fixed_batch and len(crops_u8) != self._fixed_batch:
            return np.concatenate([self._run_fixed(crops_u8[i:i + self._fixed_batch])
                                   for i in range(0, len(crops_u8), self._fixed_batch)])
        return self.session.run([self.output_name], {self.input_name: self._input(crops_u8)})[0]

    def _run_fixed(self, chunk: np.ndarray) -> np.ndarray:
        k, b = len(chunk), self._fixed_batch
        if k < b:
            chunk = np.concatenate([chunk, np.zeros((b - k,) + chunk.shape[1:], np.uint8)])
        y = self.session.run([self.output_name], {self.input_name: self._input(chunk)})[0]
        return y.reshape(b, -1)[:k]
