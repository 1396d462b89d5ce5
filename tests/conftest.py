"""Shared fixtures. Real-format data lives beside the checkout in ../shared/data: CI
(CI=true) must have it, so there a missing copy is a failure, not a skip."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FLM_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data (faces98/ and wflw98_mirror.txt)."""
    if not (SHARED_DATA / "faces98").is_dir():
        msg = "shared data not found at %s (set FLM_SHARED_DATA)" % SHARED_DATA
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return SHARED_DATA


@pytest.fixture(scope="session")
def faces98(shared_data: Path) -> Path:
    return shared_data / "faces98"


def randomize_batchnorm(model, seed: int = 0) -> None:
    """Give every BatchNormalization layer non-trivial statistics, so round-trip and folding
    tests compare real numbers instead of an identity BN."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            g, b, m, v = layer.get_weights()
            layer.set_weights([g * rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 2, v.shape)])
