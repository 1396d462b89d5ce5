"""Render one synthetic grayscale face with its 98 exact WFLW landmarks and 6 attribute flags.

`sample_params(rng, image_size)` draws a random `FaceParams` (identity, expression, pose, placement,
appearance and the six WFLW attributes); `render_face(params)` draws it. Every feature is drawn
through its landmarks (lids through the eye points, lips through the lip points, the face outline
through the contour), so labels are exact by construction.

Attribute flags (WFLW order: pose expression illumination make-up occlusion blur) are computed from
the rendered parameters by `attribute_flags`, with these thresholds:

- pose:         |yaw| > 30 deg or |pitch| > 20 deg or |roll| > 30 deg
- expression:   mouth_open > 0.35, smile > 0.5, an eye less than 35 % open, or |brow_raise| > 0.5
- illumination: directional light strength > 0.5 (one side much darker), or exposure gain < 0.55
- make-up:      makeup > 0.5 (dark lips, eyeliner, eye shadow)
- occlusion:    the occluder covers >= 10 % of the 98 landmarks
- blur:         blur sigma > 0.035 inter-ocular distances (motion blur: length / sqrt(12))

`sample_params` keeps every "mild" value clearly inside these thresholds and every "strong" one
clearly outside, so a flag is never a coin toss at the boundary.

Faces are drawn for OpenCV's Haar frontal-face cascade too (the runtime's detector): shaded skin,
dark eye sockets and brows, a bright nose bridge and a darker mouth.
"""
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from keras_flm.synth.shape import ShapeParams, head_parts_3d, project, silhouette, template_3d
from runtime.landmarks import ATTRIBUTES, NUM_POINTS

#: Default square image side of dataset renders (small: fast to draw, plenty for a 112 crop).
DEFAULT_IMAGE_SIZE = 192

POSE_YAW_DEG = 30.0
POSE_PITCH_DEG = 20.0
POSE_ROLL_DEG = 30.0
EXPR_MOUTH_OPEN = 0.35
EXPR_SMILE = 0.5
EXPR_EYE_OPEN = 0.35
EXPR_BROW = 0.5
LIGHT_STRENGTH = 0.5
LIGHT_GAIN = 0.55
MAKEUP = 0.5
OCCLUSION_COVERAGE = 0.10
BLUR_SIGMA = 0.035

#: Probability that a sampled face is "strong" in each attribute (WFLW test shares are 8-31 %).
#: About a third of the faces come out with no flag at all.
ATTRIBUTE_PROB = {"pose": 0.15, "expression": 0.2, "illumination": 0.2, "makeup": 0.12,
                  "occlusion": 0.16, "blur": 0.15}

_SHIFT = 4  # fixed-point bits for sub-pixel drawing with OpenCV
_ONE = 1 << _SHIFT

SizeLike = Union[int, Tuple[int, int]]


@dataclass
class Occluder:
    """Something in front of the face. Placement is face-relative: `anchor` is a landmark index,
    (dx, dy, w, h) are in inter-ocular units, `angle` in degrees (added to the face's roll)."""

    kind: str = "rect"  # rect | ellipse | bar | sunglasses | hand
    anchor: int = 54
    dx: float = 0.0
    dy: float = 0.0
    w: float = 0.8
    h: float = 0.6
    angle: float = 0.0
    tone: float = 90.0
    texture: float = 20.0


@dataclass
class FaceParams:
    """Everything that determines one rendered face (`render_face` is a pure function of it).

    Geometry
      shape            identity + expression (shape.ShapeParams: face_width, jaw_square, eye_spacing,
                       ..., eye_open_right/left, mouth_open, smile, brow_raise, gaze_x/y)
      yaw/pitch/roll   degrees; yaw > 0 turns the nose to the image right, pitch > 0 lifts the chin,
                       roll > 0 is clockwise
      center           image position (pixels) of the head pivot, close to the landmark box centre
      scale            inter-ocular distance (outer eye corners) in pixels for a frontal face
    Appearance (gray levels 0-255 unless noted)
      skin, hair, brow, lip, sclera, iris, clothes; hair_style 0 bald / 1 short / 2 long;
      hairline (height above the eye line, inter-ocular units), hair_volume (0.7-1.5);
      socket (eye-socket shading factor, smaller = darker); glasses (thin frames, not occlusion);
      background {"tone", "lowfreq", "grid", "clutter", "texture"} for make_background
    Attributes (flag thresholds in the module docstring)
      makeup 0..1; light_angle (deg, direction the light comes from), light_strength 0..1,
      light_sharpness (how abrupt the light/shadow transition is), light_gain (exposure);
      occluder (Occluder or None); blur (sigma in inter-ocular units), blur_kind gaussian|motion,
      blur_angle (deg, motion direction); noise (sensor noise sigma, gray levels)
    seed  drives background, textures and noise: equal params give equal pixels.
    """

    shape: ShapeParams = field(default_factory=ShapeParams)
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    center: Tuple[float, float] = (96.0, 96.0)
    scale: float = 50.0
    skin: float = 170.0
    hair: float = 45.0
    hair_style: int = 1  # 0 bald, 1 short, 2 long
    clothes: float = 90.0
    hairline: float = 0.9
    hair_volume: float = 1.0
    brow: float = 60.0
    lip: float = 125.0
    sclera: float = 200.0
    iris: float = 60.0
    socket: float = 0.72  # eye-socket shading factor (smaller = darker)
    glasses: bool = False
    makeup: float = 0.0
    light_angle: float = 0.0
    light_strength: float = 0.0
    light_sharpness: float = 1.5
    light_gain: float = 1.0
    occluder: Optional[Occluder] = None
    blur: float = 0.0
    blur_kind: str = "gaussian"  # gaussian | motion
    blur_angle: float = 0.0
    noise: float = 3.0
    background: Dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- sampling


def _image_wh(image_size: SizeLike) -> Tuple[int, int]:
    if isinstance(image_size, (int, np.integer)):
        return int(image_size), int(image_size)
    w, h = image_size
    return int(w), int(h)


def _strong(rng: np.random.Generator, name: str, force: Dict[str, Optional[bool]]) -> bool:
    v = force.get(name)
    if v is None:
        return bool(rng.random() < ATTRIBUTE_PROB[name])
    return bool(v)


def sample_shape(rng: np.random.Generator) -> ShapeParams:
    """A random identity with a neutral expression."""
    u = rng.uniform
    s = ShapeParams(
        face_width=u(0.76, 0.95), jaw_square=u(2.0, 3.0), temple_y=u(-0.12, 0.0),
        eye_spacing=u(0.32, 0.37), eye_width=u(0.27, 0.34), eye_height=u(0.06, 0.09),
        eye_tilt=u(-0.02, 0.035), brow_height=u(0.19, 0.28), brow_thickness=u(0.055, 0.11),
        brow_arch=u(0.0, 0.08), brow_length=u(0.42, 0.56), nose_length=u(0.4, 0.54),
        nose_width=u(0.15, 0.23), mouth_width=u(0.25, 0.36), upper_lip=u(0.05, 0.1),
        lower_lip=u(0.06, 0.12), gaze_x=u(-0.5, 0.5), gaze_y=u(-0.3, 0.3),
    )
    s.mouth_y = max(u(0.72, 0.9), s.nose_length + 0.24)
    s.face_length = max(u(1.28, 1.55), s.mouth_y + 0.5 - s.temple_y)
    return s


def _sample_expression(rng: np.random.Generator, s: ShapeParams, strong: bool) -> None:
    u = rng.uniform
    s.mouth_open, s.smile, s.brow_raise = u(0.0, 0.22), u(0.0, 0.4), u(-0.35, 0.35)
    eye = u(0.6, 1.0)
    s.eye_open_right = s.eye_open_left = eye
    if rng.random() < 0.3:  # slight asymmetry
        s.eye_open_left = float(np.clip(eye + u(-0.15, 0.15), 0.6, 1.0))
    if not strong:
        return
    kinds = ["mouth", "smile", "eyes", "brows"]
    for k in set(rng.choice(kinds, size=int(rng.integers(1, 3)), replace=False)):
        if k == "mouth":
            s.mouth_open = u(0.5, 1.0)
        elif k == "smile":
            s.smile = u(0.65, 1.0)
        elif k == "eyes":
            s.eye_open_right = s.eye_open_left = u(0.0, 0.2)
            if rng.random() < 0.25:  # wink
                s.eye_open_left = u(0.6, 1.0)
        else:
            s.brow_raise = u(0.65, 1.0) if rng.random() < 0.6 else u(-1.0, -0.65)


def _sample_occluder(rng: np.random.Generator, skin: float) -> Occluder:
    u = rng.uniform
    kind = str(rng.choice(["rect", "ellipse", "bar", "sunglasses", "hand"], p=[0.25, 0.2, 0.2, 0.15, 0.2]))
    tone = u(10, 240)
    if kind == "bar":
        anchor = int(rng.choice([96, 97, 54, 79, 85]))
        return Occluder(kind, anchor, u(-0.3, 0.3), u(-0.1, 0.1), u(1.8, 2.8), u(0.22, 0.45),
                        u(-15, 15), tone, u(0, 30))
    if kind == "sunglasses":
        return Occluder(kind, 51, 0.0, 0.0, u(0.26, 0.32), u(0.15, 0.2), 0.0, u(10, 60), u(0, 10))
    if kind == "hand":
        anchor = int(rng.choice([79, 85, 16, 8, 24, 54]))
        return Occluder(kind, anchor, u(-0.2, 0.2), u(-0.1, 0.2), u(0.8, 1.1), u(0.6, 0.85), u(-40, 40),
                        float(np.clip(skin + u(-25, 25), 0, 255)), u(3, 12))
    anchor = int(rng.choice([96, 97, 54, 57, 79, 85, 16, 6, 26, 38, 50]))
    return Occluder(kind, anchor, u(-0.2, 0.2), u(-0.2, 0.2), u(0.6, 1.2), u(0.5, 1.0), u(-30, 30),
                    tone, u(0, 40))


def sample_params(rng: np.random.Generator, image_size: SizeLike = DEFAULT_IMAGE_SIZE,
                  face_fraction: Tuple[float, float] = (0.22, 0.32), frontal: bool = False,
                  **force: Optional[bool]) -> FaceParams:
    """Draw a random face for an image of `image_size` (int or (w, h)).

    `force` takes WFLW attribute names (pose=..., expression=..., illumination=..., makeup=...,
    occlusion=..., blur=...): True makes that attribute strong (flag 1), False keeps it mild (flag 0),
    absent/None draws it with ATTRIBUTE_PROB. `face_fraction` is the inter-ocular distance as a
    fraction of the shorter image side. `frontal=True` limits the pose to |yaw| <= 10, |pitch| <= 8,
    |roll| <= 8 degrees and keeps the whole head inside the image (what a frontal-face detector sees).
    """
    if frontal and force.get("pose"):
        raise ValueError("frontal=True contradicts pose=True")
    bad = set(force) - set(ATTRIBUTES)
    if bad:
        raise ValueError("unknown attribute(s) %s; expected some of %s" % (sorted(bad), list(ATTRIBUTES)))
    u = rng.uniform
    w, h = _image_wh(image_size)
    shape = sample_shape(rng)
    _sample_expression(rng, shape, _strong(rng, "expression", force))

    p = FaceParams(shape=shape, seed=int(rng.integers(0, 2 ** 31 - 1)))
    # mild pose (training adds in-plane rotation on top, so roll stays modest here); strong pose below
    p.yaw, p.pitch, p.roll = (float(np.clip(rng.normal(0, 10), -25, 25)),
                              float(np.clip(rng.normal(0, 6), -15, 15)),
                              float(np.clip(rng.normal(0, 7), -20, 20)))
    if _strong(rng, "pose", force):
        r = rng.random()
        sign = 1.0 if rng.random() < 0.5 else -1.0
        if r < 0.65:
            p.yaw = sign * u(33, 46)
        elif r < 0.85:
            p.pitch = sign * u(23, 35)
        else:
            p.roll = sign * u(33, 50)
    if frontal:
        p.yaw, p.pitch, p.roll = u(-10, 10), u(-8, 8), u(-8, 8)
    # placement: the landmark box (the whole head for frontal faces) inside the image
    p.scale = u(*face_fraction) * min(w, h)
    p.center = (0.0, 0.0)
    lm, parts = face_geometry(p)
    pts = np.concatenate([lm, parts["hair_outer"]]) if frontal else lm
    lo, hi = pts.min(0), pts.max(0)
    margin = 2.0
    cx = u(margin - lo[0], max(margin - lo[0], w - margin - hi[0]))
    cy = u(margin - lo[1], max(margin - lo[1], h - margin - hi[1]))
    p.center = (float(cx), float(cy))
    # appearance
    p.skin = u(115, 215)
    dark_hair = rng.random() < 0.75
    p.hair = u(10, 70) if dark_hair else u(150, 235)
    p.hair_style = int(rng.choice([0, 1, 2], p=[0.12, 0.5, 0.38]))
    p.hairline, p.hair_volume = u(0.75, 1.1), u(0.7, 1.5)
    p.clothes = u(10, 240)
    p.brow = u(15, max(20.0, p.skin - 65))
    p.lip = p.skin * u(0.6, 0.82)
    p.sclera = min(250.0, p.skin + u(0, 40))
    p.iris = u(15, 100)
    p.socket = u(0.62, 0.82)
    p.glasses = bool(rng.random() < 0.08)
    p.makeup = u(0.0, 0.3)
    if _strong(rng, "makeup", force):
        p.makeup = u(0.65, 1.0)
    p.light_angle = u(0, 360)
    p.light_strength, p.light_gain, p.light_sharpness = u(0, 0.3), u(0.75, 1.2), u(1.0, 3.0)
    if _strong(rng, "illumination", force):
        if rng.random() < 0.65:
            p.light_strength = u(0.65, 1.0)
        else:
            p.light_gain = u(0.22, 0.45)
            p.light_strength = u(0, 0.6)
            if p.light_strength > LIGHT_STRENGTH - 0.1:
                p.light_strength = u(0.65, 1.0)
    p.blur, p.blur_kind, p.blur_angle = u(0.0, 0.015), "gaussian", u(0, 180)
    if _strong(rng, "blur", force):
        p.blur = u(0.045, 0.08)
        p.blur_kind = "motion" if rng.random() < 0.4 else "gaussian"
    p.noise = u(1.0, 6.0) * (1.8 if p.light_gain < LIGHT_GAIN else 1.0)
    p.background = {"tone": u(10, 240), "lowfreq": u(5, 70), "grid": int(rng.integers(2, 7)),
                    "clutter": int(rng.integers(0, 7)), "texture": u(0, 18)}
    if _strong(rng, "occlusion", force):
        lm, _ = face_geometry(p)
        for _ in range(20):  # re-draw until it really covers the face (rarely needs > 2 tries)
            p.occluder = _sample_occluder(rng, p.skin)
            if occluder_coverage(p, lm, _image_wh(image_size)) >= OCCLUSION_COVERAGE + 0.05:
                break
        else:
            p.occluder = Occluder("bar", 96, 0.0, 0.0, 2.4, 0.4, 0.0, u(10, 240), 10.0)
    return p


# ---------------------------------------------------------------- geometry


def face_geometry(p: FaceParams) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """Projected (98, 2) float32 landmarks and the projected non-landmark outlines."""
    pts3 = template_3d(p.shape)
    pts3[0:33] = silhouette(pts3[0:33], p.yaw, p.pitch, p.roll)
    parts3 = head_parts_3d(p.shape, p.yaw, p.pitch, p.roll, p.hairline, p.hair_volume)
    names = list(parts3)
    allp = np.concatenate([pts3] + [parts3[k] for k in names], axis=0)
    xy, _ = project(allp, p.yaw, p.pitch, p.roll, p.center, p.scale)
    lm = xy[:NUM_POINTS].astype(np.float32)
    parts, i = {}, NUM_POINTS
    for k in names:
        n = len(parts3[k])
        parts[k] = xy[i:i + n]
        i += n
    return lm, parts


def attribute_flags(p: FaceParams, landmarks: np.ndarray, image_wh: Tuple[int, int]) -> np.ndarray:
    """The six WFLW flags (pose expression illumination make-up occlusion blur) of a rendered face."""
    s = p.shape
    pose = abs(p.yaw) > POSE_YAW_DEG or abs(p.pitch) > POSE_PITCH_DEG or abs(p.roll) > POSE_ROLL_DEG
    expr = (s.mouth_open > EXPR_MOUTH_OPEN or s.smile > EXPR_SMILE
            or min(s.eye_open_right, s.eye_open_left) < EXPR_EYE_OPEN or abs(s.brow_raise) > EXPR_BROW)
    light = p.light_strength > LIGHT_STRENGTH or p.light_gain < LIGHT_GAIN
    occl = p.occluder is not None and occluder_coverage(p, landmarks, image_wh) >= OCCLUSION_COVERAGE
    # motion blur is stored as its equivalent sigma (kernel length = sigma * sqrt(12))
    return np.array([pose, expr, light, p.makeup > MAKEUP, occl, p.blur > BLUR_SIGMA], dtype=np.int32)


# ---------------------------------------------------------------- drawing helpers


def _fx(pts: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(pts, dtype=np.float64) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _poly(img: np.ndarray, pts: np.ndarray, value: float, aa: bool = True) -> None:
    cv2.fillPoly(img, [_fx(pts)], _color(img, value), cv2.LINE_AA if aa else cv2.LINE_8, _SHIFT)


def _line(img: np.ndarray, pts: np.ndarray, value: float, thickness: float, closed: bool = False) -> None:
    t = max(1, int(round(thickness)))
    aa = cv2.LINE_AA if img.dtype == np.uint8 else cv2.LINE_8
    cv2.polylines(img, [_fx(pts)], closed, _color(img, value), t, aa, _SHIFT)


def _ellipse(img: np.ndarray, c: Sequence[float], axes: Sequence[float], angle: float, value: float,
             thickness: int = -1) -> None:
    aa = cv2.LINE_AA if img.dtype == np.uint8 else cv2.LINE_8
    cen = (int(round(c[0] * _ONE)), int(round(c[1] * _ONE)))
    ax = (max(1, int(round(axes[0] * _ONE))), max(1, int(round(axes[1] * _ONE))))
    cv2.ellipse(img, cen, ax, float(angle), 0.0, 360.0, _color(img, value), thickness, aa, _SHIFT)


def _color(img: np.ndarray, value: float):
    v = min(255.0, max(0.0, float(value))) if img.dtype == np.uint8 else float(value)
    return (v,) * (img.shape[2] if img.ndim == 3 else 1)


def _face_angle(lm: np.ndarray) -> float:
    d = lm[72] - lm[60]
    return float(np.degrees(np.arctan2(d[1], d[0])))


def _lowfreq(rng: np.random.Generator, w: int, h: int, grid: int) -> np.ndarray:
    """Smooth random field in [-1, 1]: a grid x grid lattice, upsampled (cubic, then linear: fast)."""
    g = rng.uniform(-1.0, 1.0, (grid, grid)).astype(np.float32)
    small = cv2.resize(g, (max(grid, w // 8), max(grid, h // 8)), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


_NOISE_BANK: Dict[str, np.ndarray] = {}


def _noise_window(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Unit Gaussian noise (h, w): a random window of a fixed, lazily built bank (drawing fresh
    normals per image was the slowest step of rendering)."""
    bank = _NOISE_BANK.get("bank")
    need = max(h, w) + 64
    if bank is None or bank.shape[0] < need:
        side = max(need, 1024)
        bank = np.random.default_rng(12345).standard_normal((side, side)).astype(np.float32)
        _NOISE_BANK["bank"] = bank
    y0 = int(rng.integers(0, bank.shape[0] - h + 1))
    x0 = int(rng.integers(0, bank.shape[1] - w + 1))
    win = bank[y0:y0 + h, x0:x0 + w]
    return win.T[:h, :w] if (h == w and rng.random() < 0.5) else win


def _shading(p: FaceParams, lm: np.ndarray, face_poly: np.ndarray, w: int, h: int) -> np.ndarray:
    """Multiplicative shading map (h, w): eye sockets, nose bridge highlight and side shadows,
    cheeks, lip and chin shadows, and the darkening towards the face outline that makes the head
    look round. Everything is soft, so it is drawn at ~16 px per inter-ocular distance and
    upsampled."""
    s = p.scale
    k = max(1.0, s / 16.0)
    sw, sh = max(8, int(np.ceil(w / k))), max(8, int(np.ceil(h / k)))
    fx, fy = sw / float(w), sh / float(h)
    sc = np.array([fx, fy])

    def q(pt: np.ndarray) -> np.ndarray:  # full-res pixel -> small-map pixel (centre aligned)
        return (np.asarray(pt, dtype=np.float64) + 0.5) * sc - 0.5

    ss = s * 0.5 * (fx + fy)
    ang = _face_angle(lm)
    shade = np.ones((sh, sw), np.float32)
    for eye, brow in ((slice(60, 68), slice(33, 42)), (slice(68, 76), slice(42, 51))):
        ec, bc = lm[eye].mean(0), lm[brow].mean(0)
        ew = np.linalg.norm(lm[eye][0] - lm[eye][4]) * 0.5 * (fx + fy)
        _ellipse(shade, q(0.65 * ec + 0.35 * bc), (0.85 * ew, 0.5 * ew), ang, p.socket)
        if p.makeup > MAKEUP:
            _ellipse(shade, q(0.55 * ec + 0.45 * bc), (0.62 * ew, 0.28 * ew), ang, p.socket * 0.7)
    _line(shade, q(lm[51:55]), 1.18, 0.1 * ss)
    for side, base in ((-1, 55), (1, 59)):
        top = lm[52] + (lm[64 if side < 0 else 68] - lm[52]) * 0.45
        _line(shade, q(np.array([top, lm[base]])), 0.86, 0.05 * ss)
    _ellipse(shade, q(lm[54]), (0.05 * ss, 0.05 * ss), 0, 1.15)
    _ellipse(shade, q(lm[57] + (lm[79] - lm[57]) * 0.45), (0.12 * ss, 0.05 * ss), ang, 0.85)
    for cheek in (lm[4] * 0.45 + lm[55] * 0.55, lm[28] * 0.45 + lm[59] * 0.55):
        _ellipse(shade, q(cheek), (0.2 * ss, 0.14 * ss), ang, 1.07)
    _ellipse(shade, q(lm[85] + (lm[16] - lm[85]) * 0.35), (0.17 * ss, 0.05 * ss), ang, 0.86)
    if p.shape.smile > 0.3:
        for a, b in ((59, 82), (55, 76)):
            fold = np.array([lm[a] + (lm[a] - lm[57]) * 0.4, lm[b] + (lm[b] - lm[85]) * 0.15])
            _line(shade, q(fold), 1.0 - 0.15 * p.shape.smile, 0.03 * ss)
    shade = cv2.GaussianBlur(shade, (0, 0), 0.07 * ss)
    # round-head falloff towards the face outline
    small_mask = np.zeros((sh, sw), np.uint8)
    _poly(small_mask, q(face_poly), 255, aa=False)
    dist = cv2.distanceTransform(small_mask, cv2.DIST_L2, 3)
    f = np.minimum(dist * (1.0 / (0.32 * ss)), 1.0)
    shade *= 1.0 - 0.42 * (1.0 - f) ** 2  # outside the small mask: the edge value, no halo
    shade = cv2.resize(shade, (w, h), interpolation=cv2.INTER_LINEAR)
    mask = np.zeros((h, w), np.uint8)
    _poly(mask, face_poly, 255)
    # the shading applies to the face only (anti-aliased mask as alpha)
    return 1.0 + (shade - 1.0) * (mask.astype(np.float32) * (1.0 / 255.0))


def make_background(params: Dict[str, Any], w: int, h: int, seed: int) -> np.ndarray:
    """Gray float32 background: a tone, low-frequency shading, a few clutter shapes and texture."""
    rng = np.random.default_rng([seed, 1])
    tone = float(params.get("tone", 120.0))
    bg = np.full((h, w), tone, np.float32)
    bg += float(params.get("lowfreq", 30.0)) * _lowfreq(rng, w, h, int(params.get("grid", 3)))
    for _ in range(int(params.get("clutter", 3))):
        v = rng.uniform(0, 255)
        kind = rng.integers(0, 3)
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        if kind == 0:
            a, b = rng.uniform(0.05, 0.5, 2) * min(w, h)
            _ellipse(bg, (x, y), (a, b), rng.uniform(0, 180), v)
        elif kind == 1:
            x2, y2 = x + rng.uniform(-0.5, 0.5) * w, y + rng.uniform(-0.5, 0.5) * h
            _line(bg, np.array([[x, y], [x2, y2]]), v, rng.uniform(1, 0.05 * min(w, h)))
        else:
            rw, rh = rng.uniform(0.05, 0.6, 2) * min(w, h)
            _poly(bg, np.array([[x, y], [x + rw, y], [x + rw, y + rh], [x, y + rh]]), v, aa=False)
    tex = float(params.get("texture", 0.0))
    if tex > 0:
        tw, th = max(2, w // 6), max(2, h // 6)
        bg += tex * cv2.resize(rng.uniform(-1, 1, (th, tw)).astype(np.float32), (w, h))
    return bg


def _occluder_mask(p: FaceParams, lm: np.ndarray, wh: Tuple[int, int]) -> np.ndarray:
    """uint8 mask (0/255, anti-aliased) of the occluder in the image."""
    w, h = wh
    o = p.occluder
    mask = np.zeros((h, w), np.uint8)
    if o is None:
        return mask
    s = p.scale
    ang = _face_angle(lm) + o.angle
    rad = np.radians(_face_angle(lm))
    rot = np.array([[np.cos(rad), -np.sin(rad)], [np.sin(rad), np.cos(rad)]])
    c = lm[o.anchor] + rot @ np.array([o.dx, o.dy]) * s
    if o.kind == "sunglasses":
        for e in (96, 97):
            _ellipse(mask, lm[e], (o.w * s, o.h * s), _face_angle(lm), 255)
        _line(mask, np.array([lm[96], lm[97]]), 255, 0.06 * s)
    elif o.kind == "ellipse":
        _ellipse(mask, c, (o.w * s / 2, o.h * s / 2), ang, 255)
    elif o.kind == "hand":
        _ellipse(mask, c, (o.w * s * 0.42, o.h * s * 0.5), ang, 255)
        a = np.radians(ang)
        ux, uy = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
        for k in range(4):
            base = c + ux * (o.w * s * (-0.3 + 0.2 * k)) - uy * (o.h * s * 0.35)
            tip = base - uy * (o.h * s * (0.55 + 0.12 * (k in (1, 2))))
            _line(mask, np.array([base, tip]), 255, o.w * s * 0.17)
    else:  # rect, bar
        a = np.radians(ang)
        ux, uy = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
        hw, hh = o.w * s / 2, o.h * s / 2
        quad = np.array([c - ux * hw - uy * hh, c + ux * hw - uy * hh, c + ux * hw + uy * hh,
                         c - ux * hw + uy * hh])
        _poly(mask, quad, 255)
    return mask


def occluder_coverage(p: FaceParams, landmarks: np.ndarray, wh: Tuple[int, int]) -> float:
    """Share of the 98 landmarks the occluder hides (points outside the image count as hidden
    only if the occluder is there too, i.e. never)."""
    if p.occluder is None:
        return 0.0
    mask = _occluder_mask(p, landmarks, wh)
    xy = np.round(landmarks).astype(np.int64)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < wh[0]) & (xy[:, 1] >= 0) & (xy[:, 1] < wh[1])
    hit = np.zeros(len(xy), bool)
    hit[inside] = mask[xy[inside, 1], xy[inside, 0]] >= 128
    return float(hit.mean())


# ---------------------------------------------------------------- rendering


def _draw_eye(img: np.ndarray, e: np.ndarray, pupil: np.ndarray, p: FaceParams, liner: float) -> None:
    s = p.scale
    opening = float(np.mean(np.linalg.norm(e[[1, 2, 3]] - e[[7, 6, 5]], axis=1)))
    lash = min(p.brow, p.skin * 0.4)
    if opening > 0.8:
        x0, y0 = np.floor(e.min(0)).astype(int) - 2
        x1, y1 = np.ceil(e.max(0)).astype(int) + 3
        h, w = img.shape
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 > x0 and y1 > y0:
            off = np.array([x0, y0], np.float64)
            m = np.zeros((y1 - y0, x1 - x0), np.uint8)
            _poly(m, e - off, 255)
            tmp = np.full(m.shape, p.sclera, np.float32)
            r = 0.075 * s
            _ellipse(tmp, pupil - off, (r, r), 0, p.iris)
            _ellipse(tmp, pupil - off, (0.42 * r, 0.42 * r), 0, min(p.iris, 25.0))
            _ellipse(tmp, pupil - off + np.array([0.3 * r, -0.35 * r]), (0.18 * r, 0.18 * r), 0, 230)
            a = m.astype(np.float32) * (1.0 / 255.0)
            roi = img[y0:y1, x0:x1].astype(np.float32)
            img[y0:y1, x0:x1] = np.clip(roi + a * (tmp - roi) + 0.5, 0, 255).astype(np.uint8)
        _line(img, e[[0, 1, 2, 3, 4]], lash, (0.028 + 0.03 * liner) * s)
        _line(img, e[[4, 5, 6, 7, 0]], p.skin * 0.55, 0.012 * s)
    else:
        _line(img, e[[0, 1, 2, 3, 4]], lash, (0.034 + 0.03 * liner) * s)
    if liner > 0.5:  # winged eyeliner
        wing = e[0] + (e[0] - e[4]) * 0.18 + (e[2] - e[6]) * 0.25
        _line(img, np.array([e[1], e[0], wing]), lash * 0.5, 0.03 * s)


def render_face(source: Union[np.random.Generator, int, FaceParams] = 0,
                image_size: SizeLike = DEFAULT_IMAGE_SIZE,
                background: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one face: returns (uint8 grayscale image (H, W), float32 (98, 2) landmarks in pixels,
    int32 (6,) WFLW attribute flags).

    `source` is a FaceParams (rendered as given), a numpy Generator or an int seed (a face is sampled
    with `sample_params`). `image_size` is an int (square) or (w, h). `background` (float32 or uint8
    (H, W)) replaces the generated one, e.g. a fixed backdrop for a video.
    """
    if isinstance(source, FaceParams):
        p = source
    else:
        rng = source if isinstance(source, np.random.Generator) else np.random.default_rng(int(source))
        p = sample_params(rng, image_size)
    w, h = _image_wh(image_size)
    if background is not None:
        if background.shape[:2] != (h, w):
            raise ValueError("background is %s but image_size is (w=%d, h=%d)" % (background.shape, w, h))
        bg = background
    else:
        bg = make_background(p.background, w, h, p.seed)
    # Features are drawn on uint8: OpenCV anti-aliases (sub-pixel accurate edges) only on 8-bit images.
    img = np.clip(bg, 0, 255).astype(np.uint8)
    lm, parts = face_geometry(p)
    s = p.scale
    rng = np.random.default_rng([p.seed, 2])
    ang = _face_angle(lm)

    face_poly = np.concatenate([lm[0:33], parts["forehead"]], axis=0)
    # behind the face: shoulders, neck (upright, whatever the head does), long hair, ears
    jaw_l, jaw_r = lm[7] + (lm[16] - lm[7]) * 0.2, lm[25] + (lm[16] - lm[25]) * 0.2
    neck_w = 0.5 * abs(jaw_r[0] - jaw_l[0])
    neck_x = 0.5 * (jaw_l[0] + jaw_r[0])
    base_y = lm[16][1] + 0.55 * s
    shoulders = np.array([[neck_x - 1.1 * neck_w, base_y], [neck_x + 1.1 * neck_w, base_y],
                          [neck_x + 2.6 * s, base_y + 0.7 * s], [neck_x + 2.6 * s, h + s],
                          [neck_x - 2.6 * s, h + s], [neck_x - 2.6 * s, base_y + 0.7 * s]])
    _poly(img, shoulders, p.clothes)
    neck = np.array([jaw_l, jaw_r, [neck_x + 0.95 * neck_w, base_y + 0.1 * s],
                     [neck_x - 0.95 * neck_w, base_y + 0.1 * s]])
    _poly(img, neck, p.skin * 0.72)
    hair_outer = parts["hair_outer"]
    if p.hair_style == 2:
        down = np.array([0.0, 1.8 * s])
        out = (hair_outer[-1] - hair_outer[0]) * 0.12
        long_back = np.concatenate([hair_outer, [hair_outer[-1] + out + down, hair_outer[0] - out + down]])
        _poly(img, long_back, p.hair * 0.85)
    for ear in ("ear_right", "ear_left"):
        _poly(img, parts[ear], p.skin * 0.85)
    _poly(img, face_poly, p.skin)
    _poly(img, cv2.convexHull(lm[51:60].astype(np.float32)).reshape(-1, 2), p.skin)  # a turned nose juts out

    # soft shading (multiplicative, blurred), drawn at low resolution: sockets, nose, cheeks, lips
    shade = _shading(p, lm, face_poly, w, h)

    # hair over the forehead
    if p.hair_style > 0:
        _poly(img, np.concatenate([hair_outer, parts["hairline"][::-1]]), p.hair)
    # sharp features
    _poly(img, lm[33:42], p.brow)
    _poly(img, lm[42:51], p.brow)
    liner = p.makeup if p.makeup > MAKEUP else 0.0
    _draw_eye(img, lm[60:68], lm[96], p, liner)
    _draw_eye(img, lm[68:76], lm[97], p, liner)
    nose_tone = p.skin * 0.3
    for a, b in ((55, 56), (59, 58)):
        c = 0.45 * lm[a] + 0.55 * lm[b] + (lm[53] - lm[57]) * 0.12
        _ellipse(img, c, (0.045 * s, 0.022 * s), ang + (12 if a == 55 else -12), nose_tone)
    _line(img, lm[55:60], p.skin * 0.72, 0.018 * s)
    lip = p.lip if p.makeup <= MAKEUP else p.skin * (0.45 - 0.25 * (p.makeup - MAKEUP))
    _poly(img, lm[76:88], lip)
    gap = float(np.mean(np.linalg.norm(lm[[89, 90, 91]] - lm[[95, 94, 93]], axis=1)))
    mouth_dark = min(35.0, p.skin * 0.2)
    if gap > 1.0:
        _poly(img, lm[88:96], mouth_dark)
        if gap > 0.05 * s:
            teeth = np.concatenate([lm[88:93], lm[[92, 91, 90, 89, 88]] + (lm[[92, 93, 94, 95, 88]] -
                                                                          lm[[92, 91, 90, 89, 88]]) * 0.3])
            _poly(img, teeth, min(235.0, p.sclera + 10))
    _line(img, lm[88:93], mouth_dark, 0.018 * s)
    if p.makeup > MAKEUP:
        _line(img, lm[76:88], lip * 0.7, 0.015 * s, closed=True)
    if p.glasses:
        for e in (96, 97):
            _ellipse(img, lm[e], (0.24 * s, 0.16 * s), ang, 25, max(1, int(round(0.025 * s))))
        _line(img, np.array([lm[96] + (lm[97] - lm[96]) * 0.36, lm[96] + (lm[97] - lm[96]) * 0.64]), 25,
              0.025 * s)

    img = img.astype(np.float32) * shade
    if p.occluder is not None:
        o = p.occluder
        om = _occluder_mask(p, lm, (w, h)).astype(np.float32) * (1.0 / 255.0)
        tex = o.tone + o.texture * _lowfreq(rng, w, h, 7)
        if o.kind == "hand":
            tex = tex * cv2.GaussianBlur(1.0 - 0.35 * (1.0 - om), (0, 0), 0.05 * s)
        img += om * (tex - img)

    # illumination: directional ramp and exposure
    if p.light_strength > 0 or p.light_gain != 1.0:
        a = np.radians(p.light_angle)
        xs = (np.arange(w, dtype=np.float32) - p.center[0]) * (np.cos(a) / (1.1 * s))
        ys = (np.arange(h, dtype=np.float32) - p.center[1]) * (np.sin(a) / (1.1 * s))
        ramp = np.tanh(p.light_sharpness * (xs[None, :] + ys[:, None]))
        light = np.clip(p.light_gain * (1.0 + p.light_strength * ramp), 0.06, 1.6)
        img *= light

    # blur (always a little: drawn edges are too crisp for a camera)
    sigma = max(0.5, p.blur * s)
    if p.blur_kind == "motion" and p.blur * s > 1.0:
        length = max(3, int(round(p.blur * s * np.sqrt(12.0))) | 1)
        k = np.zeros((length, length), np.float32)
        c = length // 2
        a = np.radians(p.blur_angle)
        d = np.array([np.cos(a), np.sin(a)]) * c
        ends = [(int(round(c - d[0])), int(round(c - d[1]))), (int(round(c + d[0])), int(round(c + d[1])))]
        cv2.line(k, ends[0], ends[1], 1.0, 1, cv2.LINE_AA)
        img = cv2.filter2D(img, -1, k / k.sum())
        img = cv2.GaussianBlur(img, (0, 0), 0.5)
    else:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    if p.noise > 0:
        img += p.noise * _noise_window(rng, w, h)
    out = np.clip(img, 0, 255).astype(np.uint8)
    return out, lm, attribute_flags(p, lm, (w, h))


def with_changes(p: FaceParams, **shape_changes: Any) -> FaceParams:
    """Copy of `p` with some ShapeParams fields changed (e.g. eye_open_right=0.1)."""
    return replace(p, shape=replace(p.shape, **shape_changes))


def describe(p: FaceParams) -> Dict[str, Any]:
    """Compact JSON-able record of a face's main parameters (for metadata files)."""
    s = p.shape
    return {"yaw": round(p.yaw, 2), "pitch": round(p.pitch, 2), "roll": round(p.roll, 2),
            "eye_open": [round(s.eye_open_right, 3), round(s.eye_open_left, 3)],
            "mouth_open": round(s.mouth_open, 3), "smile": round(s.smile, 3),
            "occluder": None if p.occluder is None else p.occluder.kind,
            "blur": round(p.blur, 4), "scale": round(p.scale, 2)}


__all__: List[str] = ["FaceParams", "Occluder", "ShapeParams", "sample_params", "render_face",
                      "face_geometry", "attribute_flags", "occluder_coverage", "make_background",
                      "with_changes", "describe", "DEFAULT_IMAGE_SIZE"]
