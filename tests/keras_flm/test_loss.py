"""PFLD loss: base weight 1 for every face, radians, expected scaling."""
import numpy as np
import pytest

from keras_flm.data.pipeline import ATTR_SLICE, EULER_SLICE, LANDMARK_DIMS, TARGET_DIMS
from keras_flm.loss import make_pfld_loss, pfld_loss_terms

tf = pytest.importorskip("tensorflow")


def _batch(n=4, err=0.01, theta=None, attrs=None, seed=0):
    rng = np.random.default_rng(seed)
    y_true = np.zeros((n, TARGET_DIMS), np.float32)
    y_true[:, :LANDMARK_DIMS] = rng.uniform(0.2, 0.8, (n, LANDMARK_DIMS))
    y_true[:, EULER_SLICE] = rng.uniform(-0.5, 0.5, (n, 3))
    if attrs is not None:
        y_true[:, ATTR_SLICE] = attrs
    y_pred = np.zeros((n, LANDMARK_DIMS + 3), np.float32)
    y_pred[:, :LANDMARK_DIMS] = y_true[:, :LANDMARK_DIMS] + err
    y_pred[:, LANDMARK_DIMS:] = y_true[:, EULER_SLICE] + (0.0 if theta is None else theta)
    return tf.constant(y_true), tf.constant(y_pred)


def _loss(yt, yp, **kw):
    return make_pfld_loss(**kw)(yt, yp).numpy()


def test_attribute_free_faces_keep_weight_one():
    yt, yp = _batch(err=0.01)  # no attributes, perfect pose
    loss = _loss(yt, yp)
    assert (loss > 0).all()
    assert np.allclose(loss, LANDMARK_DIMS * 0.01 ** 2, rtol=1e-4)  # weight 1 x pose factor 1 x sum d^2


def test_zero_error_zero_loss_and_quadratic_scaling():
    yt, yp = _batch(err=0.0)
    assert np.allclose(_loss(yt, yp), 0.0)
    l1 = _loss(*_batch(err=0.01))
    l2 = _loss(*_batch(err=0.02))
    assert np.allclose(l2, 4 * l1, rtol=1e-3)


def test_pose_factor_uses_radians():
    base = _loss(*_batch(err=0.01))
    # one angle off by pi/2 rad: 1 - cos = 1 -> factor 2; all three off by pi: factor 1 + 3 * 2 = 7
    theta = np.array([np.pi / 2, 0, 0], np.float32)
    assert np.allclose(_loss(*_batch(err=0.01, theta=theta)), 2 * base, rtol=1e-4)
    assert np.allclose(_loss(*_batch(err=0.01, theta=np.float32(np.pi))), 7 * base, rtol=1e-4)
    # a 30-degree error is a small factor in radians (1 - cos(0.52) = 0.13), not cos(30) of degrees
    small = _loss(*_batch(err=0.01, theta=np.array([np.pi / 6, 0, 0], np.float32)))
    assert np.allclose(small, base * (2 - np.cos(np.pi / 6)), rtol=1e-4)
    assert np.allclose(_loss(*_batch(err=0.01, theta=np.float32(1.0)), pose_weighting=False), base)


def test_attribute_weight_is_one_plus_inverse_share():
    attrs = np.zeros((4, 6), np.float32)
    attrs[0, 0] = 1  # pose on 1 of 4 faces -> share 0.25 -> weight 1 + 4
    attrs[1, 5] = attrs[2, 5] = 1  # blur on 2 of 4 -> weight 1 + 2
    yt, yp = _batch(err=0.01, attrs=attrs)
    _, w, pose, d2 = pfld_loss_terms(yt, yp)
    assert np.allclose(w.numpy(), [5, 3, 3, 1])
    assert np.allclose(pose.numpy(), 1.0)
    # each present attribute adds M to the batch's total weight: PFLD's balancing
    assert np.isclose(w.numpy().sum(), 4 + 4 + 4)
    assert np.allclose(_loss(yt, yp, attribute_weighting=False), d2.numpy())


def test_gradient_reaches_both_heads():
    yt, yp = _batch(err=0.01, theta=np.float32(0.3))
    yp = tf.Variable(yp)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(make_pfld_loss()(yt, yp))
    g = tape.gradient(loss, yp).numpy()
    assert np.abs(g[:, :LANDMARK_DIMS]).sum() > 0 and np.abs(g[:, LANDMARK_DIMS:]).sum() > 0


def test_wing_term_follows_the_published_formula_in_crop_pixels():
    from keras_flm.loss import WING_EPS_PX, WING_W_PX

    size = 112
    for err_px in (0.5, 2.0, 9.99, 10.01, 30.0):
        yt, yp = _batch(n=2, err=err_px / size)
        got = _loss(yt, yp, pose_weighting=False, attribute_weighting=False, landmark_loss="wing",
                    crop_size=size)
        if err_px < WING_W_PX:
            per = WING_W_PX * np.log1p(err_px / WING_EPS_PX)
        else:
            per = err_px - (WING_W_PX - WING_W_PX * np.log1p(WING_W_PX / WING_EPS_PX))
        np.testing.assert_allclose(got, LANDMARK_DIMS * per / size, rtol=1e-4)
    # continuous at w, and linear (not quadratic) beyond it: an outlier face weighs less than under L2
    lo = _loss(*_batch(err=9.999 / size), landmark_loss="wing", crop_size=size)
    hi = _loss(*_batch(err=10.001 / size), landmark_loss="wing", crop_size=size)
    np.testing.assert_allclose(lo, hi, rtol=1e-3)
    ratio_wing = _loss(*_batch(err=40 / size), landmark_loss="wing") / _loss(*_batch(err=20 / size),
                                                                             landmark_loss="wing")
    assert 1.5 < ratio_wing.mean() < 2.0  # L2 gives 4


def test_wing_keeps_attribute_and_pose_weights():
    attrs = np.zeros((4, 6), np.float32)
    attrs[0, 0] = 1.0  # pose on one face of four: weight 1 + 1 / 0.25 = 5
    yt, yp = _batch(err=0.01, theta=0.3, attrs=attrs)
    full = _loss(yt, yp, landmark_loss="wing")
    bare = _loss(yt, yp, pose_weighting=False, attribute_weighting=False, landmark_loss="wing")
    pose = 1.0 + 3 * (1.0 - np.cos(0.3))
    np.testing.assert_allclose(full, bare * pose * np.array([5.0, 1, 1, 1]), rtol=1e-4)


def test_unknown_landmark_loss_is_refused():
    with pytest.raises(ValueError, match="landmark_loss must be one of l2, wing, got 'l1'"):
        make_pfld_loss(landmark_loss="l1")


def test_run_loss_follows_the_run_config():
    from keras_flm.config import RunConfig
    from keras_flm.loss import run_loss

    cfg = RunConfig()
    yt, yp = _batch(err=0.02)
    np.testing.assert_allclose(run_loss(cfg)(yt, yp).numpy(), _loss(yt, yp))
    cfg.train.landmark_loss = "wing"
    np.testing.assert_allclose(run_loss(cfg)(yt, yp).numpy(), _loss(yt, yp, landmark_loss="wing"))
