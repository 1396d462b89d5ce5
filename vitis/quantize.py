"""vai_q_tensorflow2 drivers: pof2s PTQ and 8bit_tqt QAT into run/vitis_{ptq,qat}.h5.

PTQ  VitisQuantizer(fp32, 'pof2s', target).quantize_model(calib crops, CLE on, optional
     fast finetune): the DPU's power-of-two scheme, calibrated on the same 500
     training-split crops as the TFMOT flow, normalised by runtime.preprocess.normalize_input.
QAT  the training model (landmarks + auxiliary pose head, packed into one output) so the
     pose-aware PFLD loss (keras_flm.loss) has its Euler predictions;
     VitisQuantizer(packed, '8bit_tqt').get_qat_model(init_quant=True, calib ...), fit,
     VitisQuantizer.get_deploy_model (folds BN, converts TQT thresholds to pof2s), and
     finally the landmark output alone is kept: the board never runs the pose head.

`vq` (the vitis_quantize module, from vitis.tools.load_vai_q()) is a parameter of every
driver: the docker image's, or the host build of `make vai-q` (vitis.vai_q_env). That build
has no target_factory/xcompiler (docker-only), so there the quantizer runs without a
`target` (usable_target): vai_q's target-independent pof2s; vai_c applies the DPU's
constraints when it compiles.

quantize_info() exports the fix position vai_q chose for every quantized tensor
(model_utils.get_quantize_info) as {layer: {"kernel"|"bias"|"output": position}};
positions are value = int8 * 2^-position.
"""
import os
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from keras_flm.model import LANDMARKS
from runtime.preprocess import CropSpec, normalize_input
from vitis.config import VitisConfig

#: Name of the concatenated [landmarks | euler] output the QAT model trains on.
PACKED = "packed"


def older_keras_objects(keras: Any) -> Dict[str, Any]:
    """Custom objects that let Keras 2.12 (Vitis AI docker, the vai_q host build) read H5 files of the
    host's Keras 2.21, whose InputLayer config carries an `optional` key that 2.12 rejects."""
    import inspect

    if "optional" in inspect.signature(keras.layers.InputLayer.__init__).parameters:
        return {}

    class InputLayer(keras.layers.InputLayer):
        def __init__(self, *args: Any, optional: bool = False, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)

    return {"InputLayer": InputLayer}


def load_float_model(path: str) -> Any:
    """A float Keras H5 (fp32.h5, train.h5) in this environment's Keras 2, also when that is 2.12."""
    from keras_flm.keras_compat import get_keras

    keras = get_keras()
    return keras.models.load_model(path, compile=False, custom_objects=older_keras_objects(keras))


def calibration_input(crops_u8: np.ndarray, spec: CropSpec) -> np.ndarray:
    """uint8 crops -> float32 model input (N, 112, 112, 1), exactly as the runtime feeds it."""
    return normalize_input(crops_u8, spec)


def ptq(vq: Any, float_model: Any, calib_x: np.ndarray, cfg: VitisConfig, target: Optional[str]) -> Any:
    """Post-training pof2s quantization; returns the quantized Keras model."""
    quantizer = vq.VitisQuantizer(float_model, quantize_strategy="pof2s", target=target)
    return quantizer.quantize_model(calib_dataset=calib_x, calib_batch_size=cfg.calib_batch_size,
                                    include_cle=cfg.include_cle, cle_steps=cfg.cle_steps,
                                    include_fast_ft=cfg.include_fast_ft, fast_ft_epochs=cfg.fast_ft_epochs)


def packed_model(keras: Any, train_model: Any) -> Any:
    """Training model -> one output [landmarks (196) | euler (3)], the layout keras_flm.loss expects."""
    if len(train_model.outputs) != 2:
        raise ValueError("QAT needs the training model with the auxiliary pose head (2 outputs), "
                         "got %d output(s)" % len(train_model.outputs))
    out = keras.layers.Concatenate(name=PACKED)(list(train_model.outputs))
    return keras.Model(train_model.inputs, out, name="pfld_packed")


def find_layer(model: Any, name: str) -> Any:
    """A layer by its float-model name, also when vai_q wrapped it (QuantizeWrapper 'quant_<name>')."""
    for layer in model.layers:
        inner = getattr(layer, "layer", None)
        if layer.name in (name, "quant_" + name) or getattr(inner, "name", None) == name:
            return layer
    raise ValueError("layer %r not found in %s (layers: %s)"
                     % (name, model.name, ", ".join(layer.name for layer in model.layers[-8:])))


def landmark_model(keras: Any, model: Any) -> Any:
    """The landmark-only graph of a (deploy) model: what the DPU runs."""
    return keras.Model(model.inputs, find_layer(model, LANDMARKS).output, name="pfld")


def qat(vq: Any, keras: Any, train_model: Any, calib_x: np.ndarray, train_data: Any, val_data: Any,
        loss: Any, cfg: VitisConfig, target: Optional[str], optimizer: Any = None,
        callbacks: Optional[List[Any]] = None, steps_per_epoch: Optional[int] = None,
        verbose: int = 2) -> Dict[str, Any]:
    """Quantization-aware fine-tuning; returns {"model": landmark deploy model, "history": ...}."""
    quantizer = vq.VitisQuantizer(packed_model(keras, train_model), quantize_strategy="8bit_tqt",
                                  target=target)
    # The packed concat only feeds the loss: left unquantized, so [landmarks | euler] do not share one
    # power-of-two scale during training (the deploy graph ends at the landmarks, quantized on their own).
    qat_model = quantizer.get_qat_model(init_quant=True, calib_dataset=calib_x,
                                        calib_batch_size=cfg.calib_batch_size, include_cle=cfg.include_cle,
                                        freeze_bn_delay=cfg.freeze_bn_delay, ignore_layers=[PACKED])
    qat_model.compile(optimizer=optimizer or keras.optimizers.Adam(cfg.qat_lr), loss=loss)
    history = qat_model.fit(train_data, validation_data=val_data, epochs=cfg.qat_epochs,
                            steps_per_epoch=steps_per_epoch, callbacks=callbacks or [], verbose=verbose)
    deploy = vq.VitisQuantizer.get_deploy_model(qat_model)
    return {"model": landmark_model(keras, deploy),
            "history": {k: [float(v) for v in vals] for k, vals in getattr(history, "history", {}).items()}}


def dump_golden(vq: Any, model: Any, sample_x: np.ndarray, out_dir: str) -> str:
    """VitisQuantizer.dump_model: per-layer int8 tensors for checking a host emulator or the board."""
    os.makedirs(out_dir, exist_ok=True)
    np.save(os.path.join(out_dir, "input.npy"), sample_x)
    vq.VitisQuantizer.dump_model(model, dataset=sample_x, output_dir=out_dir, dump_float=False)
    return out_dir


def save_h5(model: Any, path: str) -> None:
    """Save a (quantized) Keras model as H5 -- the format vai_c_tensorflow2 reads."""
    model.save(path, save_format="h5", include_optimizer=False)


def usable_target(vq: Any, target: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """(target to quantize for, note): None and why, where this vai_q has no target_factory."""
    if target and getattr(vq, "target_factory", True) is None:
        return None, ("this vai_q_tensorflow2 has no target_factory (a host build: it and xcompiler ship "
                      "only in the Vitis AI docker), so it quantizes without target %s -- vai_q's "
                      "target-independent "
                      "pof2s; vai_c applies the DPU's constraints when compiling" % target)
    return target, None


def about_quantizer(vq: Any) -> Dict[str, Any]:
    """Which vai_q ran: its version and where it comes from (the docker's or a host build)."""
    from vitis import vai_q_env

    version = None
    try:
        from importlib import metadata

        version = metadata.version("vai-q-tensorflow2")
    except Exception:  # noqa: BLE001 - the docker's conda install may carry no metadata
        pass
    return {"version": version, "module": getattr(vq, "__file__", None), "host_build": vai_q_env.in_worker(),
            "target_factory": getattr(vq, "target_factory", None) is not None}


def _tensor_key(key: str, entry: Dict[str, Any]) -> Optional[str]:
    """A quantize_info key of a layer's tensor -> its name in quantize_info_MODE.json."""
    kind = entry.get("type")
    if kind == "weight":
        return "bias" if key.endswith("bias:0") else "kernel"
    if kind in ("output", "post_activation", "pre_activation", "input"):
        return "output"
    return None


def _position(value: Any) -> Any:
    arr = np.asarray(value)
    return int(arr) if arr.ndim == 0 else [int(v) for v in arr.ravel()]


def _entries(info: Dict[str, Any]) -> Iterator[Tuple[str, str, Dict[str, Any]]]:
    """(layer, "kernel"|"bias"|"output", {"quant_pos_var", "min_var", "max_var"}) of vai_q's quantize info.

    An input layer (VitisQuantize) holds one entry {"type": "input", "info": ...}; a wrapped layer
    {tensor key: {"type": ..., "info": ...}} ({} where a fused activation is not quantized alone)."""
    for layer, entries in info.items():
        if entries and "type" in entries and "info" in entries:
            entries = {"input": entries}
        for key, entry in (entries or {}).items():
            name = _tensor_key(key, entry) if isinstance(entry, dict) and "info" in entry else None
            if name is not None and entry["info"].get("quant_pos_var") is not None:
                yield layer, name, entry["info"]


def parse_quantize_info(info: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """vai_q's get_quantize_info() -> {layer: {"kernel"|"bias"|"output": position}}."""
    out: Dict[str, Dict[str, Any]] = {}
    for layer, name, entry in _entries(info):
        out.setdefault(layer, {})[name] = _position(entry["quant_pos_var"])
    return out


def quantize_info(vq: Any, model: Any) -> Dict[str, Any]:
    """{"positions": {layer: {tensor: position}}, "ranges": {layer: {tensor: [min, max]}}, "tensors": N}."""
    raw = vq.model_utils.get_quantize_info(model)
    ranges: Dict[str, Dict[str, Any]] = {}
    for layer, name, entry in _entries(raw):
        if "min_var" in entry and "max_var" in entry:
            ranges.setdefault(layer, {})[name] = [float(np.min(entry["min_var"])),
                                                  float(np.max(entry["max_var"]))]
    positions = parse_quantize_info(raw)
    return {"positions": positions, "ranges": ranges, "tensors": sum(len(v) for v in positions.values())}


def reload_check(vq: Any, keras: Any, path: str, model: Any, sample_x: np.ndarray) -> float:
    """Max |difference| between the saved H5 (reloaded under quantize_scope) and `model` on sample_x."""
    with vq.quantize_scope():
        loaded = keras.models.load_model(path, compile=False)
    diff = float(np.max(np.abs(loaded.predict(sample_x, verbose=0) - model.predict(sample_x, verbose=0))))
    if not diff <= 1e-5:
        raise ValueError("%s does not reproduce the quantized model it was saved from: max |diff| %g"
                         % (path, diff))
    return diff
