"""Stand-ins for vai_q_tensorflow2's `vitis_quantize` and `vitis_inspect` (docs/vitis-ai.md §2).

Signatures follow vitis_quantize.py / vitis_inspect.py of Vitis AI 3.5; unknown keyword
arguments raise TypeError like the real methods' would. Results are real: quantized models
are Keras clones whose Conv/DepthwiseConv/Dense weights are rounded to int8 with a
per-tensor power-of-two scale (the pof2s scheme, round half to even), calibration really
predicts on the calibration data, and dump_model writes int8 tensors of real activations.
"""
import contextlib
import os
import types
from typing import Any, Dict

import numpy as np

from keras_flm.keras_compat import get_keras

STRATEGIES = {"pof2s", "8bit", "pof2s_tqt", "8bit_tqt", "fs", "fsx"}
#: Configs the real quantize strategy accepts through **kwargs (the subset the drivers use).
KNOWN_CONFIGS = {"include_cle", "cle_steps", "include_fast_ft", "fast_ft_epochs", "convert_relu6_to_relu",
                 "freeze_bn_delay", "output_format", "output_dir", "input_layers", "output_layers",
                 "ignore_layers", "include_bias_corr"}
WEIGHT_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense", "Conv2DTranspose")
CPU_CLASSES = {"Softmax", "Lambda", "TFOpLambda", "Rescaling"}

calls = []  # (method, kwargs) of every call, for assertions


def pof2_position(x: np.ndarray, bits: int = 8) -> int:
    """Largest fix point whose int8 range still holds max|x| (the non-overflow position)."""
    m = float(np.max(np.abs(x))) if x.size else 0.0
    if m == 0.0:
        return bits - 1
    return int(np.floor(np.log2((2 ** (bits - 1) - 1) / m)))


def quantize_pof2(x: np.ndarray, pos: int) -> np.ndarray:
    return np.clip(np.round(x * 2.0 ** pos), -128, 127) / 2.0 ** pos


def _check_kwargs(kwargs: Dict[str, Any], model: Any) -> None:
    unknown = set(kwargs) - KNOWN_CONFIGS
    if unknown:
        raise TypeError("unknown quantize config(s): %s" % sorted(unknown))
    names = {layer.name for layer in model.layers}
    for key in ("input_layers", "output_layers", "ignore_layers"):
        missing = set(kwargs.get(key) or []) - names
        if missing:
            raise ValueError("%s %s not found in the model" % (key, sorted(missing)))


def _clone_quantized(model: Any) -> Any:
    keras = get_keras()
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for layer in clone.layers:
        if layer.__class__.__name__ in WEIGHT_LAYERS:
            ws = layer.get_weights()
            layer.set_weights([quantize_pof2(w, pof2_position(w)) for w in ws])
    return clone


class VitisQuantizer(object):
    def __init__(self, float_model, quantize_strategy="pof2s", custom_quantize_strategy=None,
                 custom_objects={}, target=None, target_type=None):  # noqa: B006 - the real default
        if quantize_strategy not in STRATEGIES:
            raise ValueError("unknown quantize_strategy %r" % quantize_strategy)
        if target is not None and not (target.startswith("DPU") or target.endswith(".json")
                                       or target.startswith("0x")):
            raise ValueError("[Quantizer_TF2_Invalid_Target] %s" % target)
        self._float_model = float_model
        self.strategy = quantize_strategy
        self.target = target
        calls.append(("__init__", {"quantize_strategy": quantize_strategy, "target": target}))

    def quantize_model(self, loss=None, metrics=None, calib_dataset=None, calib_batch_size=None,
                       calib_steps=None, eval_dataset=None, verbose=0, add_shape_info=False, input_shape=None,
                       configs={}, **kwargs):  # noqa: B006
        _check_kwargs(kwargs, self._float_model)
        if calib_dataset is None:
            raise ValueError("[Quantizer_TF2_Invalid_Calib_Dataset] Need to assign `calib_dataset`")
        calls.append(("quantize_model", dict(kwargs, calib_batch_size=calib_batch_size,
                                             n_calib=len(calib_dataset))))
        self._float_model.predict(calib_dataset, batch_size=calib_batch_size or 32, verbose=0)
        return _clone_quantized(self._float_model)

    def get_qat_model(self, init_quant=False, calib_dataset=None, calib_batch_size=None, calib_steps=None,
                      configs={}, **kwargs):  # noqa: B006
        _check_kwargs(kwargs, self._float_model)
        calls.append(("get_qat_model", dict(kwargs, init_quant=init_quant)))
        if init_quant:
            if calib_dataset is None:
                raise ValueError("init_quant=True needs calib_dataset")
            self._float_model.predict(calib_dataset, batch_size=calib_batch_size or 32, verbose=0)
            return _clone_quantized(self._float_model)
        keras = get_keras()
        clone = keras.models.clone_model(self._float_model)
        clone.set_weights(self._float_model.get_weights())
        return clone

    @staticmethod
    def get_deploy_model(model, add_shape_info=False, input_shape=None):
        calls.append(("get_deploy_model", {}))
        return _clone_quantized(model)

    @staticmethod
    def dump_model(model, dataset=None, output_dir="./dump_results", dump_float=False, weights_only=False):
        keras = get_keras()
        os.makedirs(output_dir, exist_ok=True)
        for layer in model.layers:
            for i, w in enumerate(layer.get_weights()):
                pos = pof2_position(w)
                q = np.clip(np.round(w * 2.0 ** pos), -128, 127).astype(np.int8)
                q.tofile(os.path.join(output_dir, "%s_w%d_fix%d.bin" % (layer.name, i, pos)))
        if weights_only:
            return
        if dataset is None:
            raise ValueError("`dataset` is needed to dump with activation.")
        outs = [layer.output for layer in model.layers[1:]]
        acts = keras.Model(model.inputs, outs).predict(np.asarray(dataset)[:1], verbose=0)
        for layer, a in zip(model.layers[1:], acts):
            pos = pof2_position(a)
            np.clip(np.round(a * 2.0 ** pos), -128, 127).astype(np.int8).tofile(
                os.path.join(output_dir, "%s_fix%d.bin" % (layer.name, pos)))
            if dump_float:
                a.astype(np.float32).tofile(os.path.join(output_dir, "%s_float.bin" % layer.name))


def quantize_scope(*args):
    return contextlib.nullcontext()


class InspectResult(object):
    def __init__(self, device, notes):
        self.device = device
        self.notes = notes
        self.id = None

    def get_notes(self, layer_name=None):
        return list(self.notes)


class VitisInspector(object):
    def __init__(self, quantize_strategy="pof2s", custom_quantize_strategy=None,
                 custom_objects={}, target=None, target_type=None):  # noqa: B006 - the real default
        self.target = target

    def inspect_model(self, float_model, input_shape=None, plot=False, plot_file="model.svg",
                      dump_model=False, dump_model_file="inspect_model.h5", dump_results=True,
                      dump_results_file="inspect_results.txt", verbose=0, configs={}, **kwargs):  # noqa: B006
        results = {}
        lines = ["[MODEL INFO]:", "Model Name: %s" % float_model.name, "ID Name Type Device Notes"]
        for i, layer in enumerate(float_model.layers):
            cls = layer.__class__.__name__
            dev = "INPUT" if cls == "InputLayer" else ("CPU" if cls in CPU_CLASSES else "DPU")
            notes = ["%s is not supported by target %s" % (cls, self.target)] if dev == "CPU" else []
            res = InspectResult(dev, notes)
            res.id = i
            results[layer] = res
            lines.append("%d/%d %s %s %s %s" % (i, len(float_model.layers) - 1, layer.name, cls, dev,
                                               "; ".join(notes)))
        if all(r.device in ("INPUT", "DPU") for r in results.values()):
            lines.append("  All layers are supported and successfully mapped to DPU.")
        if dump_results:
            with open(dump_results_file, "w") as f:
                f.write("\n".join(lines))
        return results


vitis_quantize = types.SimpleNamespace(VitisQuantizer=VitisQuantizer, quantize_scope=quantize_scope)
vitis_inspect = types.SimpleNamespace(VitisInspector=VitisInspector)
