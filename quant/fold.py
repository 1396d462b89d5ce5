"""Fold BatchNormalization into the preceding Conv2D / DepthwiseConv2D / Dense.

    W' = W * gamma / sqrt(var + eps)        (per output channel)
    b' = (b - mean) * gamma / sqrt(var + eps) + beta

Why explicitly, before quantizing: the deployed integer model holds W', so W' is what
must be quantized (per tensor, as the DPU and our size budget need). TFMOT 0.8.1's
default 8-bit transforms do NOT fold: they only drop the fake-quant between Conv and BN,
quantize W per channel, and rely on per-channel scales commuting with the BN scale. With
per-tensor scales that shortcut is wrong (the converter re-quantizes W' afterwards), and
their Conv(bias)->ReLU transform even leaves the conv weights unquantized. Folding first
makes QAT train exactly the weights that ship.

The folded model uses only built-in layers, keeps every other layer's name, and names
each folded conv like the original conv.
"""
from typing import Dict, List, Tuple

import numpy as np

from keras_flm.keras_compat import get_keras


def _producer(tensor):
    return tensor._keras_history.layer  # (layer, node_index, tensor_index)


def _flat(x) -> List:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def fold_pairs(model) -> Dict[str, str]:
    """{bn layer name: producing conv/dense name} for every BN that can be folded."""
    keras = get_keras()
    L = keras.layers
    consumers: Dict[int, int] = {}
    for layer in model.layers:
        if isinstance(layer, L.InputLayer):
            continue
        for t in _flat(layer.input):
            consumers[id(t)] = consumers.get(id(t), 0) + 1
    for t in model.outputs:
        consumers[id(t)] = consumers.get(id(t), 0) + 1
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, L.BatchNormalization):
            continue
        axes = [layer.axis] if isinstance(layer.axis, int) else list(layer.axis)
        axis = axes[0] if len(axes) == 1 else None
        if axis not in (-1, len(layer.input.shape) - 1):
            continue
        src = _producer(layer.input)
        linear = getattr(src, "activation", None) in (None, keras.activations.linear)
        if (isinstance(src, (L.Conv2D, L.DepthwiseConv2D, L.Dense)) and linear
                and consumers.get(id(layer.input), 0) == 1):
            pairs[layer.name] = src.name
    return pairs


def folded_weights(conv, bn) -> Tuple[np.ndarray, np.ndarray]:
    """(W', b') of `conv` followed by inference-mode `bn`."""
    keras = get_keras()
    w = conv.get_weights()
    kernel = w[0].astype(np.float64)
    bias = w[1].astype(np.float64) if conv.use_bias else 0.0
    params = dict(zip([v.name.split("/")[-1].split(":")[0] for v in bn.weights], bn.get_weights()))
    var = params["moving_variance"].astype(np.float64)
    mean = params["moving_mean"].astype(np.float64)
    gamma = params.get("gamma", np.ones_like(var)).astype(np.float64)
    beta = params.get("beta", np.zeros_like(var)).astype(np.float64)
    scale = gamma / np.sqrt(var + bn.epsilon)
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        kh, kw, cin, mult = kernel.shape
        kernel = kernel * scale.reshape(cin, mult)
    else:
        kernel = kernel * scale  # Conv2D (kh, kw, cin, cout) and Dense (in, out): last axis = output
    return kernel.astype(np.float32), ((bias - mean) * scale + beta).astype(np.float32)


def fold_batchnorm(model):
    """A new functional model equal to `model` in inference mode, with foldable BNs folded.

    BNs that cannot be folded (not after a linear conv/dense, or sharing its input) are kept.
    """
    keras = get_keras()
    L = keras.layers
    pairs = fold_pairs(model)
    conv_to_bn = {v: k for k, v in pairs.items()}
    new: Dict[int, object] = {}
    inputs = []
    for t in model.inputs:
        layer = _producer(t)
        x = keras.Input(shape=tuple(t.shape[1:]), dtype=t.dtype, name=layer.name)
        new[id(t)] = x
        inputs.append(x)
    for layer in model.layers:
        if isinstance(layer, L.InputLayer) or layer.name in pairs:
            continue  # folded BNs were handled with their conv
        args = [new[id(t)] for t in _flat(layer.input)]
        arg = args if isinstance(layer.input, (list, tuple)) else args[0]
        cfg = layer.get_config()
        if layer.name in conv_to_bn:
            bn = model.get_layer(conv_to_bn[layer.name])
            cfg["use_bias"] = True
            clone = layer.__class__.from_config(cfg)
            out = clone(arg)
            clone.set_weights(list(folded_weights(layer, bn)))
            new[id(bn.output)] = out
        else:
            clone = layer.__class__.from_config(cfg)
            out = clone(arg)
            clone.set_weights(layer.get_weights())
            new[id(layer.output)] = out
    outputs = [new[id(t)] for t in model.outputs]
    return keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0], name=model.name + "_folded")
