"""Function-preserving widening: start a wider model from a narrower one's trained weights.

Why: a wider S1 (ModelConfig.s1_channels) is only worth its bytes if it fits better than the
released model *at equal training cost*, and that comparison is only fair when both start from the
same function. So each narrow weight is copied into the leading slice of the wide one; a new
*input* channel of a kernel gets zero weights (the new feature contributes nothing yet) and a new
*output* channel keeps its fresh initialisation (so gradients reach it and it can learn). Kernels
behind a concatenation (PFLD's 1x1 head over [GAP(S1), GAP(S2), S3]) are mapped segment by segment.
Net2Net (Chen et al., 2016) widens the same way, with copied units where this uses zeros.
"""
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np


def _concat_widths(layer: Any) -> Optional[List[int]]:
    """Channel widths of the Concatenate layer feeding `layer`, or None if its input is not a concat."""
    from keras_flm.keras_compat import get_keras

    nodes = getattr(layer, "_inbound_nodes", None) or []
    if not nodes:
        return None
    inbound = nodes[0].inbound_layers
    inbound = inbound[0] if isinstance(inbound, (list, tuple)) and len(inbound) == 1 else inbound
    if not isinstance(inbound, get_keras().layers.Concatenate):
        return None
    return [int(t.shape[-1]) for t in inbound.input]


def _input_rows(old_segments: Sequence[int], new_segments: Sequence[int]) -> List[Tuple[int, int, int]]:
    """[(old_start, new_start, length)] placing each old concat segment at the head of its new one."""
    if len(old_segments) != len(new_segments):
        raise ValueError("the concatenation has %d inputs here and %d in the source"
                         % (len(new_segments), len(old_segments)))
    rows, o, n = [], 0, 0
    for a, b in zip(old_segments, new_segments):
        if a > b:
            raise ValueError("a concatenated input shrank from %d to %d channels" % (a, b))
        rows.append((o, n, a))
        o, n = o + a, n + b
    return rows


def embed(old: np.ndarray, new: np.ndarray, input_axis: Optional[int],
          rows: Optional[List[Tuple[int, int, int]]] = None) -> np.ndarray:
    """`new` with `old` in its leading slice; new input rows (input_axis) zeroed, new outputs kept.

    `rows` maps blocks of the input axis (concatenated inputs); None maps it as one block. Without an
    input axis (per-channel vectors, depthwise kernels) `rows` is unused.
    """
    if old.ndim != new.ndim or any(a > b for a, b in zip(old.shape, new.shape)):
        raise ValueError("cannot grow a weight of shape %s into %s" % (old.shape, new.shape))
    out = np.array(new, copy=True)
    if input_axis is None:
        out[tuple(slice(0, d) for d in old.shape)] = old
        return out
    ax = input_axis % old.ndim
    rows = rows or [(0, 0, old.shape[ax])]
    fresh = np.ones(new.shape[ax], bool)  # input rows with no counterpart in `old`
    for _, n, length in rows:
        fresh[n:n + length] = False
    zero = [slice(None)] * new.ndim
    zero[ax] = np.flatnonzero(fresh)
    out[tuple(zero)] = 0.0
    out_slice = [slice(0, d) for d in old.shape]
    for o, n, length in rows:
        dst, src = list(out_slice), list(out_slice)
        dst[ax], src[ax] = slice(n, n + length), slice(o, o + length)
        out[tuple(dst)] = old[tuple(src)]
    return out


def _input_axis(layer: Any, weight: np.ndarray) -> Optional[int]:
    """Which axis of this weight indexes input channels (None for per-channel vectors and depthwise)."""
    from keras_flm.keras_compat import get_keras

    if weight.ndim < 2 or isinstance(layer, get_keras().layers.DepthwiseConv2D):
        return None
    return -2  # Conv2D (kh, kw, in, out) and Dense (in, out)


def grow_into(new_model: Any, old_model: Any) -> List[str]:
    """Copy old_model's weights into new_model layer by layer (by name); returns the grown layers' names.

    Layers missing from old_model keep their initialisation. A layer whose weights are smaller in
    old_model is embedded (see the module docstring); larger raises ValueError.
    """
    old_layers = {layer.name: layer for layer in old_model.layers}
    grown = []
    for layer in new_model.layers:
        src = old_layers.get(layer.name)
        if src is None or not layer.weights:
            continue
        olds, news = src.get_weights(), layer.get_weights()
        if len(olds) != len(news):
            raise ValueError("layer %s: %d weights here, %d in the source"
                             % (layer.name, len(news), len(olds)))
        if all(a.shape == b.shape for a, b in zip(olds, news)):
            layer.set_weights(olds)
            continue
        new_widths, old_widths = _concat_widths(layer), _concat_widths(src)
        rows = _input_rows(old_widths, new_widths) if new_widths and old_widths else None
        try:
            layer.set_weights([embed(a, b, _input_axis(layer, b), rows) for a, b in zip(olds, news)])
        except ValueError as e:
            raise ValueError("layer %s: %s" % (layer.name, e)) from None
        grown.append(layer.name)
    return grown
