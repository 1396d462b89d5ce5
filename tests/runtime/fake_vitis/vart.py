"""Stand-in for the board's `vart` module (docs/vitis-ai.md section 6).

Runner.create_runner(subgraph, "run"); get_input_tensors/get_output_tensors (dims, dtype
"xint8", get_attr("fix_point")); execute_async(inputs, outputs) -> (job_id, status);
wait(job). The computation is real: int8 input * 2**-fix_point -> ONNX Runtime ->
round_half_up(y * 2**fix_point) clipped to int8, written into the caller's output buffer
only in wait(), as the asynchronous DPU does. Stricter than the board in one way: a runner
used from a thread other than its creator raises (flm promises one runner per thread).

It takes any xir subgraph, from the real XIR or the stand-in (fake_vitis/xir.py): the tensors are the
subgraph's own (sorted by name, as XIR returns sets), and the ONNX model it computes with is the DPU
subgraph's "flm_fake_onnx" attribute (written by xir.write_fake_xmodel). A real compiled xmodel has no
such attribute: no public VART runner computes a DPU subgraph without the hardware, so neither does this.
"""
import itertools
import threading
from typing import Any, List, Tuple

import numpy as np

created = []  # every Runner made, so tests can count runners per thread


class Runner:
    _ids = itertools.count(1)

    def __init__(self, subgraph: Any, mode: str) -> None:
        if mode != "run":
            raise ValueError("unsupported runner mode %r" % mode)
        if not (subgraph.has_attr("device") and subgraph.get_attr("device") == "DPU"):
            raise RuntimeError("create_runner needs a DPU subgraph, got %s" % subgraph.get_name())
        if not subgraph.has_attr("flm_fake_onnx"):
            raise RuntimeError("vart stand-in: subgraph %s has no flm_fake_onnx attribute (a real compiled "
                               "xmodel: only the board's DPU computes it)" % subgraph.get_name())
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self._sess = ort.InferenceSession(subgraph.get_attr("flm_fake_onnx"), opts,
                                          providers=["CPUExecutionProvider"])
        self._in = sorted(subgraph.get_input_tensors(), key=lambda t: t.name)[0]
        self._out = sorted(subgraph.get_output_tensors(), key=lambda t: t.name)[0]
        self._pending = {}  # type: Dict[int, Tuple[np.ndarray, np.ndarray]]
        self.thread = threading.get_ident()
        self.jobs_run = 0

    @staticmethod
    def create_runner(subgraph: Any, mode: str = "run") -> "Runner":
        r = Runner(subgraph, mode)
        created.append(r)
        return r

    def get_input_tensors(self) -> List[Any]:
        return [self._in]

    def get_output_tensors(self) -> List[Any]:
        return [self._out]

    def _check(self, bufs: Any, t: Any, what: str) -> np.ndarray:
        if not isinstance(bufs, list) or len(bufs) != 1:
            raise ValueError("%s must be a list with one buffer" % what)
        b = bufs[0]
        if not isinstance(b, np.ndarray) or b.dtype != np.int8 or list(b.shape) != list(t.dims) \
                or not b.flags["C_CONTIGUOUS"]:
            raise ValueError("%s buffer must be C-contiguous int8 of dims %s, got %s %s"
                             % (what, t.dims, getattr(b, "dtype", type(b)), getattr(b, "shape", "")))
        return b

    def execute_async(self, inputs: List[np.ndarray], outputs: List[np.ndarray]) -> Tuple[int, int]:
        if threading.get_ident() != self.thread:
            raise RuntimeError("vart stand-in: runner used from a second thread (create one per thread)")
        x = self._check(inputs, self._in, "input")
        y = self._check(outputs, self._out, "output")
        job = next(Runner._ids)
        self._pending[job] = (x.copy(), y)  # the DPU reads the input now and writes the output later
        return job, 0

    def wait(self, job: Tuple[int, int], timeout: int = -1) -> int:
        job_id = job[0] if isinstance(job, tuple) else job
        if job_id not in self._pending:
            raise RuntimeError("wait on unknown job %r" % (job,))
        x, y = self._pending.pop(job_id)
        xf = x.astype(np.float32) * np.float32(2.0 ** -self._in.get_attr("fix_point"))
        name = self._sess.get_inputs()[0].name
        out = self._sess.run(None, {name: xf})[0].reshape(y.shape)
        q = np.floor(out.astype(np.float64) * 2.0 ** self._out.get_attr("fix_point") + 0.5)
        y[...] = np.clip(q, -128, 127).astype(np.int8)
        self.jobs_run += 1
        return 0
