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
    aux_pose_head: bool = True
    num_points: int = 98

    def __post_init__(self) -> None:
        if self.activation not in ("relu", "relu6"):
            raise ValueError("activation must be 'relu' or 'relu6', got %r" % (self.activation,))
        if not 0 < self.width <= 4:
            raise ValueError("width must be in (0, 4], got %r" % (self.width,))
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
        with open(path) as f:
            return cls.from_dict(json.load(f))


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
