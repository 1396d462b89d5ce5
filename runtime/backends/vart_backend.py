"""VART backend: run a compiled .xmodel on the KV260 DPU (Vitis AI runtime, board only).

Follows the Vitis AI examples (docs/vitis-ai.md section 6): deserialize the graph with XIR,
keep the single DPU subgraph, create one `vart.Runner` per worker thread, and exchange
int8 buffers scaled by each tensor's `fix_point` (value = int8 * 2**-fix_point).

Input quantisation: the float model input is (u8 - mean) * scale (the crop contract);
the DPU wants round_half_up(x * 2**fix_point) clipped to int8, the DPU's own rounding
mode for activations. Because the input is 8-bit already, the mapping u8 -> int8 is a
256-entry lookup table computed once (at the usual fix_point 7 it is exactly u8 - 128).

Loading order (runtime/xmodel.py): the xmodel is read with XIR and checked against the crop contract
first (one DPU subgraph, [batch, 112, 112, 1] int8 in, 196 values out), then `vart` is imported, so
a model flm cannot feed, or a host without the DPU runtime, is refused with what the model expects
before a runner is created or a frame read. The VART runner itself has a test stand-in only
(tests/runtime/fake_vitis/vart.py): no public VART runner computes a DPU subgraph without the hardware.
"""
import logging
import os
import threading
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from runtime.backends.base import Backend, BackendError
from runtime.bundle import COMPILE_RECORD
from runtime.landmarks import NUM_POINTS
from runtime.preprocess import CROP_CENTRE, DEFAULT_SPEC, CropSpec
from runtime.xmodel import (
    XIR_HINT,
    check_runnable,
    deserialize,
    dpu_subgraph,
    inspect_graph,
    load_xir,
    summary,
)

log = logging.getLogger(__name__)
_MISSING = ("the vart backend needs the Vitis AI runtime (python modules `xir` and `vart`), which exists "
            "only on the KV260 board image / a Vitis AI runtime install, not on PyPI (%s). On a host, "
            "run the ONNX or TFLite export instead (--backend onnx|tflite).")
_NO_DPU = ("%s fits flm (%s), but this machine has no DPU runtime: `import vart` failed (%s). VART and the "
           "DPU exist only on the KV260 board image; on a host run the ONNX or TFLite export of the same "
           "run instead (runs/NAME/ptq_int8.onnx, or a bundle directory, which picks ONNX/TFLite here).")


def import_vitis() -> Tuple[Any, Any]:
    """Import (xir, vart) or raise BackendError saying where they come from."""
    try:
        import vart
        import xir
    except ImportError as e:
        raise BackendError(_MISSING % e) from e
    return xir, vart


def _import_xir() -> Any:
    try:
        return load_xir()
    except BackendError as e:
        raise BackendError(_MISSING % ("%s; %s" % (e.__cause__, XIR_HINT))) from e


def load_dpu_subgraph(path: str, spec: CropSpec = DEFAULT_SPEC, xir: Any = None) -> Tuple[Any, Any, Any]:
    """(graph, its single DPU subgraph, XmodelInfo) of an xmodel flm can run; otherwise an XmodelError
    saying what the model expects and what flm needs (before any runner or frame)."""
    graph = deserialize(path, xir if xir is not None else _import_xir())
    info = inspect_graph(graph, path)
    check_runnable(info, spec)
    return graph, dpu_subgraph(graph, path), info


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

    def __init__(self, path: str, spec: CropSpec = DEFAULT_SPEC, threads: Optional[int] = None,
                 output_offset: Optional[float] = None) -> None:
        super().__init__(path, spec)
        # the model first (XIR): a model flm cannot feed is refused whatever the machine
        self.graph, self.subgraph, self.xmodel = load_dpu_subgraph(path, spec)
        try:
            import vart
        except ImportError as e:
            raise BackendError(_NO_DPU % (path, summary(self.xmodel), e)) from e
        # what the xmodel's output lacks (its head emits landmarks - offset): given, or the record beside it
        if output_offset is None:
            offset, self.offset_source = recorded_output_offset(path)
            if self.offset_source is None:
                log.warning("%s: no compile.json or bundle meta.json beside it, so its output is taken "
                            "as the landmarks themselves; flm's PTQ xmodels emit landmarks - %g (run them "
                            "from their bundle or compile directory)", path, CROP_CENTRE)
        else:
            offset, self.offset_source = output_offset, "given"
        self.out_offset = np.float32(offset)
        self._vart = vart
        self._local = threading.local()
        self._lock = threading.Lock()
        self._workers: List[_Worker] = []
        w = self._worker()
        it, ot = w.it, w.ot
        dims_in, dims_out = [int(d) for d in it.dims], [int(d) for d in ot.dims]
        if len(dims_in) != 4 or dims_in[1:] != [spec.size, spec.size, 1]:
            raise BackendError("%s: the DPU runner's input tensor %s has dims %s; expected [batch, %d, %d, "
                               "1] (NHWC grayscale crop)" % (path, it.name, dims_in, spec.size, spec.size))
        if int(np.prod(dims_out[1:])) != 2 * NUM_POINTS:
            raise BackendError("%s: the DPU runner's output tensor %s has dims %s; expected %d values per "
                               "face" % (path, ot.name, dims_out, 2 * NUM_POINTS))
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
        d.update(subgraph=self.subgraph.get_name(),
                 input=w.it.name, input_dims=list(w.it.dims), input_fix_point=self.in_fix,
                 output=w.ot.name, output_dims=list(w.ot.dims), output_fix_point=self.out_fix,
                 output_offset=float(self.out_offset), output_offset_source=self.offset_source,
                 batch=self._batch)
        s = self.xmodel.dpu[0]
        d.update(dpu_fingerprint=s.fingerprint_hex, dpu_name=s.dpu_name)
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
            if self.out_offset:
                out[start:start + k] += self.out_offset
        return out

    def close(self) -> None:
        with self._lock:
            self._workers = []
        self._local = threading.local()


def recorded_output_offset(path: str) -> Tuple[float, Optional[str]]:
    """(what to add to an xmodel's dequantized output, the record that says so) from the record beside
    it: a bundle's meta.json ("output": {"dpu_offset"}) or the compile.json `flm vitis compile` writes
    next to the xmodel ("output_offset"). flm's PTQ xmodels emit landmarks minus the crop centre
    (vitis.config VitisConfig.output_offset), so a symmetric int8 output grid spends no codes on negative
    coordinates; an xmodel with no record beside it is taken as emitting the landmarks: (0.0, None)."""
    from runtime.bundle import META, read_json_object

    folder = os.path.dirname(os.path.abspath(path))
    meta = os.path.join(folder, META)
    if os.path.isfile(meta):
        value = (read_json_object(meta).get("output") or {}).get("dpu_offset")
        if value is not None:
            return float(value), meta
    record = os.path.join(folder, COMPILE_RECORD)
    if os.path.isfile(record):
        rec = read_json_object(record)
        if os.path.basename(str(rec.get("xmodel", ""))) == os.path.basename(path):
            return float(rec.get("output_offset") or 0.0), record
    return 0.0, None


def input_lut(fix_point: int, spec: CropSpec = DEFAULT_SPEC) -> np.ndarray:
    """uint8 pixel -> DPU int8 input: clip(round_half_up((u8 - mean) * scale * 2**fix_point))."""
    u8 = np.arange(256, dtype=np.float64)
    x = (u8 - spec.input_mean) * spec.input_scale * (2.0 ** fix_point)
    return np.clip(np.floor(x + 0.5), -128, 127).astype(np.int8)


def describe_xmodel(path: str, spec: CropSpec = DEFAULT_SPEC) -> Dict[str, Any]:
    """What `flm-dpu info` prints for an xmodel, read with XIR alone (no runner, no DPU needed): every
    subgraph with its device, and for a single DPU subgraph its name, DPU, fingerprint and I/O tensors
    (names, dims, fix points) as XIR reports them; "text" is the same for people, "problems" lists why
    flm cannot run it ([] if it can)."""
    from runtime.xmodel import contract_problems, format_info, read_xmodel, xir_origin

    xir = _import_xir()
    info = read_xmodel(path, xir)
    out = info.to_dict()
    out["text"] = format_info(info) + ["read with xir: %s" % xir_origin(xir)]
    out["problems"] = contract_problems(info, spec)
    if len(info.dpu) == 1:
        s = info.dpu[0]
        out.update(subgraph=s.name, dpu_name=s.dpu_name, dpu_fingerprint=s.fingerprint_hex)
        for key, ts in (("input", s.inputs), ("output", s.outputs)):
            if len(ts) == 1:
                out.update({key: ts[0].name, key + "_dims": ts[0].dims, key + "_fix_point": ts[0].fix_point})
        if len(s.inputs) == 1 and s.inputs[0].dims:
            out["batch"] = s.inputs[0].dims[0]
    return out
