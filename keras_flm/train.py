"""Training: FP32 MobileNetV2-PFLD on WFLW-layout data, into a run directory.

Run directory (runs/NAME/) after `train()`:
  config.json        resolved RunConfig + data summary + library versions
  log.csv            one row per epoch (loss, val_loss, val_nme, lr, epoch_time)
  tb/                TensorBoard logs
  checkpoints/       Keras BackupAndRestore state (weights + optimizer + epoch) for --resume
  train.h5           best training model (with the auxiliary pose head): QAT starts here
  fp32.h5            best inference model (landmarks only), plain load_model, no custom objects
  last.h5            the inference model where training ended (EMA weights with --ema)
  train_state.json   best epoch / val NME / early-stopping counter / finished flag

"Best" = lowest validation NME (inter-ocular, runtime.metrics.nme) on the un-augmented
contract crops of the 10 % validation split; train.h5 and fp32.h5 are rewritten at every
improvement, so a run killed at any point leaves usable models.

Scale: the model, optimizer and loss are built inside a tf.distribute strategy scope;
batch sizes are global and Keras distributes the dataset. Mixed precision only with a GPU.
"""
import logging
import math
import os
import platform
import shutil
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from keras_flm.config import PRECISIONS, RunConfig
from keras_flm.data.cache import CropCache, build_cache, concat_caches
from keras_flm.data.pipeline import make_dataset, oversample_counts, pack_targets, unpack_targets
from keras_flm.keras_compat import get_keras
from keras_flm.lineage import snapshot_init
from keras_flm.loss import run_loss
from keras_flm.model import HEAD, build_training_model, inference_model
from keras_flm.run_files import (
    CHECKPOINTS,
    CONFIG_JSON,
    FP32_H5,
    LAST_H5,
    LOG_CSV,
    TRAIN_H5,
    read_state,
    write_state,
)
from runtime.metrics import nme, pose_weighted
from runtime.preprocess import normalize_input
from runtime.wflw import (
    SPLIT_RECORD,
    AnnotationError,
    annotation_path,
    attribute_shares,
    canonical_root,
    read_annotations,
    run_split,
    split_record,
)

log = logging.getLogger(__name__)



class RunDirError(ValueError):
    """The run directory cannot be used as asked (exists without --resume, missing for --resume)."""


def resolve_strategy(name: str):
    """auto: MirroredStrategy with >1 GPU, else the default strategy; or as named."""
    import tensorflow as tf

    if name == "auto":
        gpus = tf.config.list_physical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":  # cluster from TF_CONFIG; a single worker without it
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError("strategy must be auto, mirrored or multiworker, got %r" % (name,))


def resolve_precision(name: str) -> str:
    """The Keras policy for TrainConfig.precision: "auto" keeps float32 on a CPU, where float16 has
    no fast kernels; bfloat16 is opt-in because only some CPUs (AVX512-BF16, AMX) run it faster."""
    if name not in PRECISIONS:
        raise ValueError("precision must be one of %s, got %r" % (", ".join(PRECISIONS), name))
    if name != "auto":
        return name
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"


def build_models(cfg: RunConfig):
    """(training model [landmarks, euler], packed model whose output is their float32 concat)."""
    keras = get_keras()
    train_model = build_training_model(cfg.model)
    if not cfg.model.aux_pose_head:
        raise ValueError("training needs the auxiliary pose head (model.aux_pose_head=true)")
    lm, eul = train_model.outputs
    packed = keras.layers.Concatenate(name="packed", dtype="float32")([lm, eul])
    return train_model, keras.Model(train_model.inputs, packed, name="pfld_packed")


def make_optimizer(cfg: RunConfig):
    """AdamW (decoupled weight decay, not on BN/bias) with global clip norm.

    The learning rate is a variable the monitor callback sets every step (cosine, see
    `cosine_lr`), so the schedule can also follow a wall-clock budget.
    """
    keras = get_keras()
    t = cfg.train
    ema = {"use_ema": True, "ema_momentum": t.ema} if t.ema else {}
    opt = keras.optimizers.AdamW(learning_rate=t.lr, weight_decay=t.weight_decay, global_clipnorm=t.clipnorm,
                                 **ema)
    opt.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return opt


def cosine_lr(progress: float, lr: float, lr_min: float) -> float:
    """Cosine annealing from lr (progress 0) to lr_min (progress >= 1)."""
    p = min(1.0, max(0.0, progress))
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * p))


#: Early stopping counts epochs without improvement only from this point of the cosine schedule on. Before
#: it the learning rate is high and validation is expected to be worse than a warm start's first epoch:
#: `flm train --init models/pfld98_w1 --lr 3e-4 --time-budget 100` stopped after 11 of ~45 epochs at
#: patience 10, its best the first epoch, with the annealing that makes a cycle pay still ahead.
PATIENCE_FROM_PROGRESS = 0.5


def counts_for_patience(progress: float) -> bool:
    """Whether an epoch ending at this schedule progress without improvement counts towards patience."""
    return progress >= PATIENCE_FROM_PROGRESS


def _atomic_save(model, path: str) -> None:
    import warnings

    import tensorflow as tf

    tmp = path + ".tmp.h5"
    tf_log = tf.get_logger()
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)  # "compiled metrics have yet to be built": noise for an uncompiled model
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*HDF5 file.*legacy.*")
            model.save(tmp, save_format="h5", include_optimizer=False)
    finally:
        tf_log.setLevel(level)
    os.replace(tmp, path)


def init_head_bias(train_model, train: CropCache) -> None:
    """Start the landmark head at the training set's mean shape (its bias), weights untouched.

    The head otherwise starts near 0 while targets sit around 0.5: the first epochs would be
    spent learning a constant.
    """
    _, pts = train.contract_crops()
    fc = train_model.get_layer(HEAD)
    fc.bias.assign(pts.reshape(len(pts), -1).mean(0).astype(np.float32))


def freeze_batchnorm(model) -> int:
    """Run every BatchNormalization layer in inference mode with fixed weights; returns how many."""
    from keras_flm.bn_calibration import batchnorm_layers

    bns = batchnorm_layers(model)
    for layer in bns:
        layer.trainable = False  # tf-keras: a non-trainable BN also normalises with its moving statistics
    return len(bns)


def float32_model(train_model, cfg: RunConfig):
    """`train_model` as a float32 model with trainable layers (a copy when it is neither), which is
    what the files hold."""
    keras = get_keras()
    policy = keras.mixed_precision.global_policy()
    if policy.name == "float32" and not cfg.train.freeze_bn:
        return train_model
    keras.mixed_precision.set_global_policy("float32")
    try:
        src = build_training_model(cfg.model)
        # layer by layer: freezing moves BN weights in the model-level weight order
        for dst, layer in zip(src.layers, train_model.layers):
            dst.set_weights(layer.get_weights())
    finally:
        keras.mixed_precision.set_global_policy(policy)
    return src


def export_models(train_model, cfg: RunConfig, run_dir: str) -> None:
    """Write train.h5 and fp32.h5 from the current weights, always as float32 models."""
    src = float32_model(train_model, cfg)
    _atomic_save(src, os.path.join(run_dir, TRAIN_H5))
    _atomic_save(inference_model(src), os.path.join(run_dir, FP32_H5))


class EmaWeights:
    """Swap a model's trainable weights with the optimizer's moving averages and back.

    tf-keras keeps the averages inside the optimizer and only writes them into the model at the
    end of fit(); validation and best-model exports during training must see them too.
    """

    def __init__(self, model) -> None:
        self.model = model
        self.saved = None

    def __enter__(self):
        opt = self.model.optimizer
        if getattr(opt, "use_ema", False) and getattr(opt, "_model_variables_moving_average", None):
            variables = self.model.trainable_variables
            self.saved = [v.numpy() for v in variables]
            for v in variables:
                v.assign(opt._model_variables_moving_average[opt._index_dict[opt._var_key(v)]])
        return self

    def __exit__(self, *exc) -> None:
        if self.saved is not None:
            for v, value in zip(self.model.trainable_variables, self.saved):
                v.assign(value)
            self.saved = None


def resolve_init_weights(path: str) -> str:
    """The .h5 to start from: a file, or a run/release directory's train.h5 (else fp32.h5)."""
    if os.path.isfile(path):
        return path
    for name in (TRAIN_H5, FP32_H5):
        candidate = os.path.join(path, name)
        if os.path.isfile(candidate):
            return candidate
    raise ValueError("--init %s: not an .h5 file, and no %s or %s in it" % (path, TRAIN_H5, FP32_H5))


def load_init_weights(train_model, path: str, model_cfg=None) -> str:
    """Load weights by layer name (an inference-only fp32.h5 leaves the pose head as initialised).

    A source whose config.json describes a narrower S1 (s1_channels) is widened function-preservingly
    (keras_flm/grow.py), so a wider model starts exactly where the narrow one stopped.
    """
    h5 = resolve_init_weights(path)
    src_cfg = _init_model_config(h5)
    if model_cfg is not None and src_cfg is not None and src_cfg.s1_channels != model_cfg.s1_channels:
        from keras_flm.grow import grow_into

        source = build_training_model(src_cfg)
        source.load_weights(h5, by_name=True)
        try:
            grown = grow_into(train_model, source)
        except ValueError as e:
            raise ValueError("--init %s: cannot widen it into this model (%s)" % (h5, e)) from None
        print("widened %s (s1_channels %d -> %d): %s"
              % (h5, src_cfg.s1_channels, model_cfg.s1_channels, ", ".join(grown)), flush=True)
        return h5
    try:
        train_model.load_weights(h5, by_name=True)
    except ValueError as e:  # shapes differ: another width or point count
        raise ValueError("--init %s does not fit this model (%s): same --width and scheme needed"
                         % (h5, e)) from None
    return h5


def _init_model_config(h5: str):
    """The ModelConfig saved beside an --init .h5 (run or release directory), or None."""
    cfg_path = os.path.join(os.path.dirname(os.path.abspath(h5)), CONFIG_JSON)
    return RunConfig.load(cfg_path).model if os.path.isfile(cfg_path) else None


def landmark_nme(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean inter-ocular NME of packed (or landmark-only) predictions (N, >= 196) against (N, 98, 2)."""
    return float(np.mean(nme(pred[:, :196].reshape(-1, 98, 2), gt)))


def calibrate_best_model(train_model, packed, cfg: RunConfig, run_dir: str, batches,
                         val: CropCache) -> Dict[str, Any]:
    """Precise BN statistics (keras_flm/bn_calibration.py) for the best model (train.h5): rewrite
    train.h5/fp32.h5 when validation NME improves. Returns what was measured."""
    from keras_flm.bn_calibration import recalibrate_bn

    t0 = time.time()
    crops, gt = val.contract_crops()
    x_val, bs = normalize_input(crops), cfg.train.val_batch_size
    train_model.load_weights(os.path.join(run_dir, TRAIN_H5))
    before = landmark_nme(packed.predict(x_val, batch_size=bs, verbose=0), gt)
    used = recalibrate_bn(train_model, batches, cfg.train.bn_calibration_steps)
    after = landmark_nme(packed.predict(x_val, batch_size=bs, verbose=0), gt)
    kept = after < before
    if kept:
        export_models(train_model, cfg, run_dir)
    print("BN statistics re-estimated on %d training batches: val NME %.4f -> %.4f (%s) in %.0f s"
          % (used, before, after, "kept" if kept else "discarded", time.time() - t0), flush=True)
    return {"batches": used, "val_nme_before": before, "val_nme_after": after, "kept": kept,
            "seconds": time.time() - t0}


def refit_best_head(train_model, cfg: RunConfig, run_dir: str, train: CropCache, val: CropCache
                    ) -> Dict[str, Any]:
    """Least-squares refit of the best model's landmark head (keras_flm/head_refit.py) on the exact
    training crops plus copies under the run's box geometry, scored on validation crops both ways:
    rewrite train.h5/fp32.h5 when that improves."""
    from keras_flm.head_refit import GEOMETRY_PASSES, refit_head, tracker_geometry

    def jittered(cache: CropCache, passes: int, seed: int):
        xs, ys = [], []
        for p in range(passes):
            for x, y in make_dataset(cache, cfg.train.val_batch_size, tracker_geometry(cfg.augment), cfg.crop,
                                     training=True, seed=seed + p, drop_remainder=False):
                xs.append(x.numpy())
                ys.append(unpack_targets(y.numpy())[0])
        return np.concatenate(xs), np.concatenate(ys)

    def exact(cache: CropCache):
        crops, pts = cache.contract_crops()
        return normalize_input(crops, cfg.crop), pts

    train_model.load_weights(os.path.join(run_dir, TRAIN_H5))
    seed = cfg.train.seed
    get_keras().utils.set_random_seed(seed)  # the jittered crops are drawn from TF's global generator
    rec = refit_head(train_model, [exact(train), jittered(train, GEOMETRY_PASSES, seed + 11)],
                     {"exact": exact(val), "jittered": jittered(val, 1, seed + 23)})
    if rec["kept"]:
        export_models(train_model, cfg, run_dir)
    print("landmark head refitted on %d training crops (exact + jittered): validation NME exact "
          "%.4f -> %.4f, jittered %.4f -> %.4f (%s) in %.0f s"
          % (rec["fit_crops"], rec["before"]["float"]["exact"], rec["after"]["float"]["exact"],
             rec["before"]["float"]["jittered"], rec["after"]["float"]["jittered"],
             "kept, ridge %g" % rec["lambda"] if rec["kept"] else "discarded", rec["seconds"]), flush=True)
    return rec


def record_head_refit(state: Dict[str, Any], rec: Dict[str, Any], epochs_done: Any) -> None:
    """Put a refit_best_head record into a run's state: the epoch it refitted, and the new best
    validation NME when the refit was kept (`flm train` and `flm model refit-head` alike)."""
    state["head_refit"] = dict(rec, epochs_done=epochs_done)
    if rec["kept"]:
        state["best_val_nme"] = rec["val_nme_after"]


def make_monitor_callback(val: CropCache, train_model, cfg: RunConfig, run_dir: str, resume: bool,
                          steps_per_epoch: int, log_every: int = 0, turned: Optional[CropCache] = None):
    """One Keras callback for the epoch-level control of a run:

    - cosine LR every step, over progress = max(step share, wall-clock share of
      train.time_budget_min): with a budget, the LR reaches lr_min when time runs out;
    - validation NME (runtime.metrics.nme, inter-ocular) and loss on the un-augmented val crops;
      with `turned` (cfg.train.turned_val), also its NME, and the best epoch is then chosen by
      runtime.metrics.pose_weighted of the two ("best_select" in the state);
    - best-model export (train.h5, fp32.h5) at each improvement; early stopping on that number;
    - stop before an epoch that would overrun the time budget;
    - state (best, patience counter, training seconds) in train_state.json, so a resumed
      run carries on where the killed one stopped.
    """
    import tensorflow as tf

    keras = get_keras()
    t = cfg.train
    crops, gt = val.contract_crops()
    x_val = normalize_input(crops)
    y_val = pack_targets(tf.constant(gt), tf.constant(val.euler), tf.constant(val.attributes, tf.float32))
    if turned is not None:
        turned_crops, turned_gt = turned.contract_crops()
        x_turned = normalize_input(turned_crops)
    loss_fn = run_loss(cfg)
    budget_s = t.time_budget_min * 60.0 if t.time_budget_min else None

    class TrainingMonitor(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            st = read_state(run_dir) if resume else {}
            self.best = st.get("best_select", st.get("best_val_nme", float("inf")))
            self.best_real = st.get("best_val_nme")
            self.best_turned = st.get("best_turned_val_nme")
            self.best_epoch = st.get("best_epoch", -1)
            self.wait = st.get("wait", 0)
            self.prior_s = st.get("train_seconds", 0.0)
            self.t_start = time.time()
            self.epoch_times = list(st.get("epoch_times", []))
            self.stop_reason = ""

        def elapsed(self) -> float:
            return self.prior_s + time.time() - self.t_start

        def progress(self, epoch: int, batch: int) -> float:
            p = (epoch + batch / float(steps_per_epoch)) / float(t.epochs)
            if budget_s:
                p = max(p, self.elapsed() / budget_s)
            return p

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            self.t0 = time.time()

        def on_train_batch_begin(self, batch, logs=None):
            lr = cosine_lr(self.progress(self.epoch, batch), t.lr, t.lr_min)
            self.model.optimizer.learning_rate.assign(lr)

        def on_train_batch_end(self, batch, logs=None):
            if log_every and (batch + 1) % log_every == 0:
                rate = (batch + 1) * t.batch_size / max(1e-9, time.time() - self.t0)
                print("  epoch %d step %d/%d loss %.4f  %.1f img/s"
                      % (self.epoch + 1, batch + 1, steps_per_epoch, (logs or {}).get("loss", float("nan")),
                         rate), flush=True)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            with EmaWeights(self.model):
                pred = self.model.predict(x_val, batch_size=t.val_batch_size, verbose=0)
                val_nme = select = landmark_nme(pred, gt)
                turned_nme = None
                if turned is not None:
                    turned_pred = self.model.predict(x_turned, batch_size=t.val_batch_size, verbose=0)
                    turned_nme = landmark_nme(turned_pred, turned_gt)
                    select = pose_weighted(val_nme, turned_nme)
                improved = select < self.best
                if improved:
                    export_models(train_model, cfg, run_dir)
            logs["val_nme"] = val_nme
            if turned is not None:
                logs["val_turned_nme"], logs["val_select"] = turned_nme, select
            logs["val_loss"] = float(tf.reduce_mean(loss_fn(y_val, tf.constant(pred))))
            logs["lr"] = float(self.model.optimizer.learning_rate.numpy())
            logs["epoch_time"] = time.time() - self.t0
            self.epoch_times.append(logs["epoch_time"])
            if improved:
                self.best, self.best_epoch, self.wait = select, epoch + 1, 0
                self.best_real, self.best_turned = val_nme, turned_nme
            else:
                self.wait += int(counts_for_patience(self.progress(epoch + 1, 0)))
                if self.wait >= t.patience:
                    self.model.stop_training = True
                    self.stop_reason = "early stopping (patience %d)" % t.patience
            if budget_s and not self.model.stop_training:
                recent = self.epoch_times[-3:]
                if self.elapsed() + sum(recent) / len(recent) > budget_s:
                    self.model.stop_training = True
                    self.stop_reason = "time budget (%.0f min)" % t.time_budget_min
            write_state(run_dir, {
                "epochs_done": epoch + 1, "best_val_nme": self.best_real, "best_epoch": self.best_epoch,
                "best_select": self.best, "best_turned_val_nme": self.best_turned,
                "wait": self.wait, "early_stopped": bool(self.model.stop_training),
                "stop_reason": self.stop_reason, "train_seconds": self.elapsed(),
                "epoch_times": self.epoch_times, "finished": False})
            stop = ("; stop: " + self.stop_reason) if self.stop_reason else ""
            turned_s = "" if turned is None else " turned %.4f weighted %.4f" % (turned_nme, select)
            print("epoch %d/%d: val_nme %.4f%s%s (best %.4f @ %d) lr %.2e %.0fs%s"
                  % (epoch + 1, t.epochs, val_nme, turned_s, " *" if improved else "", self.best,
                     self.best_epoch, logs["lr"], logs["epoch_time"], stop), flush=True)

    return TrainingMonitor()


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def versions() -> Dict[str, str]:
    import cv2
    import tensorflow as tf

    keras = get_keras()
    import keras_flm

    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": getattr(keras, "__version__", "?"), "numpy": np.__version__, "opencv": cv2.__version__,
            "flm": keras_flm.__version__}


def prepare_run_dir(run_dir: str, resume: bool, overwrite: bool) -> None:
    cfg_path = os.path.join(run_dir, CONFIG_JSON)
    if resume:
        if not os.path.isfile(cfg_path):
            raise RunDirError("cannot resume: %s not found (start a new run without --resume)" % cfg_path)
        return
    if os.path.exists(run_dir) and os.listdir(run_dir):
        if not overwrite:
            raise RunDirError("run directory %s already exists and is not empty: use --resume to continue "
                              "it, --overwrite to start over, or another --run" % run_dir)
        shutil.rmtree(run_dir)
    os.makedirs(run_dir, exist_ok=True)


def check_extra_train(roots: Sequence[str], data_root: str,
                      train_cfg: Optional[Any] = None) -> Tuple[str, ...]:
    """The --extra-train roots as absolute paths, or a ValueError naming the bad one: missing, no
    train list, the --data root itself (its validation faces would be trained on), given twice, or
    (with `train_cfg`) derived from another split than this run's (its `runtime.wflw.SPLIT_RECORD`,
    e.g. turned copies of faces that are validation faces here).
    Called before the run directory is touched, so a typo costs nothing."""
    main = canonical_root(data_root)
    out: List[str] = []
    seen = set()
    for root in roots:
        path = os.path.abspath(os.path.expanduser(str(root)))
        try:
            annotation_path(path, "train")
        except AnnotationError as e:
            raise AnnotationError("--extra-train: %s" % e) from None  # e names the missing path
        real = os.path.realpath(path)
        if real == main:
            raise ValueError("--extra-train %s is the --data root: its validation faces would be trained on"
                             % path)
        if real in seen:
            raise ValueError("--extra-train %s is given twice" % path)
        if train_cfg is not None:
            check_split_record(path, data_root, train_cfg)
        seen.add(real)
        out.append(path)
    return tuple(out)


def split_differences(made: Dict[str, Any], data_root: str, train_cfg: Any, part: str) -> List[str]:
    """How a root's split record (runtime.wflw.SPLIT_RECORD) differs from this run's split and
    `part` ("train" or "val"), one "key value (this run: value)" per difference."""
    t = train_cfg
    want = dict(split_record(data_root, t.seed, t.val_fraction, t.max_images), part=part)
    made = dict(made, part=made.get("part", "train"))  # records before the part was written: training copies
    return ["%s %r (this run: %r)" % (k, made.get(k), v) for k, v in want.items() if made.get(k) != v]


def check_split_record(root: str, data_root: str, train_cfg: Any) -> None:
    """Refuse an extra root made from another split of the training faces than this run's."""
    from keras_flm.report_md import read_json

    made = read_json(os.path.join(root, SPLIT_RECORD), None)
    if made is None:
        return  # not derived from a split (e.g. other people's faces)
    if made.get("part", "train") != "train":
        raise ValueError("--extra-train %s was made from the %s part of a split (%s says so): it is a "
                         "judge of models, never training data" % (root, made.get("part"), SPLIT_RECORD))
    diff = split_differences(made, data_root, train_cfg, "train")
    if diff:
        raise ValueError("--extra-train %s was made from the training faces of another split: %s; "
                         "its copies of this run's validation faces would be trained on (remake it for "
                         "this split)"
                         % (root, ", ".join(diff)))


def check_turned_val(root: str, data_root: str, train_cfg: Any) -> str:
    """`root` as an absolute path, or a ValueError unless it holds turned copies of this run's own
    validation faces (its runtime.wflw.SPLIT_RECORD names this split and part "val", as
    scripts/make_pose_data.py --part val writes): turned copies of training faces would reward
    the model that trained on them."""
    from keras_flm.report_md import read_json

    path = os.path.abspath(os.path.expanduser(str(root)))
    annotation_path(path, "test")  # AnnotationError naming what is missing
    made = read_json(os.path.join(path, SPLIT_RECORD), None)
    if made is None:
        raise ValueError("turned validation set %s has no %s: make it with scripts/make_pose_data.py "
                         "--part val --run RUN --out %s" % (path, SPLIT_RECORD, root))
    diff = split_differences(made, data_root, train_cfg, "val")
    if diff:
        raise ValueError("%s is not a turned copy of this run's validation faces: %s"
                         % (path, ", ".join(diff)))
    return path


def load_turned_val(cfg: RunConfig, cache_dir: Optional[str], progress: bool) -> Optional[CropCache]:
    """The crop cache of cfg.train.turned_val's faces (its test list), None without one."""
    root = cfg.train.turned_val
    if not root:
        return None
    return build_cache(read_annotations(root, "test"), root, "test", cfg.crop, cfg.augment.cache_margin,
                       cache_dir=cache_dir, progress=progress)


def load_data(cfg: RunConfig, data_root: str, cache_dir: Optional[str], progress: bool):
    """(train cache, val cache, data summary) from the train list of a WFLW-layout root.

    The roots of cfg.train.extra_train add their whole train lists to the training faces after the
    split, so validation is the --data root's split with or without them; --max-images subsets
    the --data root only.
    """
    records = read_annotations(data_root, "train")
    n_all = len(records)
    t = cfg.train
    records, train_recs, val_recs = run_split(records, t.seed, t.val_fraction, t.max_images)
    cache = build_cache(records, data_root, "train", cfg.crop, cfg.augment.cache_margin,
                        cache_dir=cache_dir, progress=progress)
    val_lines = {r.line for r in val_recs}
    is_val = np.array([int(line) in val_lines for line in cache.lines])
    train_c, val_c = cache.take(np.flatnonzero(~is_val)), cache.take(np.flatnonzero(is_val))
    extras, extra_recs = [], []
    parts = [train_c]
    for root in cfg.train.extra_train:
        recs = read_annotations(root, "train")
        part = build_cache(recs, root, "train", cfg.crop, cfg.augment.cache_margin,
                           cache_dir=cache_dir, progress=progress)
        parts.append(part)
        extra_recs.extend(recs)
        extras.append({"root": os.path.abspath(root), "faces": len(part), "cache": part.meta.get("path"),
                       "euler_deg_abs_mean": [float(v) for v in np.abs(part.euler).mean(0)]})
    train_c = concat_caches(parts)
    if len(train_c) < cfg.train.batch_size:
        raise ValueError("only %d training faces for a batch size of %d: lower --batch-size or raise "
                         "--max-images" % (len(train_c), cfg.train.batch_size))
    if len(val_c) == 0:
        raise ValueError("validation split is empty (val_fraction=%g, %d faces)"
                         % (cfg.train.val_fraction, len(records)))
    summary = {"root": os.path.abspath(data_root), "list_faces": n_all, "used_faces": len(records),
               "train_faces": len(train_c), "val_faces": len(val_c),
               "attribute_shares": attribute_shares(train_recs + extra_recs), "cache": cache.meta.get("path"),
               "euler_deg_abs_mean": [float(v) for v in np.abs(cache.euler).mean(0)], "extra_train": extras}
    return train_c, val_c, summary


def train(cfg: RunConfig, data_root: str, run_dir: str, resume: bool = False, overwrite: bool = False,
          cache_dir: Optional[str] = None, progress: bool = True, verbose: Optional[int] = None,
          log_every: int = 20) -> Dict:
    """Train into run_dir; returns the final train_state (best val NME etc.).

    The Keras precision policy is process-global: the run's (TrainConfig.precision) is set for the run
    and the caller's put back afterwards, so a bfloat16 run does not change later models in-process.
    """
    keras = get_keras()
    previous = keras.mixed_precision.global_policy()
    try:
        return _train(cfg, data_root, run_dir, resume, overwrite, cache_dir, progress, verbose, log_every)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _train(cfg: RunConfig, data_root: str, run_dir: str, resume: bool, overwrite: bool,
           cache_dir: Optional[str], progress: bool, verbose: Optional[int], log_every: int) -> Dict:

    keras = get_keras()
    if cfg.train.init and not resume:
        resolve_init_weights(cfg.train.init)  # a bad --init fails before anything is written
    # likewise a missing --extra-train root; on --resume the stored (absolute) roots are checked again
    cfg.train.extra_train = check_extra_train(cfg.train.extra_train, data_root, cfg.train)
    if cfg.train.turned_val:
        cfg.train.turned_val = check_turned_val(cfg.train.turned_val, data_root, cfg.train)
    prepare_run_dir(run_dir, resume, overwrite)
    keras.utils.set_random_seed(cfg.train.seed)
    train_c, val_c, summary = load_data(cfg, data_root, cache_dir, progress)
    turned_c = load_turned_val(cfg, cache_dir, progress)
    if turned_c is not None:
        summary["turned_val"] = {"root": cfg.train.turned_val, "faces": len(turned_c)}

    strategy = resolve_strategy(cfg.train.strategy)
    policy = resolve_precision(cfg.train.precision)
    keras.mixed_precision.set_global_policy(policy)
    summary.update(strategy=type(strategy).__name__, replicas=strategy.num_replicas_in_sync,
                   mixed_precision=policy != "float32", policy=policy)
    cfg.data = dict(cfg.data, **summary)
    cfg.versions = versions()
    cfg.save(os.path.join(run_dir, CONFIG_JSON))
    if cfg.train.init and not resume:  # the start's history, before a rebuilt release replaces it
        snapshot_init(run_dir, cfg.train.init)

    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    t = cfg.train
    counts = oversample_counts(train_c, t.oversample) if t.oversample else None
    steps = t.steps_per_epoch or int(len(train_c) if counts is None else counts.sum()) // t.batch_size
    ds = make_dataset(train_c, t.batch_size, cfg.augment, cfg.crop, training=True, seed=t.seed,
                      repeat=t.steps_per_epoch is not None, counts=counts)
    with strategy.scope():
        train_model, packed = build_models(cfg)
        init_head_bias(train_model, train_c)  # on --resume, BackupAndRestore then loads the saved weights
        if t.init and not resume:
            source = load_init_weights(train_model, t.init, cfg.model)
            print("starting from the weights of %s" % source, flush=True)
        if t.freeze_bn:
            print("BatchNormalization frozen in %d layers" % freeze_batchnorm(train_model), flush=True)
        packed.compile(optimizer=make_optimizer(cfg),
                       loss=run_loss(cfg))

    callbacks = [
        make_monitor_callback(val_c, train_model, cfg, run_dir, resume, steps,
                              log_every=0 if verbose == 1 else log_every, turned=turned_c),
        keras.callbacks.BackupAndRestore(os.path.join(run_dir, CHECKPOINTS), delete_checkpoint=False),
        keras.callbacks.CSVLogger(os.path.join(run_dir, LOG_CSV), append=resume),
        keras.callbacks.TerminateOnNaN(),
    ]
    if _has_tensorboard():
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "tb"), histogram_freq=0,
                                                     profile_batch=0, write_graph=False))
    else:
        log.warning("tensorboard is not installed: no TensorBoard logs (log.csv has the same numbers)")
    packed.fit(ds, epochs=t.epochs, steps_per_epoch=t.steps_per_epoch, callbacks=callbacks,
               verbose=verbose)
    # where training ended: fit() has written the EMA weights into the model
    _atomic_save(inference_model(float32_model(train_model, cfg)), os.path.join(run_dir, LAST_H5))

    state = read_state(run_dir)
    if not os.path.isfile(os.path.join(run_dir, TRAIN_H5)):
        raise RuntimeError("training produced no model (no finite validation NME): see %s" % LOG_CSV)
    done = state.get("epochs_done")
    # frozen BN keeps the start's statistics on purpose: no re-estimation from augmented batches
    calibrated = (state.get("bn_calibration") or {}).get("epochs_done") == done
    if t.bn_calibration_steps and not t.freeze_bn and not calibrated:
        calib = make_dataset(train_c, t.batch_size, cfg.augment, cfg.crop, training=True, seed=t.seed + 1,
                             repeat=True, counts=counts)
        state["bn_calibration"] = calibrate_best_model(train_model, packed, cfg, run_dir, calib, val_c)
        state["bn_calibration"]["epochs_done"] = done
        state["best_val_nme"] = min(state["best_val_nme"], state["bn_calibration"]["val_nme_after"])
    if t.head_refit and (state.get("head_refit") or {}).get("epochs_done") != done:
        record_head_refit(state, refit_best_head(train_model, cfg, run_dir, train_c, val_c), done)
    # fp32.h5 and train.h5 already hold the best epoch's weights (written at each improvement).
    state["finished"] = True
    write_state(run_dir, state)
    try:
        from keras_flm.run_report import write_run_sections

        write_run_sections(run_dir)
    except (OSError, ValueError) as e:  # the model is trained and saved: do not fail the run here
        log.warning("could not write the run section of report.md: %s", e)
    return state
