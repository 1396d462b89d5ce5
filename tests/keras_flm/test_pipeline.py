"""Crop cache and augmentation geometry: crops match the runtime contract, landmarks move
with the pixels, flips swap left and right."""
import math

import cv2
import numpy as np
import pytest

from keras_flm.config import AugmentConfig, augment_preset
from keras_flm.data.cache import CropCache, build_cache, cache_spec
from keras_flm.data.pipeline import NO_AUGMENT, TARGET_DIMS, augment_geometry, make_dataset, unpack_targets
from runtime.landmarks import MIRROR
from runtime.preprocess import CropSpec, box_from_landmarks, crop_face, normalize_input, to_crop_normalised
from runtime.wflw import load_image, read_annotations, subset

tf = pytest.importorskip("tensorflow")
SPEC = CropSpec()


@pytest.fixture(scope="module")
def faces(faces98, tmp_path_factory):
    recs = subset(read_annotations(faces98, "train"), 12, seed=5)
    cache = build_cache(recs, str(faces98), "train", SPEC, 1.75, cache_dir=str(tmp_path_factory.mktemp("c")),
                        progress=False)
    return recs, cache


def _geometry(cache, aug=NO_AUGMENT, **fixed):
    x, p, e = augment_geometry(tf.constant(np.asarray(cache.images)), tf.constant(cache.landmarks),
                               tf.constant(cache.euler), aug, SPEC, training=bool(fixed), **fixed)
    return x.numpy(), p.numpy(), e.numpy()


def test_cache_spec_keeps_pixel_size():
    cspec, off = cache_spec(SPEC, 1.75)
    assert cspec.size == 112 + 2 * off and off == 42
    assert math.isclose(cspec.scale / cspec.size, SPEC.scale / SPEC.size)


def test_unaugmented_crop_is_the_runtime_crop(faces):
    recs, cache = faces
    x, pts, _ = _geometry(cache)
    crops, cpts = cache.contract_crops()
    for i, r in enumerate(recs):
        ref, affine = crop_face(load_image(r), box_from_landmarks(r.landmarks), SPEC)
        # same frame samples; OpenCV's fixed-point bilinear weights may differ by a level or two
        assert np.abs(x[i] - ref.astype(np.float32)).max() <= 3
        assert np.abs(crops[i].astype(int) - ref).mean() < 0.5
        assert np.allclose(pts[i], to_crop_normalised(r.landmarks, affine), atol=1e-5)
        assert np.allclose(cpts[i], pts[i], atol=1e-5)


def test_validation_dataset_matches_normalize_input(faces):
    _, cache = faces
    xb, yb = next(iter(make_dataset(cache, 12, training=False)))
    crops, pts = cache.contract_crops()
    assert yb.shape == (12, TARGET_DIMS)
    assert np.allclose(xb.numpy(), normalize_input(crops), atol=3 / 128 + 1e-6)
    lm, eul, attrs = unpack_targets(yb.numpy())
    assert np.allclose(lm, pts, atol=1e-5)
    assert np.allclose(eul, np.deg2rad(cache.euler), atol=1e-5)
    assert np.array_equal(attrs, cache.attributes)


def _dot_cache(points):
    """A cache of one black crop with a bright 3x3 dot at each given point."""
    cspec, off = cache_spec(SPEC, 1.75)
    img = np.zeros((1, cspec.size, cspec.size), np.uint8)
    lm = np.full((1, 98, 2), cspec.size / 2.0, np.float32)
    for k, (u, v) in points.items():
        lm[0, k] = (u, v)
        img[0, v - 1:v + 2, u - 1:u + 2] = 255
    meta = {"offset": off, "crop": SPEC.to_dict()}
    return CropCache(img, lm, np.zeros((1, 3), np.float32), np.zeros((1, 6), np.int8), np.zeros(1, np.int32),
                     ["dots"], meta)


def _brightest(img):
    blurred = cv2.GaussianBlur(img.astype(np.float32), (5, 5), 0)
    v, u = np.unravel_index(np.argmax(blurred), blurred.shape)
    return np.array([u, v], np.float32)


@pytest.mark.parametrize("angle, scale, shift, flip", [(25.0, 1.0, (0, 0), False),
                                                      (-30.0, 1.1, (0.08, -0.05), False),
                                                      (12.0, 0.9, (-0.1, 0.1), True)])
def test_landmarks_move_with_the_pixels(angle, scale, shift, flip):
    cache = _dot_cache({60: (80, 90)})
    x, pts, _ = _geometry(cache, AugmentConfig(), flip_mask=tf.constant([flip]),
                          angles_deg=tf.constant([angle]), scales=tf.constant([scale]),
                          shifts=tf.constant([shift], tf.float32))
    k = MIRROR[60] if flip else 60
    assert np.abs(_brightest(x[0]) - pts[0, k] * 112).max() <= 1.0


def test_flip_maps_right_eye_to_left_eye(faces):
    _, cache = faces
    b = len(cache)
    _, p0, e0 = _geometry(cache, AugmentConfig(), flip_mask=tf.zeros([b], tf.bool), angles_deg=tf.zeros([b]),
                          scales=tf.ones([b]), shifts=tf.zeros([b, 2]))
    _, p1, e1 = _geometry(cache, AugmentConfig(), flip_mask=tf.ones([b], tf.bool), angles_deg=tf.zeros([b]),
                          scales=tf.ones([b]), shifts=tf.zeros([b, 2]))
    # the subject's right eye (60-67) of the flipped face is the mirrored left eye (68-75)
    assert np.allclose(p1[:, 60:68, 0], 1.0 - p0[:, [MIRROR[i] for i in range(60, 68)], 0], atol=1e-5)
    assert (p1[:, 60, 0] < p1[:, 72, 0]).all() and (p0[:, 60, 0] < p0[:, 72, 0]).all()
    assert np.allclose(e1, e0 * [1, -1, -1], atol=1e-4)


def test_euler_labels_follow_rotation(faces):
    from runtime.headpose import euler_from_landmarks

    _, cache = faces
    b = len(cache)
    angles = np.linspace(-30, 30, b).astype(np.float32)
    _, p, e = _geometry(cache, AugmentConfig(), flip_mask=tf.zeros([b], tf.bool),
                        angles_deg=tf.constant(angles), scales=tf.ones([b]), shifts=tf.zeros([b, 2]))
    assert np.allclose(e[:, 2], cache.euler[:, 2] - angles, atol=1e-3)
    solved = np.array([euler_from_landmarks(p[i] * 112, 112) for i in range(b)])
    assert np.abs(solved[:, 2] - e[:, 2]).max() < 3.0


def test_training_dataset_is_augmented_and_finite(faces):
    _, cache = faces
    ds = make_dataset(cache, 4, AugmentConfig(), SPEC, training=True, seed=1)
    batches = list(ds)
    assert len(batches) == 3  # 12 faces, drop_remainder
    x, y = batches[0]
    assert x.shape == (4, 112, 112, 1) and x.dtype == tf.float32
    assert np.isfinite(x.numpy()).all() and np.isfinite(y.numpy()).all()
    assert x.numpy().min() >= -1.0 and x.numpy().max() <= 127 / 128


# ------------------------------------------------------------------ in-the-wild preset ("wild")
def _photometric(images, **over):
    from keras_flm.data.pipeline import augment_photometric

    off = dict(brightness=0.0, contrast=0.0, gamma=0.0, blur_prob=0.0, occlusion_prob=0.0, noise_std=0.0)
    aug = AugmentConfig(**dict(off, **over))
    return augment_photometric(tf.constant(images, tf.float32), aug, SPEC).numpy()


def _dot_image(n=4):
    """Crops with one bright 6x6 dot at a known place on a mid-grey face-like background."""
    img = np.full((n, 112, 112), 100.0, np.float32)
    img[:, 40:46, 70:76] = 250.0
    return img


def test_low_resolution_keeps_features_in_place_and_loses_detail():
    img = _dot_image()
    out = _photometric(img, lowres_prob=1.0, lowres_min=0.35)
    for o in out:
        ys, xs = np.nonzero(o > 150)  # the dot, blurred by down/up-sampling, stays centred where it was
        assert abs(ys.mean() - 42.5) < 1.0 and abs(xs.mean() - 72.5) < 1.0
    assert np.abs(np.diff(out, axis=2)).max() < np.abs(np.diff(img, axis=2)).max()  # edges softened
    assert np.allclose(_photometric(img, lowres_prob=0.0), img)


def test_jpeg_keeps_features_in_place_and_adds_block_artefacts():
    img = _dot_image()
    img += np.linspace(0.0, 40.0, 112, dtype=np.float32)[None, None, :]  # a smooth ramp JPEG must block
    out = _photometric(img, jpeg_prob=1.0, jpeg_quality_min=10)
    assert np.allclose(_photometric(img, jpeg_prob=0.0), img)
    for o, i in zip(out, img):
        assert np.abs(o - i).max() > 1 and np.abs(o - i).mean() < 8  # changed, not destroyed
        ys, xs = np.nonzero(o > 200)  # the dot stays where it was
        assert abs(ys.mean() - 42.5) < 1.0 and abs(xs.mean() - 72.5) < 1.0
    # at low resolution the blocks are the small image's: still in place
    both = _photometric(img, jpeg_prob=1.0, lowres_prob=1.0, lowres_min=0.5)
    ys, xs = np.nonzero(both[0] > both[0].max() - 30)
    assert abs(ys.mean() - 42.5) < 2.0 and abs(xs.mean() - 72.5) < 2.0


def test_side_light_is_a_smooth_gain_that_moves_no_pixel():
    img = _dot_image(8)
    out = _photometric(img, shade_prob=1.0, shade_strength=0.6)
    gain = out / img
    assert gain.min() >= 0.4 - 1e-4 and gain.max() <= 1.6 + 1e-4
    assert np.abs(np.diff(gain, axis=1)).max() < 0.02 and np.abs(np.diff(gain, axis=2)).max() < 0.02
    assert (np.abs(gain - 1).reshape(8, -1).max(1) > 0.01).any()  # some crops really are side-lit
    ys, xs = np.nonzero(out[0] > out[0].mean() + 60)  # the dot is still the bright spot, in place
    assert abs(ys.mean() - 42.5) < 1.0 and abs(xs.mean() - 72.5) < 1.0


def _occluded(out, img):
    """Per crop: (changed-pixel mask, values there)."""
    return [(o != i, o[o != i]) for o, i in zip(out, img)]


def test_flat_occluders_are_grey_rectangles():
    tf.random.set_seed(3)
    img = np.stack([np.full((112, 112), 10.0 * (k + 1), np.float32) for k in range(8)])
    for changed, values in _occluded(_photometric(img, occlusion_prob=1.0, occlusion_max=0.4), img):
        ys, xs = np.nonzero(changed)
        assert len(ys) and np.ptp(values) < 1e-4  # one flat grey
        assert changed[ys.min():ys.max() + 1, xs.min():xs.max() + 1].all()  # a filled rectangle


def test_textured_occluders_are_patches_of_another_crop_in_ellipses_and_rectangles():
    """Crop k is the flat value 10 (k + 1): a patch of the next crop in the batch (the batch rolled
    by one) has crop k - 1's value, and no pixel outside the occluder changes."""
    tf.random.set_seed(4)
    n = 16
    img = np.stack([np.full((112, 112), 10.0 * (k + 1), np.float32) for k in range(n)])
    out = _photometric(img, occlusion_prob=1.0, occlusion_max=0.5, occlusion_texture=1.0)
    fill_ratio = []
    for k, (changed, values) in enumerate(_occluded(out, img)):
        ys, xs = np.nonzero(changed)
        assert len(ys) > 20
        assert np.allclose(values, 10.0 * ((k - 1) % n + 1))
        fill_ratio.append(changed.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1)))
    fill_ratio = np.array(fill_ratio)
    assert (fill_ratio > 0.99).any() and (fill_ratio < 0.85).any()  # rectangles and ellipses (pi/4)


def test_textured_occluder_patch_comes_from_a_random_place():
    """On a horizontal ramp the patch's values tell where in the other crop it was cut: the draws
    differ, so the occluder is not always the same region of its neighbour."""
    tf.random.set_seed(5)
    ramp = np.tile(np.linspace(0.0, 250.0, 112, dtype=np.float32), (112, 1))
    img = np.stack([ramp + 1.0 * k for k in range(8)])  # crop k's values carry k in the fraction
    out = _photometric(img, occlusion_prob=1.0, occlusion_max=0.4, occlusion_texture=1.0)
    offsets = []
    for k in range(8):
        changed = out[k] != img[k]
        ys, xs = np.nonzero(changed)
        src = out[k][changed] - 1.0 * ((k - 1) % 8)  # back on the ramp
        assert np.allclose(np.round(src / (250.0 / 111)) * (250.0 / 111), src, atol=1e-3)
        offsets.append(np.median(src / (250.0 / 111) - xs))
    assert np.ptp(offsets) > 10


def test_wild_preset_warps_stay_inside_its_cached_margin():
    from keras_flm.config import augment_preset

    w = augment_preset("wild")
    theta = math.radians(w.rotation_deg)
    reach = (1 + w.scale_jitter) * 0.5 * (abs(math.cos(theta)) + abs(math.sin(theta))) + w.shift_jitter
    assert reach <= w.cache_margin / 2  # no black corners from the cache edge (image borders aside)


def test_wild_preset_keeps_landmarks_on_the_features(faces98, tmp_path):
    """With the preset's full geometry, the pixels under each warped landmark are the pixels under the
    original landmark (same check as the flip/rotation tests, on the 2.0-margin cache)."""
    from keras_flm.config import augment_preset

    w = augment_preset("wild")
    recs = subset(read_annotations(faces98, "train"), 4, seed=5)
    cache = build_cache(recs, str(faces98), "train", SPEC, w.cache_margin, cache_dir=str(tmp_path),
                        progress=False)
    b = len(cache)
    shifts = tf.constant([[.12, -.12], [-.1, .1], [0., 0.], [.12, .12]])
    x, pts, _ = _geometry(cache, w, flip_mask=tf.zeros([b], tf.bool),
                          angles_deg=tf.constant([30., -30., 12., 0.]),
                          scales=tf.constant([1.15, 0.85, 1.0, 1.1]), shifts=shifts)
    src = np.asarray(cache.images).astype(np.float32)
    for i in range(b):
        inside = np.all((pts[i] > 0.05) & (pts[i] < 0.95), axis=1)
        got = [x[i][int(round(p[1] * 112 - .5)), int(round(p[0] * 112 - .5))] for p in pts[i][inside]]
        want = [src[i][int(round(q[1] - .5)), int(round(q[0] - .5))] for q in cache.landmarks[i][inside]]
        assert np.median(np.abs(np.asarray(got) - np.asarray(want))) < 12


def test_oversample_counts_by_attribute_and_path_prefix(faces):
    from keras_flm.data.pipeline import oversample_counts

    _, cache = faces
    prefix = cache.rel_paths[0].split("/")[0] + "/"
    counts = oversample_counts(cache, {prefix: 3})
    hit = np.array([p.startswith(prefix) for p in cache.rel_paths])
    assert (counts[hit] == 3).all() and (counts[~hit] == 1).all()
    with pytest.raises(ValueError, match="matches no training face"):
        oversample_counts(cache, {"nowhere/": 2})
    with pytest.raises(ValueError, match=">= 1"):
        oversample_counts(cache, {prefix: 0})
    ds = make_dataset(cache, 1, NO_AUGMENT, SPEC, training=False, counts=counts)
    assert sum(1 for _ in ds) == int(counts.sum())


# ------------------------------------------------------------------ turned faces ("turn" preset)
def test_turn_points_invert_the_sampling_map():
    from keras_flm.data.pipeline import turn_points

    x = np.linspace(-0.2, 1.2, 57)[None, :]
    a = np.array([[-0.4], [-0.1], [0.0], [0.25], [0.4]])
    u = 2 * turn_points(np, x, a) - 1  # output position of source x
    inside = np.abs(u) <= 1
    outside = np.where(u > 1, 1 + (u - 1) * (1 - 2 * a), -1 + (u + 1) * (1 + 2 * a))
    h = np.where(inside, u + a * (1 - u * u), outside)
    assert np.allclose(h, 2 * x - 1, atol=1e-9)  # the sampling map takes it back to x (linear outside)
    assert np.all(np.diff(u, axis=1) > 0)  # order along the row is kept (no fold)
    assert np.allclose(turn_points(np, np.array([0.0, 1.0]), 0.4), [0.0, 1.0])  # crop edges fixed


@pytest.mark.parametrize("turn, angle, flip", [(0.4, 0.0, False), (-0.3, 20.0, False), (0.25, -10.0, True)])
def test_turned_landmarks_move_with_the_pixels(turn, angle, flip):
    cache = _dot_cache({60: (95, 100)})
    x, pts, _ = _geometry(cache, augment_preset("turn"), flip_mask=tf.constant([flip]),
                          angles_deg=tf.constant([angle]), scales=tf.constant([1.0]),
                          shifts=tf.constant([[0.0, 0.0]], tf.float32), turns=tf.constant([turn]))
    k = MIRROR[60] if flip else 60
    assert np.abs(_brightest(x[0]) - pts[0, k] * 112).max() <= 1.0


def test_turn_squeezes_one_side_and_relabels_yaw(faces):
    """A positive turn moves the nose toward image-left and narrows that half of the face; the Euler
    labels of turned faces are the head pose of their new landmarks, the others keep theirs."""
    from runtime.headpose import euler_from_landmarks

    _, cache = faces
    b = len(cache)
    fixed = dict(flip_mask=tf.zeros([b], tf.bool), angles_deg=tf.zeros([b]), scales=tf.ones([b]),
                 shifts=tf.zeros([b, 2]))
    turn = augment_preset("turn")
    _, p0, e0 = _geometry(cache, turn, turns=tf.zeros([b]), **fixed)
    turns = np.where(np.arange(b) % 2 == 0, 0.35, 0.0).astype(np.float32)
    _, p1, e1 = _geometry(cache, turn, turns=tf.constant(turns), **fixed)
    on = turns > 0
    assert (p1[on, 54, 0] < p0[on, 54, 0] - 0.1).all()  # nose tip moved left by > 11 px
    left0, left1 = p0[on, 54, 0] - p0[on, 0, 0], p1[on, 54, 0] - p1[on, 0, 0]  # nose to image-left contour
    right0, right1 = p0[on, 32, 0] - p0[on, 54, 0], p1[on, 32, 0] - p1[on, 54, 0]
    assert (left1 / right1 < 0.8 * left0 / right0).all()
    assert np.allclose(p1[on, :, 1], p0[on, :, 1], atol=1e-6)  # a purely horizontal warp
    assert np.allclose(p1[~on], p0[~on], atol=1e-6) and np.allclose(e1[~on], e0[~on], atol=1e-4)
    solved = np.array([euler_from_landmarks(p1[i] * 112, 112) for i in np.flatnonzero(on)])
    assert np.allclose(e1[on], solved, atol=1e-3)
    assert not np.allclose(e1[on, 1], e0[on, 1], atol=2.0)  # the yaw label did change


def test_turn_preset_draws_turns_and_stays_finite(faces98, tmp_path):
    w = augment_preset("turn")
    recs = subset(read_annotations(faces98, "train"), 8, seed=2)
    cache = build_cache(recs, str(faces98), "train", SPEC, w.cache_margin, cache_dir=str(tmp_path),
                        progress=False)
    reach = (1 + w.scale_jitter) * 0.5 * (abs(math.cos(math.radians(w.rotation_deg)))
                                          + abs(math.sin(math.radians(w.rotation_deg)))) + w.shift_jitter
    assert reach <= w.cache_margin / 2
    x, y = next(iter(make_dataset(cache, 8, w, SPEC, training=True, seed=3)))
    assert np.isfinite(x.numpy()).all() and np.isfinite(y.numpy()).all()


def test_oversample_by_label_yaw(faces):
    from keras_flm.data.pipeline import oversample_counts

    _, cache = faces
    yaw = np.abs(cache.euler[:, 1])
    th = float(np.sort(yaw)[-3])  # the three most turned faces
    counts = oversample_counts(cache, {"yaw>=%g" % th: 4})
    assert np.array_equal(counts, np.where(yaw >= th, 4, 1)) and (counts == 4).sum() == 3
    for bad in ("yaw>=abc", "yaw>=95"):
        with pytest.raises(ValueError, match="yaw"):
            oversample_counts(cache, {bad: 2})


def test_zoom_cuts_a_window_smaller_than_the_face_and_landmarks_follow():
    """zoom_prob=1: every crop comes from a window zoom_min..1 of the face box, so two features move
    apart by 1..1/zoom_min (some past the crop edge, as a tracker's half-face box leaves them), and a
    feature inside the crop stays under its landmark."""
    from dataclasses import replace

    cache = _dot_cache({60: (100, 110), 72: (124, 110)})
    n = 16
    still = replace(augment_preset("none"), zoom_prob=1.0, zoom_min=0.5)
    images = tf.constant(np.repeat(np.asarray(cache.images), n, axis=0))
    x, pts, _ = augment_geometry(images, tf.constant(np.repeat(cache.landmarks, n, axis=0)),
                                 tf.constant(np.repeat(cache.euler, n, axis=0)), still, SPEC, training=True)
    x, pts = x.numpy(), pts.numpy()
    base = (124 - 100) / 112.0  # the two dots' distance without zoom (cached crop pixels = crop pixels)
    grow = (pts[:, 72, 0] - pts[:, 60, 0]) / base
    assert np.all(grow >= 1.0 - 1e-4) and np.all(grow <= 2.0 + 1e-4)
    assert grow.max() - grow.min() > 0.3  # drawn, not fixed
    for i in range(n):
        if np.all((pts[i, 60] > 0.1) & (pts[i, 60] < 0.9)):
            blob = x[i].copy()
            blob[:, int(pts[i, 60, 0] * 112) + 6:] = 0  # keep the left dot only
            assert np.abs(_brightest(blob) - pts[i, 60] * 112).max() <= 1.5
    off = replace(still, zoom_prob=0.0)
    _, p0, _ = augment_geometry(images, tf.constant(np.repeat(cache.landmarks, n, axis=0)),
                                tf.constant(np.repeat(cache.euler, n, axis=0)), off, SPEC, training=True)
    assert np.allclose((p0.numpy()[:, 72, 0] - p0.numpy()[:, 60, 0]) / base, 1.0, atol=1e-4)
