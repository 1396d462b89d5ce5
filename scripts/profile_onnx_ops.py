#!/usr/bin/env python
"""Where batch-1 time goes inside ONNX models: ONNX Runtime's own per-node profile, summed by
operator type and by node, for flm's INT8 exports and a foreign model side by side.

`flm bench` says how long a call takes; this says which layers to slim when the INT8 model
must run 2x a foreign model's speed. Random input (the timing does not depend on the values);
the runtime's own session (`runtime.backends.onnx_backend.make_session`).

    .venv/bin/python scripts/profile_onnx_ops.py models/pfld98_w1/qat_int8.onnx \\
        ../shared/models/pfld_ghostone/PFLD_GhostOne_112_1_opt_sim.onnx --iters 300 --top 8
"""
import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from typing import Any, Dict, List, Optional

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def profile(path: str, iters: int, threads: int, warmup: int = 20) -> Dict[str, Any]:
    """{"per_call_ms", "ops": {op type: ms per call}, "nodes": [(node, op, ms per call)]} of `path`.

    Node times are ORT's kernel times; per_call_ms is their sum per call (no Python overhead)."""
    from runtime.backends.onnx_backend import make_session

    with tempfile.TemporaryDirectory() as tmp:
        sess = make_session(path, threads, "profile_onnx_ops", profile_prefix=os.path.join(tmp, "ort"))
        inp = sess.get_inputs()[0]
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
        x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
        for _ in range(warmup + iters):
            sess.run(None, {inp.name: x})
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    by_node: Dict[str, List[float]] = defaultdict(list)
    op_of: Dict[str, str] = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        node = e["name"][: -len("_kernel_time")]
        by_node[node].append(float(e["dur"]) / 1000.0)
        op_of[node] = e.get("args", {}).get("op_name", "?")
    if not by_node:
        raise SystemExit("%s: ONNX Runtime recorded no node times" % path)
    # the first `warmup` calls are warm-up: keep each node's last `iters`
    nodes = [(n, op_of[n], float(np.mean(d[-iters:]))) for n, d in by_node.items()]
    ops: Dict[str, float] = defaultdict(float)
    for _, op, ms in nodes:
        ops[op] += ms
    nodes.sort(key=lambda t: -t[2])
    return {"per_call_ms": sum(ms for _, _, ms in nodes), "ops": dict(ops), "nodes": nodes}


def table(name: str, prof: Dict[str, Any], top: int) -> str:
    total = prof["per_call_ms"]
    lines = ["%s: %.3f ms of kernel time per call" % (name, total), "",
             "| operator | ms per call | share % |", "|---|---|---|"]
    for op, ms in sorted(prof["ops"].items(), key=lambda t: -t[1]):
        lines.append("| %s | %.3f | %.1f |" % (op, ms, 100 * ms / total))
    lines += ["", "| node (top %d) | operator | ms per call | share %% |" % top, "|---|---|---|---|"]
    for node, op, ms in prof["nodes"][:top]:
        lines.append("| %s | %s | %.3f | %.1f |" % (node, op, ms, 100 * ms / total))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="ONNX files (flm exports or foreign models)")
    ap.add_argument("--iters", type=int, default=300, help="profiled calls per model")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads (flm bench's default: 2)")
    ap.add_argument("--top", type=int, default=10, help="slowest nodes to list")
    a = ap.parse_args(argv)
    for path in a.models:
        if not os.path.isfile(path):
            ap.error("%s: no such file" % path)
    for path in a.models:
        print(table(os.path.basename(path), profile(path, a.iters, a.threads), a.top))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
