"""DPU lint: check a Keras model against the DPUCZDX8G_ISA1_B4096 limits, anywhere.

The Vitis AI Inspector answers the same question but only inside the docker. This
walks the Keras graph with nothing but the model itself, so the host and CI catch a
layer the DPU cannot run (which would put part of the graph on the ARM CPU and split
the xmodel into several DPU subgraphs) before anyone pulls a 10 GB image.

Rules (docs/vitis-ai.md §4):
- only layer types the pof2s quantizer and the DPU handle; Lambda, TFOpLambda, Rescaling,
  Normalization, Softmax, sigmoid/tanh/swish activations, PReLU, SeparableConv2D and
  anything unknown are violations (they run on the CPU);
- activations are fused: a ReLU/ReLU6 must directly follow a conv, depthwise conv, dense,
  batch norm or eltwise add/mul (LeakyReLU alpha 0.1 only after a conv); anywhere else it
  is a standalone activation and runs on the CPU;
- conv: kernel 1..16, stride 1..8, kernel_w*kernel_h*ceil(cin/16) <= 2048, channels <= 4096;
  depthwise conv and pooling (ALU): kernel 1..256, stride 1..256; pads left/top 0..15;
- pooling windows must be square (global pooling: square feature maps);
- warnings (the model still maps, but check): Flatten -> Dense (splits the compiled graph,
  Vitis-AI issue #427), depth multiplier > 1 (unverified), LeakyReLU's 26/256 slope, a
  pre-activation tensor that also feeds another layer (the activation cannot be fused).

Keras-version agnostic (tf_keras on the host, tf.keras 2.12 in the docker): it reads
class names, `get_config()` and the functional graph's `inbound_nodes`, never isinstance.
"""
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from vitis.config import DpuLimits

INPUT, DPU, CPU = "INPUT", "DPU", "CPU"

#: Layers a fused activation may follow (their output goes through the engine's nonlinear unit).
CONV_LIKE = ("Conv2D", "DepthwiseConv2D", "Conv2DTranspose", "Dense")
RELU_HOSTS = CONV_LIKE + ("BatchNormalization", "Add", "Multiply")
#: Where a ReLU6 is fused: conv engine and ALU, not the eltwise engine.
RELU6_HOSTS = CONV_LIKE + ("BatchNormalization",)
LEAKY_HOSTS = ("Conv2D", "Conv2DTranspose", "Dense", "BatchNormalization")
#: Fused `activation=` values a conv-like layer may carry.
FUSED_OK = ("linear", "relu")
#: Layers the quantizer removes or folds; they never reach the compiler.
REMOVED = ("Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
           "ActivityRegularization")
ACTIVATION_LAYERS = ("ReLU", "LeakyReLU", "Activation", "PReLU", "Softmax", "ELU", "ThresholdedReLU")
REJECTED: Dict[str, str] = {
    "Lambda": "Lambda runs arbitrary Python: not quantizable by pof2s and not loadable in the docker "
              "without the code; use built-in layers",
    "TFOpLambda": "a raw TensorFlow op in the graph: not quantizable by pof2s; use a built-in Keras layer",
    "SlicingOpLambda": "a raw tensor slice in the graph: not quantizable by pof2s",
    "Rescaling": "input scaling belongs outside the model (runtime.preprocess.normalize_input); "
                 "the DPU flow rejects Rescaling",
    "Normalization": "input normalisation belongs outside the model (runtime.preprocess.normalize_input)",
    "Resizing": "resizing belongs in preprocessing (runtime.preprocess.crop_face)",
    "CenterCrop": "cropping belongs in preprocessing (runtime.preprocess.crop_face)",
    "SeparableConv2D": "not quantized by pof2s: build it as DepthwiseConv2D + 1x1 Conv2D",
    "PReLU": "PReLU is not a DPU nonlinearity (relu, relu6, leaky_relu 0.1, hard-sigmoid, hard-swish)",
    "Subtract": "eltwise subtract is not a DPU op (add and mul are)",
}


@dataclass
class LayerReport:
    """One row of the lint table."""

    index: int
    name: str
    type: str
    device: str = DPU
    notes: List[str] = field(default_factory=list)
    violations: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {"index": self.index, "name": self.name, "type": self.type, "device": self.device,
                "notes": self.notes, "violations": self.violations, "warnings": self.warnings}


@dataclass
class LintReport:
    """All rows plus the model-level facts."""

    model_name: str
    target: str
    layers: List[LayerReport]

    @property
    def violations(self) -> List[Tuple[str, str]]:
        return [(r.name, v) for r in self.layers for v in r.violations]

    @property
    def warnings(self) -> List[Tuple[str, str]]:
        return [(r.name, w) for r in self.layers for w in r.warnings]

    @property
    def ok(self) -> bool:
        return not self.violations

    def counts(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for r in self.layers:
            out[r.device] = out.get(r.device, 0) + 1
        return out

    def to_dict(self) -> Dict[str, Any]:
        return {"model": self.model_name, "target": self.target, "ok": self.ok, "counts": self.counts(),
                "layers": [r.to_dict() for r in self.layers]}


# ----------------------------------------------------------------------------- graph helpers

def _pair(v: Any) -> Tuple[int, int]:
    if isinstance(v, (list, tuple)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _shape(layer: Any, attr: str) -> Optional[Tuple[Optional[int], ...]]:
    try:
        s = getattr(layer, attr)
    except (AttributeError, RuntimeError, ValueError):
        return None
    if isinstance(s, list):  # several inputs: the first is representative for channel checks
        s = s[0] if s else None
    return tuple(s) if s is not None else None


def _graph(model: Any) -> Dict[str, List[str]]:
    """layer name -> names of the layers feeding it (functional config, or Sequential order)."""
    cfg = model.get_config()
    preds: Dict[str, List[str]] = {}
    layers = cfg.get("layers", []) if isinstance(cfg, dict) else []
    if layers and all("inbound_nodes" in entry for entry in layers):
        for entry in layers:
            names = []
            for node in entry.get("inbound_nodes") or []:
                for inbound in node:
                    names.append(inbound[0] if isinstance(inbound, (list, tuple)) else inbound)
            preds[entry.get("name", entry["config"]["name"])] = names
        return preds
    prev = None  # Sequential: each layer feeds the next
    for layer in model.layers:
        preds[layer.name] = [prev] if prev else []
        prev = layer.name
    return preds


def _same_pads(in_size: Optional[int], k: int, s: int, d: int = 1) -> Tuple[int, int]:
    """TensorFlow SAME padding (before, after) along one axis."""
    if in_size is None:
        return 0, 0
    k_eff = (k - 1) * d + 1
    out = -(-in_size // s)
    total = max((out - 1) * s + k_eff - in_size, 0)
    return total // 2, total - total // 2


def _pads(cfg: Dict[str, Any], in_shape: Optional[Sequence[Optional[int]]], kernel: Tuple[int, int],
          stride: Tuple[int, int], dilation: Tuple[int, int] = (1, 1)) -> Tuple[int, int]:
    """(top, left) padding of a windowed layer."""
    if str(cfg.get("padding", "valid")).lower() != "same" or in_shape is None or len(in_shape) != 4:
        return 0, 0
    top, _ = _same_pads(in_shape[1], kernel[0], stride[0], dilation[0])
    left, _ = _same_pads(in_shape[2], kernel[1], stride[1], dilation[1])
    return top, left


def _in_range(v: int, lo_hi: Tuple[int, int]) -> bool:
    return lo_hi[0] <= v <= lo_hi[1]


def _type_label(layer: Any, cfg: Dict[str, Any]) -> str:
    """Layer type as the Vitis Inspector prints it: Conv2D<linear>."""
    name = layer.__class__.__name__
    act = cfg.get("activation")
    if isinstance(act, str):
        return "%s<%s>" % (name, act)
    return name


def _activation_name(cfg: Dict[str, Any]) -> str:
    act = cfg.get("activation", "linear")
    if isinstance(act, dict):  # serialized function/object (Keras 3 style or custom)
        act = act.get("config", {}).get("name") or act.get("class_name") or str(act)
    return str(act)


# ----------------------------------------------------------------------------- per-type checks

def _check_window(r: LayerReport, kernel: Tuple[int, int], stride: Tuple[int, int],
                  pads: Tuple[int, int], k_lim: Tuple[int, int], s_lim: Tuple[int, int],
                  limits: DpuLimits, what: str) -> None:
    for k in kernel:
        if not _in_range(k, k_lim):
            r.violations.append("%s kernel %dx%d outside %d..%d" % (what, kernel[0], kernel[1], k_lim[0],
                                                                    k_lim[1]))
            break
    for s in stride:
        if not _in_range(s, s_lim):
            r.violations.append("%s stride %dx%d outside %d..%d" % (what, stride[0], stride[1], s_lim[0],
                                                                    s_lim[1]))
            break
    for p in pads:
        if not _in_range(p, limits.pad):
            r.violations.append("pad top/left %d/%d outside %d..%d" % (pads[0], pads[1], limits.pad[0],
                                                                       limits.pad[1]))
            break


def _check_channels(r: LayerReport, limits: DpuLimits, cin: Optional[int], cout: Optional[int]) -> None:
    for what, c in (("input", cin), ("output", cout)):
        if c is not None and c > limits.max_channels:
            r.violations.append("%s channels %d > %d" % (what, c, limits.max_channels))


def _check_fused_activation(r: LayerReport, cfg: Dict[str, Any]) -> None:
    act = _activation_name(cfg)
    if act in FUSED_OK:
        return
    if act == "hard_sigmoid":
        r.warnings.append("fused hard_sigmoid: Keras' 0.2x+0.5 differs from the DPU's relu6(x+3)/6, "
                          "which the quantizer substitutes")
        return
    r.violations.append("fused activation %r is not a DPU nonlinearity (linear, relu)" % act)


def _check_conv(r, layer, cfg, in_shape, out_shape, limits: DpuLimits) -> None:
    kernel = _pair(cfg.get("kernel_size", 1))
    stride = _pair(cfg.get("strides", 1))
    dilation = _pair(cfg.get("dilation_rate", 1))
    cin = in_shape[-1] if in_shape else None
    cout = out_shape[-1] if out_shape else None
    if int(cfg.get("groups", 1) or 1) != 1:
        r.violations.append("grouped convolution (groups=%s) is not a DPU conv" % cfg.get("groups"))
    _check_window(r, kernel, stride, _pads(cfg, in_shape, kernel, stride, dilation),
                  limits.conv_kernel, limits.conv_stride, limits, "conv")
    if cin is not None:
        budget = kernel[0] * kernel[1] * int(math.ceil(cin / float(limits.conv_icp)))
        if budget > limits.conv_weight_budget:
            r.violations.append("kernel_w*kernel_h*ceil(cin/%d) = %d*%d*%d = %d > %d"
                                % (limits.conv_icp, kernel[1], kernel[0],
                                   int(math.ceil(cin / float(limits.conv_icp))), budget,
                                   limits.conv_weight_budget))
    _check_channels(r, limits, cin, cout)
    if dilation != (1, 1):
        r.notes.append("dilation %dx%d" % dilation)
    _check_fused_activation(r, cfg)


def _check_depthwise(r, layer, cfg, in_shape, out_shape, limits: DpuLimits) -> None:
    kernel = _pair(cfg.get("kernel_size", 1))
    stride = _pair(cfg.get("strides", 1))
    dilation = _pair(cfg.get("dilation_rate", 1))
    _check_window(r, kernel, stride, _pads(cfg, in_shape, kernel, stride, dilation),
                  limits.alu_kernel, limits.alu_stride, limits, "depthwise")
    _check_channels(r, limits, in_shape[-1] if in_shape else None, out_shape[-1] if out_shape else None)
    if int(cfg.get("depth_multiplier", 1)) > 1:
        r.warnings.append("depth_multiplier %s > 1: DPU support UNVERIFIED" % cfg.get("depth_multiplier"))
    _check_fused_activation(r, cfg)


def _check_dense(r, layer, cfg, in_shape, out_shape, preds_types: List[str], limits: DpuLimits) -> None:
    cin = in_shape[-1] if in_shape else None
    cout = out_shape[-1] if out_shape else None
    _check_channels(r, limits, cin, cout)
    if in_shape is not None and len(in_shape) > 2:
        r.warnings.append("Dense on a rank-%d tensor (applied to the last axis)" % len(in_shape))
    if "Flatten" in preds_types:
        r.warnings.append("Flatten -> Dense splits the compiled graph into several DPU subgraphs "
                          "(Vitis-AI issue #427): use a 1x1 Conv2D head over a 1x1 feature map")
    _check_fused_activation(r, cfg)


def _check_pool(r, layer, cfg, in_shape, limits: DpuLimits) -> None:
    kernel = _pair(cfg.get("pool_size", 2))
    stride = _pair(cfg.get("strides") or kernel)
    if kernel[0] != kernel[1]:
        r.violations.append("pool window %dx%d is not square (DPU pools are square)" % kernel)
    _check_window(r, kernel, stride, _pads(cfg, in_shape, kernel, stride),
                  limits.alu_kernel, limits.alu_stride, limits, "pool")


def _check_global_pool(r, layer, cfg, in_shape, limits: DpuLimits) -> None:
    if in_shape is None or len(in_shape) != 4 or in_shape[1] is None or in_shape[2] is None:
        r.violations.append("global pooling over an unknown spatial size: the DPU needs a fixed window")
        return
    h, w = int(in_shape[1]), int(in_shape[2])
    if h != w:
        r.violations.append("global pool window %dx%d is not square (rectangular/adaptive pooling splits "
                            "the graph, Vitis-AI issue #557)" % (h, w))
    _check_window(r, (h, w), (h, w), (0, 0), limits.alu_kernel, limits.alu_stride, limits, "pool")
    r.notes.append("window %dx%d" % (h, w))


def _check_activation_layer(r: LayerReport, type_name: str, cfg: Dict[str, Any], pred: Optional[Any],
                            pred_fanout: int, host_name: str, limits: DpuLimits) -> None:
    """Standalone activation layers: fused into their producer, or a CPU op."""
    kind = None  # "relu", "relu6", "leaky", "hard_sigmoid"
    alpha = 0.0
    if type_name == "ReLU":
        max_value = cfg.get("max_value")
        slope = float(cfg.get("negative_slope") or 0.0)
        if float(cfg.get("threshold") or 0.0) != 0.0:
            r.violations.append("ReLU threshold %s != 0 is not a DPU nonlinearity" % cfg.get("threshold"))
            return
        if slope != 0.0:
            kind = "leaky"
            alpha = slope
        elif max_value is None:
            kind = "relu"
        elif float(max_value) == 6.0:
            kind = "relu6"
        else:
            r.violations.append("ReLU max_value %s: the DPU has relu and relu6 only" % max_value)
            return
    elif type_name == "LeakyReLU":
        kind = "leaky"
        alpha = float(cfg.get("alpha", cfg.get("negative_slope", 0.3)))
    elif type_name == "Activation":
        act = _activation_name(cfg)
        if act == "linear":
            r.notes.append("identity")
            return
        if act == "relu":
            kind = "relu"
        elif act == "hard_sigmoid":
            kind = "hard_sigmoid"
        else:
            r.violations.append("activation %r runs on the CPU (not a DPU nonlinearity); apply it in "
                                "post-processing" % act)
            return
    else:  # Softmax, ELU, ThresholdedReLU
        r.violations.append("%s runs on the CPU (not a DPU nonlinearity); apply it in post-processing"
                            % type_name)
        return

    if kind == "leaky":
        if abs(alpha - limits.leaky_alpha) > 1e-6:
            r.violations.append("LeakyReLU alpha %g: the DPU implements only %g (as %d/256)"
                                % (alpha, limits.leaky_alpha, int(round(limits.leaky_alpha_dpu * 256))))
            return
        r.warnings.append("LeakyReLU alpha 0.1 runs as %g on the DPU" % limits.leaky_alpha_dpu)
    hosts = {"relu": RELU_HOSTS, "relu6": RELU6_HOSTS, "leaky": LEAKY_HOSTS,
             "hard_sigmoid": LEAKY_HOSTS}[kind]
    if pred is None:
        r.violations.append("standalone %s on the model input: the DPU fuses %s only into %s"
                            % (kind, kind, ", ".join(hosts)))
        return
    pred_type = pred.__class__.__name__
    pred_act = _activation_name(pred.get_config()) if pred_type in CONV_LIKE else "linear"
    if pred_type not in hosts or pred_act != "linear":
        why = ("after %s %s" % (pred_type, pred.name)) if pred_act == "linear" else (
            "after %s %s, which already applies %r" % (pred_type, pred.name, pred_act))
        r.violations.append("standalone %s (%s): the DPU fuses %s only into %s"
                            % (kind, why, kind, ", ".join(hosts)))
        return
    if pred_fanout > 1:
        r.warnings.append("the pre-activation output of %s also feeds other layers: %s cannot be fused"
                          % (pred.name, kind))
    r.notes.append("fused into %s" % host_name)


# ----------------------------------------------------------------------------- driver

def lint_model(model: Any, limits: Optional[DpuLimits] = None) -> LintReport:
    """Check every layer of a Keras (2) functional or Sequential model; never raises on a bad layer."""
    limits = limits or DpuLimits()
    preds = _graph(model)
    by_name = {layer.name: layer for layer in model.layers}
    fanout: Dict[str, int] = {}
    for names in preds.values():
        for n in names:
            fanout[n] = fanout.get(n, 0) + 1

    rows: List[LayerReport] = []
    for index, layer in enumerate(model.layers):
        type_name = layer.__class__.__name__
        try:
            cfg = layer.get_config()
        except Exception:  # noqa: BLE001 - a layer that cannot describe itself is a finding, not a crash
            cfg = {}
        r = LayerReport(index=index, name=layer.name, type=_type_label(layer, cfg))
        rows.append(r)
        in_shape = _shape(layer, "input_shape")
        out_shape = _shape(layer, "output_shape")
        pred_names = preds.get(layer.name, [])
        pred_layers = [by_name[n] for n in pred_names if n in by_name]
        pred_types = [p.__class__.__name__ for p in pred_layers]

        if type_name == "InputLayer":
            r.device = INPUT
            shape = cfg.get("batch_input_shape") or cfg.get("batch_shape") or in_shape
            if shape is not None and any(v is None for v in list(shape)[1:]):
                r.violations.append("input shape %s is not fully defined: the DPU needs a fixed shape"
                                    % (list(shape),))
            continue
        if type_name in REJECTED:
            r.violations.append(REJECTED[type_name])
        elif type_name in ("Conv2D", "Conv2DTranspose"):
            _check_conv(r, layer, cfg, in_shape, out_shape, limits)
        elif type_name == "DepthwiseConv2D":
            _check_depthwise(r, layer, cfg, in_shape, out_shape, limits)
        elif type_name == "Dense":
            _check_dense(r, layer, cfg, in_shape, out_shape, pred_types, limits)
        elif type_name == "BatchNormalization":
            axis = cfg.get("axis", -1)
            axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
            rank = len(in_shape) if in_shape else 4
            if axis not in (-1, rank - 1):
                r.violations.append("BatchNormalization over axis %s: only the channel axis folds" % axis)
            elif pred_types and pred_types[0] in CONV_LIKE and fanout.get(pred_names[0], 0) == 1:
                r.notes.append("folded into %s" % pred_names[0])
            else:
                r.notes.append("standalone: the quantizer converts it to a depthwise conv")
        elif type_name in ACTIVATION_LAYERS:
            pred = pred_layers[0] if pred_layers else None
            host = pred.name if pred is not None else ""
            if pred is not None and pred.__class__.__name__ == "BatchNormalization":
                before = preds.get(pred.name, [])
                if before and before[0] in by_name and by_name[before[0]].__class__.__name__ in CONV_LIKE:
                    host = before[0]  # BN folds into the conv, so the activation fuses there too
            _check_activation_layer(r, type_name, cfg, pred, fanout.get(pred.name, 0) if pred else 0, host,
                                    limits)
        elif type_name in ("Add", "Multiply"):
            shapes = getattr(layer, "input_shape", None)
            if isinstance(shapes, list) and len({tuple(s) for s in shapes}) > 1:
                r.violations.append("eltwise %s of different shapes %s (broadcasting is not a DPU op)"
                                    % (type_name.lower(), [list(s) for s in shapes]))
            _check_channels(r, limits, None, out_shape[-1] if out_shape else None)
        elif type_name == "Concatenate":
            axis = cfg.get("axis", -1)
            if axis not in (-1, 3):
                r.warnings.append("concatenation along axis %s (the DPU concatenates channels)" % axis)
            _check_channels(r, limits, None, out_shape[-1] if out_shape else None)
        elif type_name in ("MaxPooling2D", "AveragePooling2D"):
            _check_pool(r, layer, cfg, in_shape, limits)
        elif type_name in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
            _check_global_pool(r, layer, cfg, in_shape, limits)
        elif type_name == "ZeroPadding2D":
            pad = cfg.get("padding", 1)
            if isinstance(pad, (list, tuple)) and pad and isinstance(pad[0], (list, tuple)):
                top, left = int(pad[0][0]), int(pad[1][0])
            else:
                top, left = _pair(pad)
            if not (_in_range(top, limits.pad) and _in_range(left, limits.pad)):
                r.violations.append("pad top/left %d/%d outside %d..%d" % (top, left, limits.pad[0],
                                                                           limits.pad[1]))
            else:
                r.notes.append("merged into the next window")
        elif type_name in ("Flatten", "Reshape"):
            r.notes.append("layout op")
        elif type_name == "Permute":
            r.warnings.append("Permute may be placed on the CPU by the compiler")
        elif type_name == "UpSampling2D":
            if cfg.get("interpolation", "nearest") != "nearest":
                r.warnings.append("UpSampling2D interpolation %r: DPU support UNVERIFIED (nearest is safe)"
                                  % cfg.get("interpolation"))
        elif type_name in REMOVED:
            r.notes.append("removed by the quantizer")
        elif hasattr(layer, "layers"):
            r.violations.append("nested model %r: flatten it into one functional model" % layer.name)
        else:
            r.violations.append("%s is not in the %s supported layer list" % (type_name, limits.name))
        if r.violations:
            r.device = CPU
    return LintReport(model_name=getattr(model, "name", "model"), target=limits.name, layers=rows)


def format_report(report: LintReport, width: int = 120) -> str:
    """Per-layer table in the Vitis Inspector's layout (ID, Name, Type, Device, Notes) + summary."""
    import textwrap

    cols = (8, 28, 30, 8, width - 8 - 28 - 30 - 8)
    total = len(report.layers)
    lines = ["[MODEL INFO]: %s   [TARGET]: %s (flm DPU lint)" % (report.model_name, report.target),
             "_" * width]

    def row(fields: Sequence[str]) -> None:
        wrapped = [textwrap.wrap(f, c - 1) or [""] for f, c in zip(fields, cols)]
        for i in range(max(len(w) for w in wrapped)):
            cells = ((w[i] if i < len(w) else "").ljust(c) for w, c in zip(wrapped, cols))
            lines.append("".join(cells).rstrip())

    row(["ID", "Name", "Type", "Device", "Notes"])
    lines.append("=" * width)
    for r in report.layers:
        notes = ["VIOLATION: " + v for v in r.violations] + ["warning: " + w for w in r.warnings] + r.notes
        row(["%d/%d" % (r.index, total - 1), r.name, r.type, r.device, "; ".join(notes)])
    lines.append("=" * width)
    counts = report.counts()
    lines.append("[SUMMARY]: %d layers: %s; %d violation(s), %d warning(s)"
                 % (total, ", ".join("%s %d" % kv for kv in sorted(counts.items())),
                    len(report.violations), len(report.warnings)))
    if report.ok:
        lines.append("  All layers map to the DPU within the %s limits." % report.target)
    else:
        for name, v in report.violations:
            lines.append("  - %s: %s" % (name, v))
    return "\n".join(lines) + "\n"
