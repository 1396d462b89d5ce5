"""vai_q_tensorflow2 drivers: pof2s PTQ and 8bit_tqt QAT into run/vitis_{ptq,qat}.h5.

PTQ  VitisQuantizer(fp32, 'pof2s', target).quantize_model(calib crops, CLE on, optional
     fast finetune): the DPU's power-of-two scheme, calibrated on the same 500
     training-split crops as the TFMOT flow, normalised by runtime.preprocess.normalize_input.
QAT  the training model (landmarks + auxiliary pose head, packed into one output) so the
     pose-aware PFLD loss (keras_flm.loss) has its Euler predictions;
     VitisQuantizer(packed, '8bit_tqt').get_qat_model(init_quant=True, calib ...), fit,
     VitisQuantizer.get_deploy_model (folds BN, converts TQT thresholds to pof2s), and
     finally the landmark output alone is kept: the board never runs the pose head.

`vq` (the vitis_quantize module) is a parameter of every driver, so tests run them with a
stand-in that follows the documented API; in the docker it is the real module from
vitis.tools.load_vai_q().
"""
import os
from typing import Any, Dict, List, Optional

import numpy as np

from keras_flm.model import LANDMARKS
from runtime.preprocess import CropSpec, normalize_input
from vitis.config import VitisConfig

#: Name of the concatenated [landmarks | euler] output the QAT model trains on.
PACKED = "packed"


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
