"""Landmark accuracy metrics of the WFLW protocol: NME, FR, AUC, CED, per region/attribute.

numpy only, so the board's `flm-dpu eval` and the host's `flm eval` compute the
same numbers from the same code. All errors are in whatever unit the points are
in (evaluation uses frame pixels) divided by a per-face normaliser, so they are
unit-free fractions (0.0584 = 5.84 % NME).

Protocol (docs/pfld-wflw.md): NME normalised by the outer eye corners 60/72;
FR@0.1 = share of faces with NME > 0.1; AUC@0.1 = area under the cumulative error
distribution on [0, 0.1] by Simpson's rule with step 1e-4, divided by 0.1.
"""
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from runtime.landmarks import ATTRIBUTES, NUM_POINTS, OUTER_EYE_CORNERS, REGIONS

#: Failure threshold and CED integration step of the WFLW protocol.
DEFAULT_THRESHOLD = 0.1
DEFAULT_STEP = 1e-4

#: Normalisers: a pair of point indices whose ground-truth distance divides the error.
#: "inter_ocular" (outer eye corners) is WFLW's standard; "inter_pupil" is reported by some papers.
NORMALISERS: Dict[str, Tuple[int, int]] = {
    "inter_ocular": OUTER_EYE_CORNERS,
    "inter_pupil": (96, 97),
}

#: WFLW's names of its six test subsets, keyed by the annotation flag (runtime.landmarks.ATTRIBUTES).
SUBSET_NAMES: Dict[str, str] = {
    "pose": "largepose",
    "expression": "expression",
    "illumination": "illumination",
    "makeup": "makeup",
    "occlusion": "occlusion",
    "blur": "blur",
}

#: Share of large-pose faces in WFLW's test set (326 of its 2,500: the pose subset of Wu et al. 2018).
POSE_SHARE = 326.0 / 2500.0


def pose_weighted(nme_real: float, nme_turned: float) -> float:
    """Validation NME with turned faces at WFLW's large-pose share.

    Why: the validation split holds 20 faces turned by 15 degrees or more, none far, so a model
    that learns head turns shows on it only as a small loss on frontal faces. Turned copies of the
    validation faces (scripts/make_pose_data.py --part val) scored beside them and weighted as in
    WFLW's test set let training and the release gate see both."""
    return (1.0 - POSE_SHARE) * float(nme_real) + POSE_SHARE * float(nme_turned)


def _as_points(a: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1:] != (NUM_POINTS, 2):
        raise ValueError("%s must be (N, %d, 2) landmarks, got %s" % (what, NUM_POINTS, np.asarray(a).shape))
    return x


def normaliser(gt: np.ndarray, norm: str = "inter_ocular") -> np.ndarray:
    """Per-face normalising distance (N,) from ground truth; raises on a zero distance."""
    if norm not in NORMALISERS:
        raise ValueError("unknown normaliser %r; choose from %s" % (norm, ", ".join(NORMALISERS)))
    g = _as_points(gt, "gt")
    i, j = NORMALISERS[norm]
    d = np.linalg.norm(g[:, i] - g[:, j], axis=-1)
    bad = np.flatnonzero(~(d > 0))
    if bad.size:
        raise ValueError("ground truth of face %d has a zero/invalid %s distance (points %d and %d): "
                         "cannot normalise" % (int(bad[0]), norm, i, j))
    return d


def point_errors(pred: np.ndarray, gt: np.ndarray, norm: str = "inter_ocular") -> np.ndarray:
    """Normalised point-to-point errors (N, 98): the building block of every NME here."""
    p, g = _as_points(pred, "pred"), _as_points(gt, "gt")
    if p.shape != g.shape:
        raise ValueError("pred %s and gt %s differ in shape" % (p.shape, g.shape))
    return np.linalg.norm(p - g, axis=-1) / normaliser(g, norm)[:, None]


def nme(pred: np.ndarray, gt: np.ndarray, norm: str = "inter_ocular") -> np.ndarray:
    """Per-face NME (N,): mean over the 98 points of the normalised point error."""
    return point_errors(pred, gt, norm).mean(axis=1)


def region_nme(errors: np.ndarray) -> Dict[str, float]:
    """Mean normalised error per face region from `point_errors` output (N, 98)."""
    e = np.asarray(errors, dtype=np.float64)
    return {name: float(e[:, list(idx)].mean()) for name, idx in REGIONS.items()}


def failure_rate(nmes: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Share (0..1) of faces whose NME exceeds `threshold` (FR@threshold)."""
    n = np.asarray(nmes, dtype=np.float64).ravel()
    if n.size == 0:
        raise ValueError("failure_rate of an empty set of faces is undefined")
    return float(np.mean(n > threshold))


def ced(nmes: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
        step: float = DEFAULT_STEP) -> Tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: (x, share of faces with NME <= x) for x in [0, threshold].

    The grid is `linspace`, not `arange`, so the last point is exactly `threshold`
    whatever the float rounding of `threshold / step`.
    """
    n = np.sort(np.asarray(nmes, dtype=np.float64).ravel())
    if n.size == 0:
        raise ValueError("CED of an empty set of faces is undefined")
    if not (threshold > 0 and step > 0):
        raise ValueError("threshold and step must be > 0, got %r, %r" % (threshold, step))
    intervals = max(1, int(round(threshold / step)))
    xs = np.linspace(0.0, threshold, intervals + 1)
    ys = np.searchsorted(n, xs, side="right") / float(n.size)
    return xs, ys


def simpson(y: np.ndarray, x: np.ndarray) -> float:
    """Composite Simpson integral of samples y on the uniform grid x.

    Even number of intervals: Simpson's 1/3 rule. Odd: 1/3 rule on all but the last
    three intervals and Simpson's 3/8 rule on those, so the rule stays exact for
    cubics (scipy's `simpson` differs only in how it treats odd counts).
    """
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if y.shape != x.shape or y.ndim != 1:
        raise ValueError("simpson needs 1-D x and y of equal length")
    m = len(y) - 1  # intervals
    if m < 1:
        return 0.0
    h = (x[-1] - x[0]) / m
    if m == 1:
        return float(h * (y[0] + y[1]) / 2.0)

    def third(a: np.ndarray) -> float:  # a has an odd number of samples
        return float(h / 3.0 * (a[0] + a[-1] + 4.0 * a[1:-1:2].sum() + 2.0 * a[2:-1:2].sum()))

    if m % 2 == 0:
        return third(y)
    tail = y[-4:]
    three_eighths = 3.0 * h / 8.0 * (tail[0] + 3.0 * tail[1] + 3.0 * tail[2] + tail[3])
    return (third(y[:-3]) if m > 3 else 0.0) + float(three_eighths)


def auc(nmes: np.ndarray, threshold: float = DEFAULT_THRESHOLD, step: float = DEFAULT_STEP) -> float:
    """AUC@threshold: Simpson area under the CED on [0, threshold], divided by threshold (0..1)."""
    xs, ys = ced(nmes, threshold, step)
    return simpson(ys, xs) / threshold


def accuracy(nme_mean: float) -> float:
    """The paper's "accuracy" (it never defines it): 100 * (1 - NME), in percent."""
    return 100.0 * (1.0 - float(nme_mean))


def subset_summary(nmes: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
                   step: float = DEFAULT_STEP) -> Dict[str, Any]:
    """count, nme, accuracy, failure_rate, auc of a set of per-face NMEs (None when empty)."""
    n = np.asarray(nmes, dtype=np.float64).ravel()
    if n.size == 0:
        return {"count": 0, "nme": None, "accuracy": None, "failure_rate": None, "auc": None}
    mean = float(n.mean())
    return {"count": int(n.size), "nme": mean, "accuracy": accuracy(mean),
            "failure_rate": failure_rate(n, threshold), "auc": auc(n, threshold, step)}


def summarize(pred: np.ndarray, gt: np.ndarray, attributes: Optional[np.ndarray] = None,
              threshold: float = DEFAULT_THRESHOLD, step: float = DEFAULT_STEP,
              norm: str = "inter_ocular") -> Dict[str, Any]:
    """All WFLW numbers for one model: overall, per attribute subset and per region.

    `attributes` is (N, 6) 0/1 flags in runtime.landmarks.ATTRIBUTES order; the
    subsets use WFLW's names (pose -> "largepose"). Fractions, not percent, except
    `accuracy`. Returns a JSON-ready dict (no numpy scalars; None for empty subsets).
    """
    errors = point_errors(pred, gt, norm)
    per_face = errors.mean(axis=1)
    out = subset_summary(per_face, threshold, step)
    out.update(threshold=float(threshold), norm=norm, regions=region_nme(errors))
    subsets = {}  # type: Dict[str, Dict[str, Any]]
    if attributes is not None:
        attrs = np.asarray(attributes)
        if attrs.shape != (len(per_face), len(ATTRIBUTES)):
            raise ValueError("attributes must be (N, %d) = (%d, %d), got %s"
                             % (len(ATTRIBUTES), len(per_face), len(ATTRIBUTES), attrs.shape))
        for k, flag in enumerate(ATTRIBUTES):
            subsets[SUBSET_NAMES[flag]] = subset_summary(per_face[attrs[:, k] > 0], threshold, step)
    out["attributes"] = subsets
    return out


def subset_order() -> Sequence[str]:
    """WFLW subset names in the order papers print them."""
    return [SUBSET_NAMES[a] for a in ATTRIBUTES]
