"""MobileNetV2-PFLD builder (Python 3.8 syntax; loads in the Vitis AI docker's TF 2.12).

Only built-in Keras layers, no Lambda/Rescaling: the H5 must load with plain
`load_model` and pass the DPU flow. Input normalisation lives in
`runtime.preprocess.normalize_input`.

Layout (width 1.0, 112x112x1):
  conv3x3/64 s2 -> dw3x3 -> IR 5x(t2,c64, first s2) [28x28x64, aux branch] -> IR (t2,c128,s2)
  -> IR 6x(t4,c128) -> IR (t2,c16) = S1 14x14x16 (s1_channels: 16 as published)
  -> conv3x3/32 s2 -> extra_convs x conv3x3/extra_channels = S2 7x7
  -> conv7x7/128 valid = S3 1x1x128
  head: concat(GAP(S1), GAP(S2), S3) -> 1x1 conv 196 -> Flatten "landmarks"
The regression head is a 1x1 convolution over the 1x1 concatenation rather than
Flatten->Dense: the same maths, but it keeps the DPU graph in one subgraph
(Flatten->Dense is a known subgraph splitter, Vitis-AI issue #427).
"""
from typing import Any, Dict, Optional

from keras_flm.config import ModelConfig
from keras_flm.keras_compat import get_keras

LANDMARKS = "landmarks"
#: The 1x1 conv that computes the landmarks (its output, flattened, is LANDMARKS).
HEAD = "fc"
EULER = "euler"


def make_divisible(channels: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of `divisor` (MobileNet rule, >= divisor)."""
    return max(divisor, int(channels + divisor / 2) // divisor * divisor)


def _act(keras, cfg: ModelConfig, name: str):
    return keras.layers.ReLU(max_value=6.0 if cfg.activation == "relu6" else None, name=name)


def _conv_bn_act(keras, cfg, x, filters, kernel, stride, name, padding="same", act=True):
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False,
                            name=name + "_conv")(x)
    x = keras.layers.BatchNormalization(momentum=cfg.bn_momentum, name=name + "_bn")(x)
    return _act(keras, cfg, name + "_relu")(x) if act else x


def _inverted_residual(keras, cfg, x, expand, out_ch, stride, name):
    in_ch = int(x.shape[-1])
    h = _conv_bn_act(keras, cfg, x, in_ch * expand, 1, 1, name + "_expand")
    h = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                                     name=name + "_dw")(h)
    h = keras.layers.BatchNormalization(momentum=cfg.bn_momentum, name=name + "_dw_bn")(h)
    h = _act(keras, cfg, name + "_dw_relu")(h)
    h = _conv_bn_act(keras, cfg, h, out_ch, 1, 1, name + "_project", act=False)
    if stride == 1 and in_ch == out_ch:
        h = keras.layers.Add(name=name + "_add")([x, h])
    return h


def build_training_model(cfg: Optional[ModelConfig] = None):
    """Training model: outputs [landmarks (N, 196), euler (N, 3)] (euler only if aux_pose_head)."""
    cfg = cfg or ModelConfig()
    keras = get_keras()
    L = keras.layers
    c = lambda n: make_divisible(n * cfg.width)  # noqa: E731

    inp = keras.Input((cfg.input_size, cfg.input_size, 1), name="image")
    x = _conv_bn_act(keras, cfg, inp, c(64), 3, 2, "stem")
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="stem_dw")(x)
    x = L.BatchNormalization(momentum=cfg.bn_momentum, name="stem_dw_bn")(x)
    x = _act(keras, cfg, "stem_dw_relu")(x)
    for i in range(5):
        x = _inverted_residual(keras, cfg, x, 2, c(64), 2 if i == 0 else 1, "block1_%d" % i)
    aux_src = x  # 28x28x64: the auxiliary pose branch starts here
    x = _inverted_residual(keras, cfg, x, 2, c(128), 2, "block2_0")
    for i in range(6):
        x = _inverted_residual(keras, cfg, x, 4, c(128), 1, "block3_%d" % i)
    s1 = _inverted_residual(keras, cfg, x, 2, c(cfg.s1_channels), 1, "block4_0")

    s2 = _conv_bn_act(keras, cfg, s1, c(32), 3, 2, "s2")
    for i in range(cfg.extra_convs):
        s2 = _conv_bn_act(keras, cfg, s2, c(cfg.extra_channels), 3, 1, "extra%d" % i)
    s3 = _conv_bn_act(keras, cfg, s2, c(128), 7, 1, "s3", padding="valid")

    p1 = L.GlobalAveragePooling2D(keepdims=True, name="pool_s1")(s1)
    p2 = L.GlobalAveragePooling2D(keepdims=True, name="pool_s2")(s2)
    feat = L.Concatenate(name="multiscale")([p1, p2, s3])
    # the heads compute in float32 under a mixed policy: bfloat16 keeps 8 bits of mantissa, 0.2 px at 112
    head = L.Conv2D(cfg.num_points * 2, 1, name=HEAD, dtype="float32")(feat)
    landmarks = L.Flatten(name=LANDMARKS, dtype="float32")(head)

    outputs = [landmarks]
    if cfg.aux_pose_head:
        a = _conv_bn_act(keras, cfg, aux_src, c(128), 3, 2, "aux1")
        a = _conv_bn_act(keras, cfg, a, c(128), 3, 1, "aux2")
        a = _conv_bn_act(keras, cfg, a, c(32), 3, 2, "aux3")
        a = _conv_bn_act(keras, cfg, a, c(128), 7, 1, "aux4", padding="valid")
        a = L.Flatten(name="aux_flat")(a)
        a = L.Dense(c(32), name="aux_fc1")(a)
        a = _act(keras, cfg, "aux_fc1_relu")(a)
        outputs.append(L.Dense(3, name=EULER, dtype="float32")(a))
    return keras.Model(inp, outputs, name="pfld_train" if cfg.aux_pose_head else "pfld")


def centre_head(model, offset: float) -> None:
    """Shift the head's bias by -offset in place, so `model` emits landmarks - offset.

    For int8 outputs without a zero point (the DPU's): see quant.pof2.OutputOffset."""
    head = model.get_layer(HEAD)
    kernel, bias = head.get_weights()
    head.set_weights([kernel, (bias - offset).astype(bias.dtype)])


def inference_model(train_model):
    """Landmark-only model sharing the training model's layers (and so its weights)."""
    keras = get_keras()
    return keras.Model(train_model.inputs, train_model.get_layer(LANDMARKS).output, name="pfld")


def build_inference_model(cfg: Optional[ModelConfig] = None):
    return inference_model(build_training_model(cfg))


def count_macs(model) -> int:
    """Multiply-accumulates of one forward pass at batch 1 (conv, depthwise, dense)."""
    keras = get_keras()
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            _, oh, ow, oc = layer.output.shape
            kh, kw = layer.kernel_size
            total += int(oh) * int(ow) * kh * kw * int(oc)
        elif isinstance(layer, keras.layers.Conv2D):
            _, oh, ow, oc = layer.output.shape
            kh, kw = layer.kernel_size
            cin = int(layer.input.shape[-1])
            total += int(oh) * int(ow) * kh * kw * cin * int(oc)
        elif isinstance(layer, keras.layers.Dense):
            total += int(layer.input.shape[-1]) * int(layer.units)
    return total


def summarize(model) -> Dict[str, Any]:
    """Params, FP32 size (4 bytes/param) and MACs of a model."""
    params = int(model.count_params())
    return {"name": model.name, "params": params, "fp32_mb": params * 4 / 1e6,
            "macs": count_macs(model), "inputs": [list(t.shape) for t in model.inputs],
            "outputs": [list(t.shape) for t in model.outputs]}
