"""Carry calibrated Keras activation ranges into ONNX Runtime's static quantization.

ORT's own calibrators (min/max, percentile, entropy) see each tensor alone; the MIN_MSE
ranges of quant.ranges are found on the quantized network and are worth 3 pp of NME on
the released model (quant/config.py). ORT takes per-tensor ranges as TensorQuantOverrides,
keyed by ONNX tensor names, and tf2onnx's names (shortened by quant.onnx_save) say nothing
about the Keras layers. So tensors are matched by value: on a few crops, a Keras layer's
output and an ONNX tensor hold the same numbers in another layout (NHWC vs NCHW, a Reshape
after a pool), so their sorted values agree. Every ONNX tensor that matches gets the range;
a Keras tensor without a match is an error rather than a silently uncalibrated tensor.
The inputs of a Concatenate are not quantized on their own in the Keras plan (quant.scheme:
TFLite and the DPU give them the concat's scale); ORT quantizes them separately, so
`share_concat_ranges` hands them the concat's range, through value-preserving reshapes
(a ReLU's output keeps its lower end at 0).
Without that, ORT calibrated the pooled S2 features at 0.14 per step where the concat steps
by 0.004, and the released model's ORT PTQ read 8.69 % val NME instead of 4.90 %.
"""
from typing import Any, Dict, List, Tuple, Union

import numpy as np

from runtime.preprocess import DEFAULT_SPEC, CropSpec, normalize_input

#: an ONNX file's path or the ModelProto already loaded from it (`load_model` loads a path once)
OnnxModel = Union[str, Any]


def load_model(onnx_model: OnnxModel):
    """The ModelProto of `onnx_model`; a proto passes through, so one caller can load a file once
    and hand it to every function here."""
    import onnx

    return onnx.load(onnx_model) if isinstance(onnx_model, str) else onnx_model


def _name(onnx_model: OnnxModel) -> str:
    return onnx_model if isinstance(onnx_model, str) else "the ONNX model"


def _keras_values(float_model, names: List[str], x: np.ndarray) -> Dict[str, np.ndarray]:
    from quant.ranges import layer_probe

    outs = layer_probe(float_model, names)(x, training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return {n: np.asarray(o) for n, o in zip(names, outs)}


def _onnx_values(onnx_model: OnnxModel, x: np.ndarray) -> Dict[str, np.ndarray]:
    """Every float node output of the model on `x` (NHWC crops; transposed if the model wants NCHW)."""
    import onnx
    import onnxruntime as ort

    from runtime.backends.onnx_backend import wants_nchw

    m = onnx.ModelProto()
    m.CopyFrom(load_model(onnx_model))  # the outputs added below stay out of the caller's proto
    have = {o.name for o in m.graph.output}
    for node in m.graph.node:
        for out in node.output:
            if out and out not in have:
                m.graph.output.append(onnx.helper.make_empty_tensor_value_info(out))
                have.add(out)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    if wants_nchw(inp.shape):
        x = x.transpose(0, 3, 1, 2)
    names = [o.name for o in sess.get_outputs()]
    return {n: np.asarray(v) for n, v in zip(names, sess.run(names, {inp.name: x}))
            if isinstance(v, np.ndarray) and v.dtype == np.float32}


def match_tensors(onnx_model: OnnxModel, float_model, names: List[str], crops: np.ndarray,
                  spec: CropSpec = DEFAULT_SPEC, rtol: float = 1e-3,
                  label: str = "") -> Dict[str, List[str]]:
    """{Keras layer name: [ONNX tensor names holding the same values]} for `names`; `label` names
    a loaded proto's file in the error.

    `float_model` and the ONNX file must compute the same function (the ONNX export of
    that very Keras model). Raises ValueError naming the Keras tensors that match nothing."""
    x = normalize_input(np.asarray(crops[:4]), spec)
    keras_v = _keras_values(float_model, names, x)
    onnx_v = _onnx_values(onnx_model, x)
    by_size: Dict[int, List[Tuple[str, np.ndarray]]] = {}
    for name, v in onnx_v.items():
        by_size.setdefault(v.size, []).append((name, np.sort(v.ravel())))
    out: Dict[str, List[str]] = {}
    for name in names:
        want = np.sort(keras_v[name].ravel())
        tol = rtol * max(float(np.abs(want).max()), 1e-6)
        hits = [t for t, got in by_size.get(want.size, []) if np.abs(got - want).max() <= tol]
        if hits:
            out[name] = hits
    missing = [n for n in names if n not in out]
    if missing:
        raise ValueError("%s: no tensor holds the values of Keras layer(s) %s (is it the export of this "
                         "model?)" % (label or _name(onnx_model), ", ".join(missing)))
    return out


def range_overrides(matches: Dict[str, List[str]], ranges: Dict[str, Tuple[float, float]]) -> Dict[str, list]:
    """ORT TensorQuantOverrides giving each matched ONNX tensor its Keras tensor's (min, max)."""
    out: Dict[str, list] = {}
    for name, tensors in matches.items():
        lo, hi = ranges[name]
        for t in tensors:
            out[t] = [{"rmin": np.float32(lo), "rmax": np.float32(hi)}]
    return out


#: ONNX ops that move values without changing them: a range given to the output holds for the input.
RESHAPES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose")


def share_concat_ranges(onnx_model: OnnxModel, overrides: Dict[str, list]) -> Dict[str, list]:
    """`overrides` plus, for every Concat whose output has one, the same for its inputs (and the
    inputs of the reshapes that feed them)."""
    graph = load_model(onnx_model).graph
    producer = {out: node for node in graph.node for out in node.output}
    out = dict(overrides)
    for node in graph.node:
        if node.op_type != "Concat" or node.output[0] not in overrides:
            continue
        todo = list(node.input)
        while todo:
            t = todo.pop()
            src = producer.get(t)
            given = overrides[node.output[0]]
            if src is not None and src.op_type in ("Relu", "Clip"):
                # ORT drops a Relu whose output range starts at 0 (the zero point clamps instead);
                # a range reaching below 0 would keep its negatives: what TFLite clamps, ORT would not
                given = [dict(given[0], rmin=np.float32(max(0.0, float(given[0]["rmin"]))))]
            out.setdefault(t, given)
            if src is not None and src.op_type in RESHAPES:
                todo.append(src.input[0])
    return out


def share_input_range(onnx_model: OnnxModel, overrides: Dict[str, list], lo: float,
                      hi: float) -> Dict[str, list]:
    """`overrides` plus the crop contract's fixed input range (quant.scheme.input_range) for the
    graph input and what reshapes of it feed the first conv: the int8 input stays u8 - 128."""
    graph = load_model(onnx_model).graph
    given = [{"rmin": np.float32(lo), "rmax": np.float32(hi)}]
    out = dict(overrides)
    todo = [graph.input[0].name]
    while todo:
        t = todo.pop()
        out.setdefault(t, given)
        todo += [n.output[0] for n in graph.node if n.op_type in RESHAPES and n.input and n.input[0] == t]
    return out
