"""VART backend: run a compiled .xmodel on the KV260 DPU (Vitis AI runtime, board only).

Follows the Vitis AI examples (docs/vitis-ai.md section 6): deserialize the graph with XIR,
keep the single DPU subgraph, create one `vart.Runner` per worker thread, and exchange
int8 buffers scaled by each tensor's `fix_point` (value = int8 * 2**-fix_point).

Input quantisation: the float model input is (u8 - mean) * scale (the crop contract);
the DPU wants round_half_up(x * 2**fix_point) clipped to int8, the DPU's own rounding
mode for activations. Because the input is 8-bit already, the mapping u8 -> int8 is a
256-entry lookup table computed once (at the usual fix_point 7 it is exactly u8 - 128).
"""
import threading
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from runtime.backends.base import Backend, BackendError
from runtime.landmarks import NUM_POINTS
from runtime.preprocess import DEFAULT_SPEC, CropSpec

_MISSING = ("the vart backend needs the Vitis AI runtime (python modules `xir` and `vart`), which exists "
            "only on the KV260 board image / a Vitis AI runtime install, not on PyPI (%s). On a host, "
            "run the ONNX or TFLite export instead (--backend onnx|tflite).")


def import_vitis() -> Tuple[Any, Any]:
    """Import (xir, vart) or raise BackendError saying where they come from."""
    try:
        import vart
        import xir
    except ImportError as e:
        raise BackendError(_MISSING % e) from e
    return xir, vart


def _device(sub: Any) -> str:
    return str(sub.get_attr("device")) if sub.has_attr("device") else "?"


def dpu_subgraphs(graph: Any) -> List[Any]:
    """Child subgraphs mapped to the DPU, in topological order."""
    subs = graph.get_root_subgraph().toposort_child_subgraph()
    return [s for s in subs if s.has_attr("device") and str(s.get_attr("device")).upper() == "DPU"]


def load_dpu_subgraph(path: str) -> Tuple[Any, Any]:
    """Deserialize an xmodel and return (graph, its single DPU subgraph); clear errors otherwise."""
    xir, _ = import_vitis()
    try:
        graph = xir.Graph.deserialize(path)
    except Exception as e:  # xir raises its own (C++-mapped) exception types
        raise BackendError("%s is not a loadable xmodel (xir.Graph.deserialize failed: %s)"
                           % (path, e)) from e
    subs = graph.get_root_subgraph().toposort_child_subgraph()
    dpu = dpu_subgraphs(graph)
    if len(dpu) != 1:
        devices = ", ".join("%s:%s" % (getattr(s, "get_name", lambda: "?")(), _device(s)) for s in subs)
        raise BackendError(
            "%s has %d DPU subgraphs (subgraphs: %s); flm needs exactly 1. Recompile so the whole "
            "network maps to the DPU (`flm vitis check` lists the layers that split it, e.g. "
            "Flatten->Dense or non-square pooling)." % (path, len(dpu), devices or "none"))
    return graph, dpu[0]


def _attr(obj: Any, name: str) -> Optional[Any]:
    try:
        return obj.get_attr(name) if obj.has_attr(name) else None
    except Exception:  # attribute of a type the python binding cannot convert
        return None


def _fix_point(tensor: Any, what: str, path: str) -> int:
    fp = _attr(tensor, "fix_point")
    if fp is None:
        raise BackendError("%s: %s tensor %s has no fix_point attribute (not a quantized DPU tensor?)"
                           % (path, what, getattr(tensor, "name", "?")))
    return int(fp)


class _Worker:
    """One runner and its preallocated int8 buffers: owned by exactly one thread."""

    def __init__(self, vart: Any, sub: Any) -> None:
        self.runner = vart.Runner.create_runner(sub, "run")
        self.it = self.runner.get_input_tensors()[0]
        self.ot = self.runner.get_output_tensors()[0]
        self.in_buf = np.empty(tuple(self.it.dims), np.int8, order="C")
        self.out_buf = np.empty(tuple(self.ot.dims), np.int8, order="C")


class VartBackend(Backend):
    """DPU backend; `batch_size` is the compiled batch (dims[0]), smaller calls are padded."""

    name = "vart"

    def __init__(self, path: str, spec: CropSpec = DEFAULT_SPEC, threads: Optional[int] = None) -> None:
        super().__init__(path, spec)
        self._xir, self._vart = import_vitis()
        self.graph, self.subgraph = load_dpu_subgraph(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._workers = []  # type: List[_Worker]
        w = self._worker()
        it, ot = w.it, w.ot
        dims_in, dims_out = [int(d) for d in it.dims], [int(d) for d in ot.dims]
        if len(dims_in) != 4 or dims_in[1:] != [spec.size, spec.size, 1]:
            raise BackendError("%s: DPU input tensor %s has dims %s; expected [batch, %d, %d, 1] (NHWC "
                               "grayscale crop)" % (path, it.name, dims_in, spec.size, spec.size))
        if int(np.prod(dims_out[1:])) != 2 * NUM_POINTS:
            raise BackendError("%s: DPU output tensor %s has dims %s; expected %d values per face"
                               % (path, ot.name, dims_out, 2 * NUM_POINTS))
        for t, what in ((it, "input"), (ot, "output")):
            dtype = str(getattr(t, "dtype", "xint8")).lower()
            if "int8" not in dtype:
                raise BackendError("%s: DPU %s tensor %s is %s; flm exchanges int8 buffers (xint8)"
                                   % (path, what, t.name, dtype))
        self.in_fix = _fix_point(it, "input", path)
        self.out_fix = _fix_point(ot, "output", path)
        self._batch = dims_in[0]
        self.out_scale = np.float32(2.0 ** -self.out_fix)
        self.lut = input_lut(self.in_fix, spec)

    # one runner per thread (VART runners are not shared between threads)
    def _worker(self) -> _Worker:
        w = getattr(self._local, "worker", None)
        if w is None:
            w = _Worker(self._vart, self.subgraph)
            self._local.worker = w
            with self._lock:
                self._workers.append(w)
        return w

    @property
    def batch_size(self) -> Optional[int]:
        return self._batch

    @property
    def runners(self) -> int:
        """Runners created so far (one per thread that called infer)."""
        return len(self._workers)

    def info(self) -> Dict[str, Any]:
        d = super().info()
        w = self._worker()
        d.update(subgraph=self.subgraph.get_name() if hasattr(self.subgraph, "get_name") else "?",
                 input=w.it.name, input_dims=list(w.it.dims), input_fix_point=self.in_fix,
                 output=w.ot.name, output_dims=list(w.ot.dims), output_fix_point=self.out_fix,
                 batch=self._batch)
        for key in ("dpu_fingerprint", "dpu_name", "device_core_id"):
            v = _attr(self.subgraph, key)
            if v is not None:
                d[key] = v if isinstance(v, (int, str)) else str(v)
        return d

    def _run(self, crops_u8: np.ndarray) -> np.ndarray:
        w = self._worker()
        n, b = len(crops_u8), self._batch
        out = np.empty((n, 2 * NUM_POINTS), np.float32)
        flat_in = w.in_buf.reshape(b, self.spec.size, self.spec.size)
        flat_out = w.out_buf.reshape(b, -1)
        for start in range(0, n, b):
            k = min(b, n - start)
            np.take(self.lut, crops_u8[start:start + k], out=flat_in[:k])
            if k < b:
                flat_in[k:] = 0  # pad a short last batch; its outputs are discarded
            job = w.runner.execute_async([w.in_buf], [w.out_buf])
            w.runner.wait(job)
            np.multiply(flat_out[:k], self.out_scale, out=out[start:start + k])
        return out

    def close(self) -> None:
        with self._lock:
            self._workers = []
        self._local = threading.local()


def input_lut(fix_point: int, spec: CropSpec = DEFAULT_SPEC) -> np.ndarray:
    """uint8 pixel -> DPU int8 input: clip(round_half_up((u8 - mean) * scale * 2**fix_point))."""
    u8 = np.arange(256, dtype=np.float64)
    x = (u8 - spec.input_mean) * spec.input_scale * (2.0 ** fix_point)
    return np.clip(np.floor(x + 0.5), -128, 127).astype(np.int8)


def describe_xmodel(path: str) -> Dict[str, Any]:
    """Subgraphs (name, device) plus the DPU subgraph's tensors and fix points, for `flm-dpu info`."""
    xir, vart = import_vitis()
    try:
        graph = xir.Graph.deserialize(path)
    except Exception as e:
        raise BackendError("%s is not a loadable xmodel (xir.Graph.deserialize failed: %s)"
                           % (path, e)) from e
    subs = graph.get_root_subgraph().toposort_child_subgraph()
    out = {"path": path, "subgraphs": [{"name": s.get_name() if hasattr(s, "get_name") else "?",
                                        "device": _device(s)} for s in subs]}  # type: Dict[str, Any]
    dpu = dpu_subgraphs(graph)
    out["dpu_subgraphs"] = len(dpu)
    if len(dpu) == 1:
        b = VartBackend(path)
        out.update({k: v for k, v in b.info().items() if k not in ("backend", "path")})
        b.close()
    return out
