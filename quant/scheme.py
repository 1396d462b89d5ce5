"""Which tensors get fake-quantized, and how: one plan, two schemes ("default", "pof2").

The plan mirrors what an integer engine (TFLite, the DPU) computes on a BN-folded graph:
  * Conv2D / DepthwiseConv2D / Dense: weights quantized per tensor; the output is quantized
    unless a ReLU consumes it alone (conv+ReLU run as one fused integer op);
  * ReLU, Add, pooling: output quantized;
  * tensors consumed only by Concatenate are not quantized on their own: the concat
    output's single scale is theirs (TFLite and the DPU both require it);
  * Flatten / Reshape: pass-through;
  * the model input: fixed range from the crop contract, (0 - 128)/128 .. (255 - 128)/128,
    which makes the int8 input exactly u8 - 128 (lossless) in both schemes.
Schemes:
  * "default": TFLite numerics: weights symmetric narrow-range per tensor (TFMOT's
    LastValueQuantizer; per output channel for Conv2D/Dense with `per_channel`),
    activations asymmetric 8-bit with calibrated ranges kept fixed (CalibratedQuantizer;
    TFMOT's EMA MovingAverageQuantizer with frozen_ranges=False); biases stay float
    (TFLite stores them int32 at input_scale * weight_scale).
  * "pof2": the DPU's power-of-two scales (quant.pof2) for weights, biases and activations.

Why not TFMOT's Default8BitQuantizeScheme as is: see quant/fold.py (it does not fold BN
and, after our folding, its Conv->ReLU transform leaves conv weights unquantized).
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer
from tensorflow_model_optimization.python.core.quantization.keras.graph_transformations import (
    model_transformer,
    transforms,
)
from tensorflow_model_optimization.python.core.quantization.keras.quantize_layout_transform import (
    QuantizeLayoutTransform,
)
from tensorflow_model_optimization.python.core.quantization.keras.quantize_registry import QuantizeRegistry
from tensorflow_model_optimization.python.core.quantization.keras.quantize_scheme import QuantizeScheme
from tensorflow_model_optimization.quantization.keras import (
    QuantizeConfig,
    quantize_annotate_layer,
    quantize_apply,
    quantize_scope,
    quantizers,
)

from keras_flm.keras_compat import get_keras
from keras_flm.model import centre_head
from quant import pof2
from quant.config import SCHEMES
from quant.fold import fold_batchnorm
from runtime.preprocess import DEFAULT_SPEC, CropSpec

WEIGHT_ATTRS = {"Conv2D": "kernel", "DepthwiseConv2D": "depthwise_kernel", "Dense": "kernel"}
PASS_THROUGH = ("Flatten", "Reshape", "Dropout")
OUTPUT_LAYERS = ("ReLU", "Add", "Concatenate", "GlobalAveragePooling2D", "AveragePooling2D", "MaxPooling2D")
POOLS = ("GlobalAveragePooling2D", "AveragePooling2D")


def _check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise ValueError("scheme must be one of %s, got %r" % (", ".join(SCHEMES), scheme))
    return scheme


@dataclass
class SchemeOptions:
    """How a scheme quantizes (the plan decides where)."""

    scheme: str = "default"
    per_channel: bool = False  # default scheme: per-output-channel Conv2D/Dense weights (not depthwise)
    frozen_ranges: bool = True  # default scheme: activation ranges stay at calibration (no EMA drift)
    search: int = 4  # pof2: MIN_MSE positions tried above the non-overflow one
    dpu_avgpool: bool = True  # pof2: the DPU's average-pooling gain
    cle_steps: int = 0  # cross-layer equalization steps before quantizing (vai_q's default: 10; quant.cle)
    # pof2: the head emits landmarks minus this and the model adds it back (quant.pof2.OutputOffset);
    # 0 = landmarks straight from the int8 head
    output_offset: float = 0.0

    def __post_init__(self) -> None:
        _check_scheme(self.scheme)
        if self.output_offset and self.scheme != "pof2":
            raise ValueError("output_offset is a pof2 option (the default scheme has a zero point)")


class CalibratedQuantizer(quantizers.Quantizer):
    """Asymmetric 8-bit activation fake-quant with a range set by calibration and kept fixed.

    TFMOT's MovingAverageQuantizer pulls the range towards each batch's min/max during QAT,
    which undoes calibrated clipping (heavy-tailed ReLU activations: max ~ 10 x the 99.9th
    percentile here); this one only reads its variables. Same FakeQuant op and the same
    min/max variables as TFMOT's, so the TFLite converter treats it identically.
    """

    def build(self, tensor_shape, name, layer):
        keras = get_keras()
        return {"min_var": layer.add_weight(name + "_min", shape=(), trainable=False,
                                            initializer=keras.initializers.Constant(-6.0)),
                "max_var": layer.add_weight(name + "_max", shape=(), trainable=False,
                                            initializer=keras.initializers.Constant(6.0))}

    def __call__(self, inputs, training, weights, **kwargs):
        import tensorflow as tf

        return tf.quantization.fake_quant_with_min_max_vars(inputs, weights["min_var"], weights["max_var"],
                                                            num_bits=8, narrow_range=False)

    def get_config(self):
        return {}

    def __eq__(self, other):
        return isinstance(other, CalibratedQuantizer)

    def __ne__(self, other):
        return not self.__eq__(other)


class FlmQuantizeConfig(QuantizeConfig):
    """Per-layer config: which weights to quantize, whether to quantize the output, pool area."""

    def __init__(self, scheme: str = "default", weight_attrs: Optional[List[str]] = None,
                 quantize_output: bool = False, pool_area: int = 0, search: int = 4,
                 dpu_avgpool: bool = True, per_channel: bool = False, frozen_ranges: bool = True):
        self.scheme = _check_scheme(scheme)
        self.weight_attrs = list(weight_attrs or [])
        self.quantize_output = bool(quantize_output)
        self.pool_area = int(pool_area)
        self.search = int(search)
        self.dpu_avgpool = bool(dpu_avgpool)
        self.per_channel = bool(per_channel)
        self.frozen_ranges = bool(frozen_ranges)

    def _weight_quantizer(self, attr: str):
        if self.scheme == "pof2":
            if attr == "bias":
                return pof2.Pof2BiasQuantizer(self.search)
            return pof2.Pof2WeightQuantizer(self.search)
        # TFMOT's per-axis quantizer works on the last axis: right for Conv2D/Dense kernels,
        # wrong for depthwise kernels (last axis = multiplier), which stay per tensor.
        per_axis = self.per_channel and attr == "kernel"
        return quantizers.LastValueQuantizer(num_bits=8, per_axis=per_axis, symmetric=True, narrow_range=True)

    def get_weights_and_quantizers(self, layer):
        return [(getattr(layer, a), self._weight_quantizer(a)) for a in self.weight_attrs]

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        for a, w in zip(self.weight_attrs, quantize_weights):
            setattr(layer, a, w)

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def pool_gain(self) -> float:
        if self.scheme != "pof2" or not self.dpu_avgpool or not self.pool_area:
            return 1.0
        return pof2.avgpool_gain(self.pool_area)

    def get_output_quantizers(self, layer):
        if self.scheme == "pof2":
            gain = self.pool_gain()
            if gain != 1.0:
                return [pof2.Pof2PoolQuantizer(gain=gain, quantize=self.quantize_output)]
            return [pof2.Pof2ActivationQuantizer()] if self.quantize_output else []
        if not self.quantize_output:
            return []
        if self.frozen_ranges:
            return [CalibratedQuantizer()]
        return [quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                  narrow_range=False)]

    def get_config(self):
        return {"scheme": self.scheme, "weight_attrs": self.weight_attrs,
                "quantize_output": self.quantize_output, "pool_area": self.pool_area, "search": self.search,
                "dpu_avgpool": self.dpu_avgpool, "per_channel": self.per_channel,
                "frozen_ranges": self.frozen_ranges}


def input_range(spec: CropSpec = DEFAULT_SPEC):
    """Float range of the model input under the crop contract (uint8 0..255 normalised)."""
    return (0 - spec.input_mean) * spec.input_scale, (255 - spec.input_mean) * spec.input_scale


def input_quantizer(scheme: str, spec: CropSpec = DEFAULT_SPEC):
    lo, hi = input_range(spec)
    if scheme == "pof2":
        import math

        pos = math.log2(1.0 / spec.input_scale)
        if pos != int(pos) or pof2.quantize_np(lo, int(pos)) != lo or pof2.quantize_np(hi, int(pos)) != hi:
            raise ValueError("crop contract input scale %r is not a power of two fitting int8: the pof2 "
                             "input would be lossy" % spec.input_scale)
        return pof2.Pof2ActivationQuantizer(init_pos=int(pos))
    return quantizers.FixedQuantizer(num_bits=8, init_min=lo, init_max=hi, narrow_range=False)


class _InputQuantize(transforms.Transform):
    """InputLayer -> InputLayer -> QuantizeLayer(scheme's fixed input quantizer)."""

    def __init__(self, quantizer):
        self.quantizer = quantizer

    def pattern(self):
        return transforms.LayerPattern("InputLayer")

    def replacement(self, match_layer):
        from tensorflow_model_optimization.python.core.quantization.keras import utils as quantize_utils

        layer = quantize_layer.QuantizeLayer(self.quantizer)
        cfg = quantize_utils.serialize_layer(layer, use_legacy_format=True)
        cfg["name"] = layer.name
        return transforms.LayerNode(cfg, input_layers=[match_layer])

    def custom_objects(self):
        return custom_objects()


class _Layout(QuantizeLayoutTransform):
    def __init__(self, quantizer):
        self.quantizer = quantizer

    def apply(self, model, layer_quantize_map):
        transformer = model_transformer.ModelTransformer(model, [_InputQuantize(self.quantizer)],
                                                         set(layer_quantize_map.keys()), layer_quantize_map)
        return transformer.transform()


class _NoRegistry(QuantizeRegistry):
    """Every layer is annotated with an explicit config; nothing falls back to a registry."""

    def get_quantize_config(self, layer):
        raise ValueError("layer %s has no flm quantize config" % layer.name)

    def supports(self, layer):
        return False


class FlmScheme(QuantizeScheme):
    def __init__(self, scheme: str = "default", spec: CropSpec = DEFAULT_SPEC):
        self.scheme = _check_scheme(scheme)
        self.spec = spec

    def get_layout_transformer(self):
        return _Layout(input_quantizer(self.scheme, self.spec))

    def get_quantize_registry(self):
        return _NoRegistry()


def custom_objects() -> Dict[str, object]:
    d = dict(pof2.CUSTOM_OBJECTS)
    d.update(FlmQuantizeConfig=FlmQuantizeConfig, CalibratedQuantizer=CalibratedQuantizer,
             FixedQuantizer=quantizers.FixedQuantizer,
             MovingAverageQuantizer=quantizers.MovingAverageQuantizer,
             LastValueQuantizer=quantizers.LastValueQuantizer)
    return d


def scope():
    """Context to load/clone flm quantized models (tfmot's quantize_scope + our objects)."""
    return quantize_scope(custom_objects())


def _consumers(model) -> Dict[str, List[str]]:
    """{layer name: class names of the layers consuming its output} ("<output>" for model outputs)."""
    out: Dict[str, List[str]] = {layer.name: [] for layer in model.layers}
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        for t in inputs:
            out[t._keras_history.layer.name].append(type(layer).__name__)
    for t in model.outputs:
        out[t._keras_history.layer.name].append("<output>")
    return out


def layer_configs(model, opts: SchemeOptions) -> Dict[str, FlmQuantizeConfig]:
    """The plan (module docstring) for a BN-free model: {layer name: FlmQuantizeConfig}."""
    scheme = opts.scheme
    consumers = _consumers(model)
    plan: Dict[str, FlmQuantizeConfig] = {}
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if kind == "BatchNormalization":
            raise ValueError("layer %s: BatchNormalization left in the model; fold it first "
                             "(quant.fold.fold_batchnorm)" % layer.name)
        if kind in PASS_THROUGH:
            plan[layer.name] = FlmQuantizeConfig(scheme)
            continue
        if kind not in WEIGHT_ATTRS and kind not in OUTPUT_LAYERS:
            supported = sorted(set(WEIGHT_ATTRS) | set(OUTPUT_LAYERS) | set(PASS_THROUGH))
            raise ValueError("layer %s (%s) has no quantization rule; supported: %s"
                             % (layer.name, kind, ", ".join(supported)))
        weights: List[str] = []
        if kind in WEIGHT_ATTRS:
            weights.append(WEIGHT_ATTRS[kind])
            if scheme == "pof2" and layer.use_bias:
                weights.append("bias")  # the DPU stores biases as int8 too
        users = consumers[layer.name]
        if (kind in WEIGHT_ATTRS or kind == "Add") and users == ["ReLU"]:
            quantize_output = False  # fused with its ReLU, which quantizes
        elif users and all(u == "Concatenate" for u in users):
            quantize_output = False  # the concat's scale is theirs
        else:
            quantize_output = True
        area = 0
        if kind == "GlobalAveragePooling2D":
            area = int(layer.input.shape[1]) * int(layer.input.shape[2])
        elif kind == "AveragePooling2D":
            area = int(layer.pool_size[0]) * int(layer.pool_size[1])
        plan[layer.name] = FlmQuantizeConfig(scheme, weights, quantize_output, area, opts.search,
                                             opts.dpu_avgpool, opts.per_channel, opts.frozen_ranges)
    return plan


def equalized_float(model, cle_steps: int):
    """`model` with BN folded and `cle_steps` of cross-layer equalization: the float network a
    scheme quantizes (the same function; ReLU commutes with CLE's positive channel scales)."""
    folded = fold_batchnorm(model)
    if cle_steps:
        from quant.cle import equalize

        equalize(folded, cle_steps)
    return folded


def quantize(model, opts: Optional[SchemeOptions] = None,
             spec: CropSpec = DEFAULT_SPEC) -> Tuple[object, object]:
    """(fake-quantized model, the BN-folded float model it was built from).

    Ranges start at the quantizers' defaults: pass both to quant.ranges.init_ranges before
    using the quantized model."""
    keras = get_keras()
    opts = opts or SchemeOptions()
    folded = equalized_float(model, opts.cle_steps)
    if opts.output_offset:
        if len(folded.outputs) != 1:
            raise ValueError("output_offset needs the landmark-only model (1 output), got %d outputs"
                             % len(folded.outputs))
        centre_head(folded, opts.output_offset)
    plan = layer_configs(folded, opts)
    with scope():
        annotated = keras.models.clone_model(
            folded, clone_function=lambda layer: quantize_annotate_layer(layer, plan[layer.name])
            if layer.name in plan else layer)
        annotated.set_weights(folded.get_weights())
        qmodel = quantize_apply(annotated, scheme=FlmScheme(opts.scheme, spec))
    if opts.output_offset:
        out = pof2.OutputOffset(opts.output_offset, name=OFFSET_LAYER)(qmodel.outputs[0])
        qmodel = keras.Model(qmodel.inputs, out, name=qmodel.name)
    return qmodel, folded


#: The layer of a pof2 model with output_offset that adds the offset back.
OFFSET_LAYER = "output_offset"

