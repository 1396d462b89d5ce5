"""tf.data pipeline: cached crops -> augmented, normalised model batches.

Batches are augmented as a whole inside `Dataset.map(num_parallel_calls=AUTOTUNE)` and
prefetched, so augmentation overlaps the training step and stays out of its way
(scripts/bench_train.py measures it). The random parameters and the landmark maths are TF
ops; the per-pixel work (warp, gamma LUT, blur) is OpenCV via tf.numpy_function, several
times cheaper on CPU than TF's image ops and GIL-free while it runs.

Geometry. For an output (contract) crop pixel p, the sampled cached-crop pixel is
    q = C + t + s * R(theta) * F * (p - c)
with c = size/2 the contract crop's centre (the face-box centre), C = S/2 the cached crop's
centre, R a rotation (y down, so theta > 0 is clockwise), s a window scale (s > 1 zooms
out), t a shift and F = diag(-1, 1) when flipped. Landmarks follow the exact inverse,
p = c + (1/s) F R(-theta) (q - C - t), and a flip also swaps left/right indices with
runtime.landmarks.MIRROR. The flip mirrors about the face centre, which in normalised
coordinates is exactly x -> 1 - x (runtime.landmarks.flip_landmarks with width 1). With no
augmentation, q = p + offset: an integer shift, so the crop equals crop_face's exactly.

Euler labels follow analytically (runtime/headpose.py convention, roll outermost): the
content rotates by -theta, so roll -= theta; a flip negates yaw and roll.

Turn (yaw warp). The train faces are nearly all frontal (|yaw| >= 30 deg for 8 of 4,704 by
runtime.headpose; 13 of the 68 WIDER-style test faces), and a model that never saw a turned
face predicts a frontal shape on one. A turn foreshortens one half of the face sideways; a
horizontal warp imitates it: in u = 2x/size - 1 of the output crop, the output column u samples
the affine-warped column h(u) = u + a (1 - u^2) (crop edges fixed, monotonic for |a| < 0.5;
outside the crop, where only landmarks go, h continues linearly),
which moves the face centre by about -a and squeezes the side it moves to. Landmarks follow
the exact inverse, u = (1 - sqrt(1 - 4a(s - a))) / (2a), and the Euler labels of a turned face
are recomputed from its new landmarks with runtime.headpose (the cache's own rule), so the
PFLD pose weight sees the larger yaw. It is not a 3-D turn (no self-occlusion, the nose never
crosses the far cheek): it teaches the shape of a turned face, not its look.

Model targets are packed into one tensor so a plain Keras loss sees them all:
    y = [landmarks (196, crop-normalised) | euler (3, radians) | attributes (6)].
"""
import math
from typing import Dict, Optional, Tuple

import numpy as np

from keras_flm.config import AugmentConfig, augment_preset
from keras_flm.data.cache import CropCache
from runtime.landmarks import ATTRIBUTES, MIRROR, NUM_POINTS
from runtime.preprocess import CropSpec

#: Layout of the packed target vector.
LANDMARK_DIMS = 2 * NUM_POINTS
EULER_SLICE = slice(LANDMARK_DIMS, LANDMARK_DIMS + 3)
ATTR_SLICE = slice(LANDMARK_DIMS + 3, LANDMARK_DIMS + 3 + len(ATTRIBUTES))
TARGET_DIMS = LANDMARK_DIMS + 3 + len(ATTRIBUTES)

NO_AUGMENT = augment_preset("none")


def _uniform(tf, shape, limit):
    return tf.random.uniform(shape, -limit, limit) if limit > 0 else tf.zeros(shape)


def augment_geometry(images, landmarks, euler_deg, aug: AugmentConfig, spec: CropSpec, training: bool = True,
                     flip_mask=None, angles_deg=None, scales=None, shifts=None, turns=None):
    """Warp cached crops (B, S, S) to contract crops (B, size, size) float32 [0, 255].

    Returns (images, landmarks crop-normalised (B, 98, 2), euler degrees (B, 3)). The
    optional fixed parameters (flip_mask bool (B,), angles_deg (B,), scales (B,), shifts
    (B, 2) in crop fractions, turns (B,) the yaw warp's a, 0 = none) replace the random
    draws: tests pin the geometry with them.
    """
    import tensorflow as tf

    b = tf.shape(images)[0]
    big = tf.cast(tf.shape(images)[1], tf.float32)
    size = float(spec.size)
    if angles_deg is None:
        angles_deg = _uniform(tf, [b], aug.rotation_deg if training else 0.0)
    if scales is None:
        scales = 1.0 + _uniform(tf, [b], aug.scale_jitter if training else 0.0)
        if training and aug.zoom_prob > 0 and aug.zoom_min < 1:
            # a smaller sampling window = a box smaller than the face (AugmentConfig.zoom_prob)
            zoom = tf.random.uniform([b], aug.zoom_min, 1.0)
            scales = scales * tf.where(tf.random.uniform([b]) < aug.zoom_prob, zoom, 1.0)
    if shifts is None:
        shifts = _uniform(tf, [b, 2], aug.shift_jitter if training else 0.0)
    if flip_mask is None:
        flip_mask = (tf.random.uniform([b]) < 0.5) if (training and aug.flip) else tf.zeros([b], tf.bool)
    draw_turns = training and aug.turn_prob > 0 and aug.turn_max > 0
    may_turn = turns is not None or draw_turns
    if turns is None:
        turns = (tf.where(tf.random.uniform([b]) < aug.turn_prob, _uniform(tf, [b], aug.turn_max), 0.0)
                 if draw_turns else tf.zeros([b]))
    turns = tf.cast(turns, tf.float32)
    theta = tf.cast(angles_deg, tf.float32) * (math.pi / 180.0)
    s = tf.cast(scales, tf.float32)
    f = tf.where(flip_mask, -1.0, 1.0)
    t = tf.cast(shifts, tf.float32) * size
    cos, sin = tf.cos(theta), tf.sin(theta)
    # A = s * R(theta) * F
    a00, a01 = s * cos * f, -s * sin
    a10, a11 = s * sin * f, s * cos
    c = size / 2.0
    bx = big / 2.0 + t[:, 0] - (a00 * c + a01 * c)
    by = big / 2.0 + t[:, 1] - (a10 * c + a11 * c)
    zeros = tf.zeros_like(a00)
    transforms = tf.stack([a00, a01, bx, a10, a11, by, zeros, zeros], axis=1)
    out = tf.numpy_function(lambda im, tr, tu: _warp_batch(im, tr, spec.size, spec.pad_value, tu),
                            [tf.cast(images, tf.uint8), transforms, turns], tf.uint8, stateful=False)
    out = tf.cast(tf.ensure_shape(out, [None, spec.size, spec.size]), tf.float32)

    # Landmarks: p = c + A^-1 (q - C - t), A^-1 = (1/s) F R(-theta)
    q = tf.cast(landmarks, tf.float32) - (big / 2.0) - t[:, None, :]
    qx, qy = q[..., 0], q[..., 1]
    cs, ss, fs = cos[:, None], sin[:, None], f[:, None]
    rx = cs * qx + ss * qy
    ry = -ss * qx + cs * qy
    px = c + fs * rx / s[:, None]
    py = c + ry / s[:, None]
    pts = tf.stack([px, py], axis=-1) / size
    pts = tf.where(flip_mask[:, None, None], tf.gather(pts, list(MIRROR), axis=1), pts)
    turned = tf.abs(turns) > 1e-6
    pts = tf.concat([turn_points(tf, pts[..., :1], turns[:, None, None]), pts[..., 1:]], axis=-1)

    e = tf.cast(euler_deg, tf.float32)
    pitch, yaw, roll = e[:, 0], e[:, 1], e[:, 2] - tf.cast(angles_deg, tf.float32)
    yaw = tf.where(flip_mask, -yaw, yaw)
    roll = tf.where(flip_mask, -roll, roll)
    roll = tf.math.floormod(roll + 180.0, 360.0) - 180.0
    eul = tf.stack([pitch, yaw, roll], axis=1)
    if may_turn:
        eul = tf.numpy_function(lambda p, e0, m: _turned_euler(p, e0, m, spec.size), [pts, eul, turned],
                                tf.float32, stateful=False)
        eul = tf.ensure_shape(eul, [None, 3])
    return out, pts, eul


def turn_points(xp, x, a):
    """Forward yaw warp of crop-normalised x (any shape broadcasting with a): the inverse of
    the sampling map h(u) = u + a (1 - u^2), u = 2x - 1 (module docstring). xp is numpy or tf."""
    s = 2.0 * x - 1.0
    small = xp.abs(a) < 1e-6
    safe = xp.where(small, xp.ones_like(a), a)
    root = xp.sqrt(xp.maximum(1.0 - 4.0 * safe * (xp.minimum(xp.maximum(s, -1.0), 1.0) - safe), 0.0))
    u = xp.where(small, s, (1.0 - root) / (2.0 * safe))
    # outside the crop h continues as a straight line with its edge slope 1 -+ 2a, so landmarks that
    # the zoom or shift put outside the crop keep an exact, monotonic label
    u = xp.where(s > 1.0, 1.0 + (s - 1.0) / (1.0 - 2.0 * a), u)
    u = xp.where(s < -1.0, -1.0 + (s + 1.0) / (1.0 + 2.0 * a), u)
    return (u + 1.0) / 2.0


def _turned_euler(pts: np.ndarray, euler: np.ndarray, turned: np.ndarray, size: int) -> np.ndarray:
    """Euler labels of turned faces recomputed from their warped landmarks (runtime.headpose, on
    the contract crop's pixels like the cache); the others keep their analytic labels."""
    from runtime.headpose import euler_from_landmarks

    out = np.array(euler, np.float32)
    for i in np.flatnonzero(turned):
        out[i] = euler_from_landmarks(pts[i] * size, (size, size))
    return out


def _warp_batch(images: np.ndarray, transforms: np.ndarray, size: int, pad_value: int,
                turns: Optional[np.ndarray] = None) -> np.ndarray:
    """cv2.warpAffine per image (dst -> src maps): ~20x faster than TF's projective transform on CPU,
    the same bilinear fixed-point sampling as runtime.preprocess.crop_face, and it releases the GIL.
    A turned image (turns[i] != 0) is one cv2.remap through the yaw warp composed with its affine."""
    import cv2

    out = np.empty((images.shape[0], size, size), np.uint8)
    grid = np.arange(size, dtype=np.float32)
    u = 2.0 * grid / size - 1.0  # pixel x -> u, the same normalisation as the landmarks' x
    for i in range(images.shape[0]):
        m = transforms[i, :6].reshape(2, 3).astype(np.float64)
        a = 0.0 if turns is None else float(turns[i])
        if abs(a) <= 1e-6:
            cv2.warpAffine(images[i], m, (size, size), dst=out[i],
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=pad_value)
            continue
        hx = ((u + a * (1.0 - u * u)) + 1.0) * (size / 2.0)
        xx, yy = hx[None, :], grid[:, None]
        mapx = (m[0, 0] * xx + m[0, 1] * yy + m[0, 2]).astype(np.float32)
        mapy = (m[1, 0] * xx + m[1, 1] * yy + m[1, 2]).astype(np.float32)
        cv2.remap(images[i], mapx, mapy, cv2.INTER_LINEAR, dst=out[i], borderMode=cv2.BORDER_CONSTANT,
                  borderValue=pad_value)
    return out


def _jpeg(img: np.ndarray, quality: float) -> np.ndarray:
    """`img` (uint8 gray) through a JPEG encode/decode at `quality`."""
    import cv2

    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else img


def _pixel_batch(images: np.ndarray, gammas: np.ndarray, blur: np.ndarray, noise: np.ndarray,
                 seed: np.ndarray, sigma: float, lowres: Optional[np.ndarray] = None,
                 jpeg: Optional[np.ndarray] = None) -> np.ndarray:
    """Per image: low resolution (down by lowres[i] < 1 with area averaging, back up bilinearly, as
    a small face crop is upscaled by crop_face), JPEG at quality jpeg[i] (0 = none; at the low
    resolution when there is one, where a small face's blocks are), gamma (a 256-entry LUT),
    Gaussian blur mixed in with strength blur[i] (0 = none) and uniform noise of std noise[i]; the
    noise generator is seeded from TF's random stream."""
    import cv2

    x = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    levels = np.arange(256, dtype=np.float64) / 255.0
    out = np.empty(x.shape, np.float32)
    rng = np.random.default_rng(int(seed))
    half = math.sqrt(3.0)  # uniform on [-sqrt(3), sqrt(3)] has unit std
    for i in range(x.shape[0]):
        img = x[i]
        q = 0 if jpeg is None else float(jpeg[i])
        if lowres is not None and lowres[i] < 1.0:
            h, w = img.shape
            small = cv2.resize(img, (max(8, int(round(w * float(lowres[i])))),
                                     max(8, int(round(h * float(lowres[i]))))), interpolation=cv2.INTER_AREA)
            if q > 0:
                small = _jpeg(small, q)
            img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        elif q > 0:
            img = _jpeg(img, q)
        if gammas[i] != 1.0:
            img = cv2.LUT(img, np.rint(255.0 * levels ** float(gammas[i])).astype(np.uint8))
        out[i] = img
        if blur[i] > 0:
            blurred = cv2.GaussianBlur(img, (0, 0), sigma).astype(np.float32)
            out[i] += float(blur[i]) * (blurred - out[i])
        if noise[i] > 0:
            out[i] += (rng.random(img.shape, dtype=np.float32) * (2 * half) - half) * float(noise[i])
    return out


def augment_photometric(images, aug: AugmentConfig, spec: CropSpec):
    """Low resolution, JPEG, gamma, blur, noise (OpenCV/numpy), side light, contrast, brightness,
    occlusion on (B, H, W) float [0, 255]."""
    import tensorflow as tf

    b = tf.shape(images)[0]
    x = images
    gammas = tf.exp(_uniform(tf, [b], aug.gamma))
    if aug.blur_prob > 0 and aug.blur_sigma > 0:
        # strength in [0.5, 1] mixes sharp and blurred for a continuum of blur levels
        blur = tf.where(tf.random.uniform([b]) < aug.blur_prob, tf.random.uniform([b], 0.5, 1.0), 0.0)
    else:
        blur = tf.zeros([b])
    noise = tf.random.uniform([b], 0.0, aug.noise_std) if aug.noise_std > 0 else tf.zeros([b])
    if aug.lowres_prob > 0:
        lowres = tf.where(tf.random.uniform([b]) < aug.lowres_prob,
                          tf.random.uniform([b], min(aug.lowres_min, 1.0), 1.0), 1.0)
    else:
        lowres = tf.ones([b])
    if aug.jpeg_prob > 0:
        jpeg = tf.where(tf.random.uniform([b]) < aug.jpeg_prob,
                        tf.random.uniform([b], float(max(1, aug.jpeg_quality_min)), 90.0), 0.0)
    else:
        jpeg = tf.zeros([b])
    if aug.gamma > 0 or aug.blur_prob > 0 or aug.noise_std > 0 or aug.lowres_prob > 0 or aug.jpeg_prob > 0:
        seed = tf.random.uniform([], 0, 2 ** 31 - 1, dtype=tf.int64)
        def pixels(im, g, bl, nz, sd, lr, jp):
            return _pixel_batch(im, g, bl, nz, sd, aug.blur_sigma, lr, jp)

        x = tf.numpy_function(pixels, [x, gammas, blur, noise, seed, lowres, jpeg], tf.float32,
                              stateful=False)
        x = tf.ensure_shape(x, images.shape)
    if aug.shade_prob > 0 and aug.shade_strength > 0:
        x = x * _shade_gain(tf, b, images.shape[1], images.shape[2], aug)
    if aug.contrast > 0:
        mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        x = (x - mean) * (1.0 + _uniform(tf, [b, 1, 1], aug.contrast)) + mean
    if aug.brightness > 0:
        x = x + 255.0 * _uniform(tf, [b, 1, 1], aug.brightness)
    if aug.occlusion_prob > 0 and aug.occlusion_max > 0:
        x = _occlude(tf, x, b, aug, spec)
    return x


def _occlude(tf, x, b, aug: AugmentConfig, spec: CropSpec):
    """Occluders on a share occlusion_prob of the crops: a flat grey rectangle, or (a share
    occlusion_texture of them) a patch of the next crop in the batch, taken at a random place,
    as an ellipse or a rectangle. Landmarks keep their places: hidden points are still labelled
    where they are, which is what a tracker needs on a face half behind a neighbour's head."""
    n = float(spec.size)
    wh = tf.random.uniform([b, 2], 0.1, aug.occlusion_max) * n
    centre = tf.random.uniform([b, 2], 0.0, n)
    grid = tf.range(n, dtype=tf.float32)
    dx = (grid[None, :] - centre[:, 0:1]) / (wh[:, 0:1] / 2)  # (B, W), -1..1 across the occluder
    dy = (grid[None, :] - centre[:, 1:2]) / (wh[:, 1:2] / 2)  # (B, H)
    rect = tf.logical_and(tf.abs(dy)[:, :, None] <= 1, tf.abs(dx)[:, None, :] <= 1)
    on = tf.random.uniform([b, 1, 1]) < aug.occlusion_prob
    fill = tf.random.uniform([b, 1, 1], 0.0, 255.0)
    mask = rect
    if aug.occlusion_texture > 0:
        textured = tf.random.uniform([b, 1, 1]) < aug.occlusion_texture
        ellipse = tf.square(dy)[:, :, None] + tf.square(dx)[:, None, :] <= 1
        round_ = tf.random.uniform([b, 1, 1]) < 0.5
        mask = tf.where(tf.logical_and(textured, round_), ellipse, rect)
        # the patch: the next crop of the batch shifted so a random point of it lands on the centre
        src = tf.random.uniform([b, 2], 0.0, n)
        shift = src - centre
        transforms = tf.concat([tf.ones([b, 1]), tf.zeros([b, 1]), shift[:, 0:1], tf.zeros([b, 1]),
                                tf.ones([b, 1]), shift[:, 1:2], tf.zeros([b, 2])], axis=1)
        other = tf.roll(x, shift=1, axis=0)[:, :, :, None]
        patch = tf.raw_ops.ImageProjectiveTransformV3(
            images=other, transforms=transforms, output_shape=tf.shape(x)[1:3], fill_value=0.0,
            interpolation="NEAREST", fill_mode="REFLECT")[:, :, :, 0]
        fill = tf.where(textured, patch, fill)
    return tf.where(tf.logical_and(on, mask), fill, x)


def _shade_gain(tf, b, h: int, w: int, aug: AugmentConfig):
    """(B, H, W) multiplicative light gradient: 1 + a * (position along a random direction), a in
    [-s, s], on a share shade_prob of the crops (1 elsewhere): one side of the face lit, one dark."""
    phi = tf.random.uniform([b, 1, 1], 0.0, 2.0 * math.pi)
    amp = tf.random.uniform([b, 1, 1], 0.0, aug.shade_strength)
    amp = tf.where(tf.random.uniform([b, 1, 1]) < aug.shade_prob, amp, 0.0)
    ys = (tf.range(h, dtype=tf.float32) - (h - 1) / 2.0) / (h / 2.0)
    xs = (tf.range(w, dtype=tf.float32) - (w - 1) / 2.0) / (w / 2.0)
    # scaled so the ramp spans [-1, 1] over the crop whatever the direction (corners included)
    ramp = (tf.cos(phi) * xs[None, None, :] + tf.sin(phi) * ys[None, :, None]) / (tf.abs(tf.cos(phi))
                                                                                + tf.abs(tf.sin(phi)))
    return tf.maximum(0.0, 1.0 + amp * ramp)


def to_model_input(images, spec: CropSpec):
    """Round to uint8 levels (what the runtime feeds) and normalise like normalize_input."""
    import tensorflow as tf

    u8 = tf.round(tf.clip_by_value(images, 0.0, 255.0))
    return ((u8 - spec.input_mean) * spec.input_scale)[..., None]


def pack_targets(landmarks, euler_deg, attributes):
    """y = [landmarks (196) | euler radians (3) | attributes (6)] float32."""
    import tensorflow as tf

    b = tf.shape(landmarks)[0]
    return tf.concat([tf.reshape(tf.cast(landmarks, tf.float32), [b, LANDMARK_DIMS]),
                      tf.cast(euler_deg, tf.float32) * (math.pi / 180.0),
                      tf.cast(attributes, tf.float32)], axis=1)


#: Oversampling key prefix for a label-yaw threshold in degrees ("yaw>=20").
YAW_RULE = "yaw>="


def _yaw_threshold(key: str) -> float:
    try:
        deg = float(key[len(YAW_RULE):])
    except ValueError:
        raise ValueError("oversample rule %r: expected %sDEGREES, e.g. yaw>=20" % (key, YAW_RULE)) from None
    if not 0.0 <= deg < 90.0:
        raise ValueError("oversample rule %r: the yaw threshold must be in [0, 90) degrees" % key)
    return deg


def oversample_counts(cache: CropCache, rules: Dict[str, int]) -> np.ndarray:
    """Per-face repeat counts (N,) int: the largest factor among the rules a face matches.

    A rule key that names a WFLW attribute (runtime.landmarks.ATTRIBUTES, e.g. "pose") matches the
    faces with that flag; "yaw>=D" the faces whose label yaw (the cache's runtime.headpose angle,
    the one the PFLD loss weighs) is at least D degrees either way; any other key is an image-path
    prefix ("wflw_pseudo/"). Why: the hard, in-the-wild faces are a minority of the train list, and
    the test faces are all of that kind; the "pose" flag of the v2 list marks faces the v1 labels
    called turned, 133 of 4,704, of which few are turned by the v2 labels' own angle.
    """
    counts = np.ones(len(cache), np.int64)
    for key, factor in (rules or {}).items():
        factor = int(factor)
        if factor < 1:
            raise ValueError("oversample factor for %r must be >= 1, got %r" % (key, factor))
        if key in ATTRIBUTES:  # a subset may have no face with the flag: nothing to repeat then
            hit = np.asarray(cache.attributes)[:, ATTRIBUTES.index(key)] > 0
        elif key.startswith(YAW_RULE):
            hit = np.abs(np.asarray(cache.euler)[:, 1]) >= _yaw_threshold(key)
        else:
            hit = np.array([p.startswith(key) for p in cache.rel_paths], bool)
        if not hit.any() and key not in ATTRIBUTES:  # a prefix that matches nothing is a typo
            raise ValueError("oversample rule %r matches no training face (keys: an attribute of %s or an "
                             "image-path prefix such as %r)" % (key, ", ".join(ATTRIBUTES),
                                                                cache.rel_paths[0].split("/")[0] + "/"))
        counts[hit] = np.maximum(counts[hit], factor)
    return counts


def make_dataset(cache: CropCache, batch_size: int, aug: Optional[AugmentConfig] = None,
                 spec: Optional[CropSpec] = None, training: bool = True, seed: Optional[int] = None,
                 drop_remainder: Optional[bool] = None, repeat: bool = False,
                 counts: Optional[np.ndarray] = None):
    """tf.data.Dataset of (x (B, 112, 112, 1) float32, y (B, TARGET_DIMS)) from a crop cache.

    training=True shuffles (reshuffled each epoch) and augments; otherwise the batches are
    the un-augmented contract crops in cache order. counts (N,) repeats face i counts[i] times
    per epoch (oversample_counts).
    """
    import tensorflow as tf

    aug = aug or AugmentConfig()
    spec = spec or CropSpec.from_dict(cache.meta["crop"])
    if drop_remainder is None:
        drop_remainder = training
    n = len(cache)
    images = tf.constant(np.asarray(cache.images))
    landmarks = tf.constant(cache.landmarks, tf.float32)
    euler = tf.constant(cache.euler, tf.float32)
    attributes = tf.constant(cache.attributes, tf.float32)

    def load(idx):
        imgs = tf.gather(images, idx)
        x, pts, eul = augment_geometry(imgs, tf.gather(landmarks, idx), tf.gather(euler, idx), aug, spec,
                                       training=training)
        if training:
            x = augment_photometric(x, aug, spec)
        return to_model_input(x, spec), pack_targets(pts, eul, tf.gather(attributes, idx))

    order = np.arange(n, dtype=np.int64)
    if counts is not None:
        order = np.repeat(order, counts)
    ds = tf.data.Dataset.from_tensor_slices(order)
    if training:
        ds = ds.shuffle(len(order), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # One thread per map call: batches are prepared in parallel with each other, but a batch never
    # fans out over every core at once and stalls the training step's own parallel ops.
    options.threading.max_intra_op_parallelism = 1
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def unpack_targets(y: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Packed y (N, TARGET_DIMS) -> landmarks (N, 98, 2), euler radians (N, 3), attributes (N, 6)."""
    y = np.asarray(y)
    return y[:, :LANDMARK_DIMS].reshape(-1, NUM_POINTS, 2), y[:, EULER_SLICE], y[:, ATTR_SLICE]
