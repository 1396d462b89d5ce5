"""PFLD's pose- and attribute-weighted landmark loss, with the reference bugs fixed.

Published form (PFLD, Guo et al. 2019):
    L = 1/M sum_m sum_n (sum_c w_n^c sum_k (1 - cos theta_n^k)) ||d_n^m||^2
For face n of a batch of M: d_n = landmark error over the 98 points (crop-normalised),
theta_n^k = predicted minus ground-truth yaw/pitch/roll (the auxiliary head's error),
w^c = 1 / (share of attribute c in the batch).

What this implementation computes, per face (Keras then averages over the batch):
    loss_n = a_n * p_n * sum_points ||d_n||^2
    a_n = 1 + sum_{c present on n} 1 / share_c          (attribute weight)
    p_n = 1 + sum_k (1 - cos theta_n^k), theta in RADIANS (pose factor)
Fixes (docs/pfld-wflw.md): the base 1 in a_n keeps attribute-free faces in the loss (the
references give them weight 0); the base 1 in p_n keeps the landmark loss alive once the
pose head is accurate (a pure sum of (1 - cos) vanishes at theta = 0); angles are radians,
not degrees fed to cos. Since sum_n a_nc / share_c = M for every attribute c present, each
rare attribute gets as much total weight as the base term: PFLD's balancing, kept.

`landmark_loss="wing"` replaces ||d_n||^2 by the sum of Wing losses over the 196 coordinates
(Feng et al., CVPR 2018; w = 10 px, eps = 2 px measured on the crop): L1-like for mid-size errors,
log-shaped near zero, so small errors on the many easy points keep a strong gradient where L2's
vanishes, and outlier faces do not dominate the batch. NME is a mean of distances, not squared
distances, which is why L1-type losses fit it better.

Batch shares are per replica under a tf.distribute strategy (each replica sees its own
share of the global batch); with the default 64 / replica count that is still a sample.
"""
from keras_flm.config import LANDMARK_LOSSES
from keras_flm.data.pipeline import ATTR_SLICE, EULER_SLICE, LANDMARK_DIMS

WING_W_PX = 10.0
WING_EPS_PX = 2.0


def _check_landmark_loss(name: str) -> None:
    if name not in LANDMARK_LOSSES:
        raise ValueError("landmark_loss must be one of %s, got %r" % (", ".join(LANDMARK_LOSSES), name))


def wing_sum(diff, crop_size: int):
    """Per-face sum of Wing losses of crop-normalised coordinate errors (B, K) -> (B,), in crop units."""
    import math

    import tensorflow as tf

    x = tf.abs(diff) * float(crop_size)
    c = WING_W_PX - WING_W_PX * math.log(1.0 + WING_W_PX / WING_EPS_PX)
    wing = tf.where(x < WING_W_PX, WING_W_PX * tf.math.log1p(x / WING_EPS_PX), x - c)
    return tf.reduce_sum(wing, axis=1) / float(crop_size)


def pfld_loss_terms(y_true, y_pred, pose_weighting: bool = True, attribute_weighting: bool = True,
                    landmark_loss: str = "l2", crop_size: int = 112):
    """(per-face loss, attribute weight, pose factor, landmark error term), all (B,)."""
    import tensorflow as tf

    _check_landmark_loss(landmark_loss)
    y_true = tf.cast(y_true, tf.float32)
    y_pred = tf.cast(y_pred, tf.float32)
    diff = y_true[:, :LANDMARK_DIMS] - y_pred[:, :LANDMARK_DIMS]
    if landmark_loss == "wing":
        d2 = wing_sum(diff, crop_size)
    else:
        d2 = tf.reduce_sum(tf.square(diff), axis=1)
    ones = tf.ones_like(d2)
    if pose_weighting:
        theta = y_pred[:, EULER_SLICE] - y_true[:, EULER_SLICE]
        pose = 1.0 + tf.reduce_sum(1.0 - tf.cos(theta), axis=1)
    else:
        pose = ones
    if attribute_weighting:
        attrs = y_true[:, ATTR_SLICE]
        share = tf.reduce_mean(attrs, axis=0)
        inv = tf.math.divide_no_nan(tf.ones_like(share), share)
        attr_w = 1.0 + tf.reduce_sum(attrs * inv[None, :], axis=1)
    else:
        attr_w = ones
    return attr_w * pose * d2, attr_w, pose, d2


def make_pfld_loss(pose_weighting: bool = True, attribute_weighting: bool = True, landmark_loss: str = "l2",
                   crop_size: int = 112):
    """A Keras loss function(y_true packed (B, 205), y_pred packed (B, 199)) -> per-face loss (B,)."""
    _check_landmark_loss(landmark_loss)

    def pfld_loss(y_true, y_pred):
        terms = pfld_loss_terms(y_true, y_pred, pose_weighting, attribute_weighting, landmark_loss, crop_size)
        return terms[0]

    return pfld_loss


def run_loss(cfg):
    """The loss a run trained with (RunConfig): training, validation, QAT and the vitis QAT share it."""
    t = cfg.train
    return make_pfld_loss(t.pose_weighting, t.attribute_weighting, t.landmark_loss, cfg.crop.size)
