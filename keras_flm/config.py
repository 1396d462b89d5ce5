"""Hyperparameter defaults: the paper's Table 1 values, in one place.

CLI flags override fields; the resolved dataclasses are written to the run
directory's config.json, and later steps read them back from there.
"""
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, Optional, Tuple

from runtime.preprocess import CropSpec


@dataclass
class ModelConfig:
    """MobileNetV2-PFLD (PFLD reference backbone + the paper's customisations)."""

    input_size: int = 112
    width: float = 1.0
    activation: str = "relu"  # "relu" (paper) or "relu6" (ablation)
    extra_convs: int = 2  # extra 3x3 Conv-BN-ReLU layers before the pooled head
    extra_channels: int = 64  # their width (scaled by `width`)
    # S1, the 14x14 map every landmark passes through (PFLD's 16; scaled by `width`). The
    # published 16 channels is the narrowest point of the network; wider is an flm option.
    s1_channels: int = 16
    aux_pose_head: bool = True
    num_points: int = 98
    # Keras' default BN momentum (0.99) makes the moving statistics lag far behind the
    # weights in short CPU runs (val NME stuck at the mean shape for ~300 steps); 0.9 is
    # the PyTorch reference's momentum=0.1.
    bn_momentum: float = 0.9

    def __post_init__(self) -> None:
        if self.activation not in ("relu", "relu6"):
            raise ValueError("activation must be 'relu' or 'relu6', got %r" % (self.activation,))
        if not 0 < self.width <= 4:
            raise ValueError("width must be in (0, 4], got %r" % (self.width,))
        if self.s1_channels < 1:
            raise ValueError("s1_channels must be >= 1, got %r" % (self.s1_channels,))
        if self.extra_convs < 0:
            raise ValueError("extra_convs must be >= 0, got %r" % (self.extra_convs,))


@dataclass
class AugmentConfig:
    rotation_deg: float = 30.0
    scale_jitter: float = 0.1
    shift_jitter: float = 0.1
    flip: bool = True
    brightness: float = 0.25
    contrast: float = 0.3
    gamma: float = 0.3
    blur_prob: float = 0.2
    occlusion_prob: float = 0.3
    # Added with the data pipeline (keras_flm/data):
    blur_sigma: float = 1.2  # Gaussian sigma (crop pixels) of the blur augmentation
    occlusion_max: float = 0.4  # largest occluder side as a fraction of the crop
    noise_std: float = 3.0  # max std of additive Gaussian pixel noise (grey levels)
    # Crops are cached once at `cache_margin` x the contract's window (same pixel size), so
    # rotation/scale/shift re-crop inside real image content instead of black borders.
    # 1.75 covers +-30 deg x 1.1 scale + 0.1 shift: half-extent 0.66*(cos+sin)+0.12 = 1.02 < 1.05.
    cache_margin: float = 1.75
    # Added for in-the-wild test faces (WIDER scenes: small, blurred, side-lit):
    lowres_prob: float = 0.0  # share of crops downscaled then upscaled back (low resolution)
    lowres_min: float = 0.35  # smallest downscale factor (0.35 = a 39-px face window)
    shade_prob: float = 0.0  # share of crops under a linear light gradient (side lighting)
    shade_strength: float = 0.6  # gradient amplitude: gains run from 1 - s to 1 + s across the crop
    # Added for turned (large-yaw) faces, which the train list nearly lacks (keras_flm/data/pipeline.py):
    turn_prob: float = 0.0  # share of crops under the horizontal yaw warp
    turn_max: float = 0.3  # largest warp a: the face centre moves by up to ~a of the crop's half-width
    # Added for occluded faces (a neighbour's head, hair, a hand: the WIDER test faces that drift
    # under re-cropping): share of occluders cut from another crop of the batch (a face, hair or
    # background patch, shifted) as an ellipse or a rectangle, instead of a flat grey rectangle
    occlusion_texture: float = 0.0
    # Added for the WIDER test faces flagged "blur", most of which are small JPEG faces upscaled by the
    # crop (8x8 blocks, ringing): share of crops JPEG-compressed, at a quality drawn from
    # [jpeg_quality_min, 90], at the low resolution when the crop is also downscaled
    jpeg_prob: float = 0.0
    jpeg_quality_min: int = 20
    # Added for the live tracker's re-detections (stop 28): Haar fires on the frontal-looking half of a
    # turned face, a box ~0.5x the face, and a model trained only on whole-face boxes stays on that part.
    # Share of crops cut from a box smaller than the face by a factor drawn from [zoom_min, 1], so the
    # model learns to reach past the crop's edge to the whole face and the next re-crop grows back
    zoom_prob: float = 0.0
    zoom_min: float = 0.6


#: AugmentConfig fields that are shares or fractions, so lie in [0, 1] (the others are magnitudes >= 0;
#: cache_margin >= 1): what `flm train --augment-set` checks
AUGMENT_UNIT_FIELDS = ("blur_prob", "occlusion_prob", "lowres_prob", "shade_prob", "turn_prob", "jpeg_prob",
                       "occlusion_texture", "occlusion_max", "lowres_min", "zoom_prob", "zoom_min")


# Named augmentation strengths (`flm train --augment NAME`). "full" is the paper's recipe for
# real faces. "light" is for short schedules on the synthetic data, which already varies pose,
# occlusion, blur and lighting per face: measured at width 0.25 with a 3-minute budget on
# 1,440 synthetic train faces, val NME 8.6 % (light) and 8.4 % (none) vs 15.6 % and still on the
# mean-shape plateau for ~10 epochs with "full" (mean-shape baseline 16.3 %).
AUGMENT_PRESETS: Dict[str, Dict[str, Any]] = {
    "full": {},
    "light": dict(rotation_deg=10.0, scale_jitter=0.05, shift_jitter=0.05, brightness=0.1, contrast=0.1,
                  gamma=0.1, blur_prob=0.0, occlusion_prob=0.0, noise_std=0.0),
    # In-the-wild faces (WIDER-style test scenes) from mostly frontal studio-like training faces:
    # wider scale/shift (the live tracker's boxes vary by 10-20 % of the face), stronger light,
    # blur, low resolution, occlusion. 2.0 margin: half-extent 1.15 * 0.5 * 1.366 + 0.12 = 0.91 < 1.0.
    "wild": dict(rotation_deg=30.0, scale_jitter=0.15, shift_jitter=0.12, brightness=0.3, contrast=0.5,
                 gamma=0.5, blur_prob=0.35, blur_sigma=1.8, occlusion_prob=0.4, occlusion_max=0.5,
                 noise_std=6.0, lowres_prob=0.3, lowres_min=0.35, shade_prob=0.3, shade_strength=0.6,
                 cache_margin=2.0),
    # "full" plus turned faces (the yaw warp: 13 of the 68 test faces are turned >= 30 deg, 8 of the
    # 4,704 train faces) and wild's wider scale/shift, which the live tracker's re-crops need.
    "turn": dict(scale_jitter=0.15, shift_jitter=0.12, cache_margin=2.0, turn_prob=0.5, turn_max=0.4),
    "none": dict(rotation_deg=0.0, scale_jitter=0.0, shift_jitter=0.0, flip=False, brightness=0.0,
                 contrast=0.0, gamma=0.0, blur_prob=0.0, occlusion_prob=0.0, noise_std=0.0),
}


# landmark terms the PFLD loss can use (keras_flm/loss.py)
LANDMARK_LOSSES = ("l2", "wing")


def augment_preset(name: str) -> AugmentConfig:
    """The AugmentConfig of a named preset (ValueError naming the choices otherwise)."""
    if name not in AUGMENT_PRESETS:
        raise ValueError("unknown augmentation preset %r (choose from %s)"
                         % (name, ", ".join(AUGMENT_PRESETS)))
    return AugmentConfig(**AUGMENT_PRESETS[name])


@dataclass
class TrainConfig:
    batch_size: int = 64
    epochs: int = 100
    lr: float = 1e-3
    lr_min: float = 1e-5
    weight_decay: float = 1e-5
    clipnorm: float = 10.0
    patience: int = 10
    val_fraction: float = 0.1
    seed: int = 42
    strategy: str = "auto"
    steps_per_epoch: Optional[int] = None
    # Added with training (keras_flm/train.py):
    max_images: Optional[int] = None  # deterministic subset of the train list (quick runs)
    pose_weighting: bool = True  # PFLD's (1 + sum_k 1 - cos theta_k) factor in the loss
    attribute_weighting: bool = True  # PFLD's 1 + sum_c 1/share_c attribute weight in the loss
    val_batch_size: int = 128
    # Wall-clock budget (minutes, None = none): the cosine LR anneals over max(step share, time
    # share) and training stops before an epoch that would overrun it (shared/slow machines).
    time_budget_min: Optional[float] = None
    # Added for in-the-wild accuracy (issue 10):
    # repeat faces per epoch: {"pose": 2} repeats faces with that WFLW attribute flag, any other key
    # is an image-path prefix ({"wflw_pseudo/": 3}); a face takes the largest factor that matches.
    oversample: Dict[str, int] = field(default_factory=dict)
    ema: float = 0.0  # weight EMA momentum (0 = off); validation and exports use the averaged weights
    init: Optional[str] = None  # start from these weights: a release dir, a run dir or an .h5
    # after training, re-estimate the best model's BN statistics on this many training batches
    # (keras_flm/bn_calibration.py); kept only if validation NME improves. 0 = off.
    bn_calibration_steps: int = 50
    # landmark term of the loss (keras_flm/loss.py LANDMARK_LOSSES): "l2" as published, or "wing"
    landmark_loss: str = "l2"
    # after training (and BN re-estimation), refit the landmark head by least squares on exact and
    # jittered training crops (keras_flm/head_refit.py; kept only if validation NME improves). Off:
    # on the release it lowered validation NME (3.88 -> 3.58 %) but not the test faces' (9.00 vs
    # 8.94 %), and the tracker did worse (re-crop drift +14.3 vs +13.2 %, video 1.24x vs 1.16x)
    head_refit: bool = False
    # BatchNormalization layers frozen (moving statistics used and kept, gamma/beta fixed) while the
    # convolutions train: for warm restarts under strong augmentation, whose batch statistics differ
    # from clean crops' (runs/occ_s20's validation NME swung 4.4-7.1 % with live BN statistics)
    freeze_bn: bool = False
    # compute precision (keras_flm/train.py resolve_precision): "auto" = mixed_float16 on a GPU,
    # float32 on a CPU; "mixed_bfloat16" for CPUs with AVX512-BF16/AMX (variables stay float32,
    # the landmark and pose heads compute in float32); "float32"; "mixed_float16"
    precision: str = "auto"
    # extra WFLW-layout roots (absolute paths) whose whole train lists join the training faces, never
    # validation (that stays the --data root's split, so runs with and without them compare): e.g.
    # synthetic turned faces. Stored here so --resume, refit-head and QAT reload the same faces
    extra_train: Tuple[str, ...] = ()
    # a turned validation set (absolute path; scripts/make_pose_data.py --part val: this split's
    # validation faces turned 20-50 degrees): the best epoch is then chosen by
    # runtime.metrics.pose_weighted(validation NME, its NME), not by the validation faces alone
    turned_val: Optional[str] = None

    def __post_init__(self) -> None:
        # config.json holds a list; a tuple keeps loaded and built configs equal
        roots = self.extra_train or ()
        self.extra_train = (str(roots),) if isinstance(roots, str) else tuple(str(p) for p in roots)


PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


@dataclass
class RunConfig:
    """Everything a run needs, as written to runs/NAME/config.json."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    crop: CropSpec = field(default_factory=CropSpec)
    data: Dict[str, Any] = field(default_factory=dict)
    versions: Dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "RunConfig":
        def sub(klass, key):
            vals = d.get(key, {}) or {}
            known = {f.name for f in fields(klass)}
            return klass(**{k: v for k, v in vals.items() if k in known})

        return cls(model=sub(ModelConfig, "model"), train=sub(TrainConfig, "train"),
                   augment=sub(AugmentConfig, "augment"), crop=CropSpec.from_dict(d.get("crop", {})),
                   data=dict(d.get("data", {})), versions=dict(d.get("versions", {})))

    @classmethod
    def load(cls, path: str) -> "RunConfig":
        from keras_flm.report_md import read_json

        return cls.from_dict(read_json(path))


def describe_augment(aug: AugmentConfig) -> str:
    """One line a model card can print: the recipe's magnitudes, and the share of crops each
    random effect touches (a preset name alone says nothing once --augment-set changed a field)."""
    pct = lambda v: "%g %%" % round(100 * v, 1)  # noqa: E731
    parts = ["rotation ±%g°" % aug.rotation_deg, "scale ±%s" % pct(aug.scale_jitter),
             "shift ±%s" % pct(aug.shift_jitter)]
    if aug.flip:
        parts.append("mirror")
    parts.append("brightness ±%g, contrast ±%g, gamma ±%g" % (aug.brightness, aug.contrast, aug.gamma))
    if aug.noise_std > 0:
        parts.append("noise σ ≤ %g" % aug.noise_std)
    if aug.blur_prob > 0:
        parts.append("blur on %s (σ ≤ %g px)" % (pct(aug.blur_prob), aug.blur_sigma))
    if aug.lowres_prob > 0:
        parts.append("low resolution on %s (down to %g×)" % (pct(aug.lowres_prob), aug.lowres_min))
    if aug.jpeg_prob > 0:
        parts.append("JPEG on %s (quality %d-90)" % (pct(aug.jpeg_prob), aug.jpeg_quality_min))
    if aug.shade_prob > 0:
        parts.append("side light on %s (±%g)" % (pct(aug.shade_prob), aug.shade_strength))
    if aug.occlusion_prob > 0:
        textured = ", %s of them textured" % pct(aug.occlusion_texture) if aug.occlusion_texture else ""
        parts.append("occluders on %s (≤ %s of the crop side%s)"
                     % (pct(aug.occlusion_prob), pct(aug.occlusion_max), textured))
    if aug.turn_prob > 0:
        parts.append("yaw warp on %s (a ≤ %g)" % (pct(aug.turn_prob), aug.turn_max))
    return ", ".join(parts)


def override(obj: Any, **kwargs: Any) -> Tuple[str, ...]:
    """Set the non-None keyword values on a config dataclass; return the names changed."""
    names = {f.name for f in fields(obj)}
    changed = []
    for k, v in kwargs.items():
        if v is None:
            continue
        if k not in names:
            raise ValueError("%s has no field %r" % (type(obj).__name__, k))
        setattr(obj, k, v)
        changed.append(k)
    obj.__post_init__() if hasattr(obj, "__post_init__") else None
    return tuple(changed)
