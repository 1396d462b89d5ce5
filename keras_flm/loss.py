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

Batch shares are per replica under a tf.distribute strategy (each replica sees its own
share of the global batch); with the default 64 / replica count that is still a sample.
"""
from keras_flm.data.pipeline import ATTR_SLICE, EULER_SLICE, LANDMARK_DIMS


def pfld_loss_terms(y_true, y_pred, pose_weighting: bool = True, attribute_weighting: bool = True):
    """(per-face loss, attribute weight, pose factor, squared landmark error), all (B,)."""
    import tensorflow as tf

    y_true = tf.cast(y_true, tf.float32)
    y_pred = tf.cast(y_pred, tf.float32)
    d2 = tf.reduce_sum(tf.square(y_true[:, :LANDMARK_DIMS] - y_pred[:, :LANDMARK_DIMS]), axis=1)
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


def make_pfld_loss(pose_weighting: bool = True, attribute_weighting: bool = True):
    """A Keras loss function(y_true packed (B, 205), y_pred packed (B, 199)) -> per-face loss (B,)."""

    def pfld_loss(y_true, y_pred):
        return pfld_loss_terms(y_true, y_pred, pose_weighting, attribute_weighting)[0]

    return pfld_loss
