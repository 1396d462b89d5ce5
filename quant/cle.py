"""Cross-layer equalization (CLE) as vai_q_tensorflow2 3.5 applies it before pof2s quantization.

vai_q quantizes with `include_cle=True` by default (what `flm vitis quantize` does), which
rescales weights and so moves their power-of-two positions; the DPU emulation follows it
with SchemeOptions(cle_steps=10). The same maths as vai_q's
optimizations/vitis_equalization_transforms.py (Nagel et al. 2019, "Data-Free Quantization"):
for a head conv feeding a tail conv through a ReLU (or directly), where the ReLU reads only
the head and feeds only the tail, output channel c of the head is multiplied by
    s_c = clip(sqrt(max|tail input channel c| / max|head output channel c, bias included|), 0.1, 10)
(s_c = 1 where the two maxima sum below 0.1) and input channel c of the tail divided by it;
ReLU(s x) = s ReLU(x) for s > 0, so the float function is unchanged. One step visits the
pairs in layer order, conv->conv pairs first, then conv->ReLU->conv (vai_q's transform
order); vai_q runs `cle_steps` (10) steps. Works on a BN-folded model (quant.fold).
"""
from typing import Any, List, Tuple

import numpy as np

CONVS = ("Conv2D", "DepthwiseConv2D")
THRESHOLD = 0.1  # vai_q's cle_weight_threshold
SCALE_RANGE = (0.1, 10.0)


def _inbound(layer: Any) -> List[Any]:
    node = layer._inbound_nodes[0]
    layers = node.inbound_layers
    return list(layers) if isinstance(layers, (list, tuple)) else [layers]


def _consumers(layer: Any) -> List[Any]:
    return [n.outbound_layer for n in layer._outbound_nodes]


def _kind(layer: Any) -> str:
    return type(layer).__name__


def _linear(layer: Any, relu_too: bool = False) -> bool:
    act = getattr(layer.activation, "__name__", str(layer.activation))
    return act == "linear" or (relu_too and act == "relu")


def pairs(model: Any) -> List[Tuple[Any, Any]]:
    """(head, tail) conv pairs vai_q equalizes, in its order (conv->conv, then conv->ReLU->conv)."""
    direct, via_relu = [], []
    for tail in model.layers:
        if _kind(tail) not in CONVS or len(_inbound(tail)) != 1:
            continue
        prev = _inbound(tail)[0]
        if _kind(prev) in CONVS and _linear(prev, relu_too=True) and _consumers(prev) == [tail]:
            direct.append((prev, tail))
        elif (_kind(prev) == "ReLU" and prev.max_value is None and _consumers(prev) == [tail]
              and len(_inbound(prev)) == 1):
            head = _inbound(prev)[0]
            if _kind(head) in CONVS and _linear(head) and _consumers(head) == [prev]:
                via_relu.append((head, tail))
    return direct + via_relu


def _by_channel(kernel: np.ndarray, kind: str, as_head: bool) -> np.ndarray:
    """The kernel as rows x channels: the head's output channels or the tail's input channels."""
    if kind == "DepthwiseConv2D":  # (kh, kw, c, 1)
        return kernel.reshape(-1, kernel.shape[2])
    if as_head:  # Conv2D (kh, kw, in, out)
        return kernel.reshape(-1, kernel.shape[3])
    return kernel.transpose(0, 1, 3, 2).reshape(-1, kernel.shape[2])


def equalize_pair(head: Any, tail: Any) -> np.ndarray:
    """One CLE step on a pair (weights changed in place); returns the channel scales."""
    hw = head.get_weights()
    tw = tail.get_weights()
    rows = [_by_channel(hw[0], _kind(head), True)] + ([hw[1].reshape(1, -1)] if len(hw) > 1 else [])
    b = np.max(np.abs(np.concatenate(rows, axis=0)), axis=0)
    a = np.max(np.abs(_by_channel(tw[0], _kind(tail), False)), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.sqrt(a / b)
    scale = np.clip(np.nan_to_num(scale, nan=1.0, posinf=SCALE_RANGE[1]), *SCALE_RANGE).astype(hw[0].dtype)
    scale[(b + a) < THRESHOLD] = 1
    head_shape = (1, 1, -1, 1) if _kind(head) == "DepthwiseConv2D" else (1, 1, 1, -1)
    hw[0] = hw[0] * scale.reshape(head_shape)
    if len(hw) > 1:
        hw[1] = hw[1] * scale
    tw[0] = tw[0] / scale.reshape(1, 1, -1, 1)
    head.set_weights(hw)
    tail.set_weights(tw)
    return scale


def equalize(model: Any, steps: int = 10) -> int:
    """vai_q's CLE on a BN-folded model, in place: `steps` passes over its pairs; returns the pair count."""
    found = pairs(model)
    for _ in range(int(steps)):
        for head, tail in found:
            equalize_pair(head, tail)
    return len(found)
