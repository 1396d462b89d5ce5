"""Quantization-aware fine-tuning of a trained run (same data pipeline and loss as training).

    train.h5 (landmarks + aux pose head) --fold BN--> fake-quant (quant.scheme, "default"
    or "pof2") --ranges from calibration crops--> fine-tune with PFLD's pose-aware loss,
    small cosine LR, early stopping on validation NME --> landmark-only model -->
    TFLite INT8 + ONNX QDQ (+ the float folded weights as a plain H5 for vai_q).

Why each step:
  * the aux head stays during fine-tuning so the loss is training's loss (its pose
    factor needs predicted angles); it is fake-quantized too but never exported;
  * BN is folded before quantization (quant/fold.py): QAT then trains the weights that ship;
  * ranges start from calibration statistics (quant/ranges.py), not TFMOT's +-6, so the
    first steps already see the deployed rounding (stack-notes: EMA ranges adapt slowly);
  * the best epoch by validation NME of the fake-quant model is kept (epoch 0 = before
    fine-tuning, i.e. the PTQ-equivalent model), so QAT can never end worse than it began.
"""
import time
from dataclasses import asdict, replace
from typing import Any, Dict, Optional

import numpy as np

from keras_flm.keras_compat import get_keras
from keras_flm.model import LANDMARKS
from quant.config import PtqConfig, QatConfig
from runtime.metrics import nme
from runtime.preprocess import CropSpec, normalize_input


def landmark_model(qmodel):
    """The landmark-only part of a (fake-quant) training model: pose head dropped, weights shared."""
    keras = get_keras()
    names = [t._keras_history.layer.name for t in qmodel.outputs]
    idx = [i for i, n in enumerate(names) if n in (LANDMARKS, "quant_" + LANDMARKS)]
    if len(idx) != 1:
        raise ValueError("cannot find the %r output among %s" % (LANDMARKS, names))
    return keras.Model(qmodel.inputs, qmodel.outputs[idx[0]], name="pfld_" + "qat")


def predictor(model, batch: int = 128):
    """x (N, 112, 112, 1) float -> (N, 98, 2), through one traced function (no retracing)."""
    import tensorflow as tf

    fn = tf.function(lambda t: model(t, training=False), reduce_retracing=True)

    def run(x: np.ndarray) -> np.ndarray:
        out = [fn(tf.constant(x[i:i + batch])).numpy() for i in range(0, len(x), batch)]
        return np.concatenate(out).reshape(len(x), -1, 2)

    return run


def float_folded_model(qmodel, float_folded):
    """Copy a fake-quant model's latent float weights into the BN-folded float model (same names).

    The result is a plain Keras model (built-in layers only): what vai_q would quantize."""
    variables = {}
    for layer in qmodel.layers:
        for w in layer.weights:
            variables.setdefault(w.name, w)
    for layer in float_folded.layers:
        if layer.weights:
            missing = [w.name for w in layer.weights if w.name not in variables]
            if missing:
                raise ValueError("QAT model has no variable %s" % missing[0])
            layer.set_weights([variables[w.name].numpy() for w in layer.weights])
    return float_folded


def qat_augment(cfg, qcfg: QatConfig):
    """The AugmentConfig QAT fine-tunes with: the run's own (qcfg.augment == "run") or a preset."""
    from keras_flm.config import augment_preset

    return cfg.augment if qcfg.augment == "run" else augment_preset(qcfg.augment)


def fine_tune(qtrain, cfg, qcfg: QatConfig, train_c, val_c, log=print) -> Dict[str, Any]:
    """Fine-tune the fake-quant training model in place; returns the history (val NME per epoch)."""
    from keras_flm.data.pipeline import make_dataset
    from keras_flm.loss import run_loss

    keras = get_keras()
    spec: CropSpec = cfg.crop
    lm_model = landmark_model(qtrain)
    crops, gt = val_c.contract_crops()
    if qcfg.val_images and len(crops) > qcfg.val_images:
        crops, gt = crops[:qcfg.val_images], gt[:qcfg.val_images]
    x_val = normalize_input(crops, spec)
    predict = predictor(lm_model)

    def val_nme() -> float:
        return float(np.mean(nme(predict(x_val), gt)))

    steps = qcfg.steps_per_epoch or max(1, len(train_c) // qcfg.batch_size)
    lm, eul = qtrain.outputs
    packed = keras.Model(qtrain.inputs, keras.layers.Concatenate(name="packed", dtype="float32")([lm, eul]))
    total = max(1, qcfg.epochs * steps)
    schedule = keras.optimizers.schedules.CosineDecay(qcfg.lr, total, alpha=qcfg.lr_min / qcfg.lr)
    packed.compile(optimizer=keras.optimizers.Adam(schedule, global_clipnorm=cfg.train.clipnorm),
                   loss=run_loss(cfg))
    ds = make_dataset(train_c, qcfg.batch_size, qat_augment(cfg, qcfg), spec, training=True, seed=qcfg.seed,
                      repeat=True)

    history = {"val_nme": [val_nme()], "loss": [None], "epoch_s": [0.0]}
    best, best_epoch, best_w, wait = history["val_nme"][0], 0, qtrain.get_weights(), 0
    log("QAT epoch 0 (calibrated ranges, before fine-tuning): val NME %.4f" % best)
    it = iter(ds)
    for epoch in range(1, qcfg.epochs + 1):
        t0 = time.perf_counter()
        h = packed.fit(it, steps_per_epoch=steps, epochs=1, verbose=0)
        v = val_nme()
        history["val_nme"].append(v)
        history["loss"].append(float(h.history["loss"][-1]))
        history["epoch_s"].append(time.perf_counter() - t0)
        improved = v < best
        if improved:
            best, best_epoch, best_w, wait = v, epoch, qtrain.get_weights(), 0
        else:
            wait += 1
        log("QAT epoch %d/%d: loss %.4f val NME %.4f%s (%.0fs)"
            % (epoch, qcfg.epochs, history["loss"][-1], v, " *" if improved else "", history["epoch_s"][-1]))
        if wait >= qcfg.patience:
            log("early stop: no val NME gain for %d epoch(s)" % wait)
            break
    qtrain.set_weights(best_w)
    history.update(best_val_nme=best, best_epoch=best_epoch, steps_per_epoch=steps)
    return history


def load_qat_data(cfg, qcfg: QatConfig, progress: bool = True):
    """(train cache, val cache) selected as training selected them (optionally fewer images).

    load_data adds the run's cfg.train.extra_train roots (empty for runs older than the field) in
    full, as `flm train` did: qcfg.max_images, like --max-images, subsets the --data root only."""
    from keras_flm.train import load_data

    c = cfg
    if qcfg.max_images:
        c = replace(cfg, train=replace(cfg.train, max_images=qcfg.max_images,
                                       batch_size=min(cfg.train.batch_size, qcfg.batch_size)))
    train_c, val_c, _ = load_data(c, cfg.data["root"], None, progress)
    return train_c, val_c


def run_qat(train_model, cfg, qcfg: QatConfig, scheme: str, calib: np.ndarray,
            pcfg: Optional[PtqConfig] = None, data: Optional[tuple] = None, log=print) -> Dict[str, Any]:
    """Quantize `train_model`, initialise ranges on `calib` as PTQ would, fine-tune.

    Returns {"qtrain", "qinfer" (landmark-only, shares weights), "folded", "history"}."""
    from quant.ranges import init_ranges
    from quant.scheme import SchemeOptions, quantize

    pcfg = pcfg or PtqConfig()
    get_keras().utils.set_random_seed(qcfg.seed)
    t0 = time.perf_counter()
    opts = SchemeOptions(scheme, per_channel=False, frozen_ranges=qcfg.frozen_ranges, search=pcfg.pof2_search,
                         dpu_avgpool=pcfg.pof2_dpu_avgpool,
                         cle_steps=pcfg.cle_steps_for(scheme))
    qtrain, folded = quantize(train_model, opts, cfg.crop)
    init_ranges(qtrain, folded, calib, scheme, cfg.crop, pcfg.pof2_search, pcfg.pof2_sample,
                method=pcfg.range_method,
                percentile=pcfg.act_percentile)
    t_init = time.perf_counter() - t0
    train_c, val_c = data if data is not None else load_qat_data(cfg, qcfg)
    history = fine_tune(qtrain, cfg, qcfg, train_c, val_c, log=log)
    history.update(init_s=t_init, config=asdict(qcfg), scheme=scheme, train_faces=len(train_c),
                   val_faces=len(val_c))
    return {"qtrain": qtrain, "qinfer": landmark_model(qtrain), "folded": folded, "history": history}
