"""WFLW metrics against cases small enough to compute by hand."""
import numpy as np
import pytest

from runtime import metrics
from runtime.landmarks import ATTRIBUTES, NUM_POINTS, REGIONS


def face(ocular: float = 10.0, seed: int = 0) -> np.ndarray:
    """A (98, 2) ground truth whose outer eye corners 60/72 are `ocular` pixels apart."""
    pts = np.random.default_rng(seed).uniform(0, 100, (NUM_POINTS, 2))
    pts[60] = (20.0, 50.0)
    pts[72] = (20.0 + ocular, 50.0)
    return pts


def test_nme_zero_for_perfect_prediction():
    gt = np.stack([face(seed=s) for s in range(3)])
    np.testing.assert_array_equal(metrics.nme(gt, gt), np.zeros(3))


def test_nme_hand_case_shift_of_every_point():
    # every point off by (3, 4) = 5 px, inter-ocular 10 px -> NME 0.5; second face ocular 20 -> 0.25
    gt = np.stack([face(10.0), face(20.0)])
    pred = gt + np.array([3.0, 4.0])
    np.testing.assert_allclose(metrics.nme(pred, gt), [0.5, 0.25])


def test_nme_hand_case_single_point():
    # one point off by 98 px, ocular 10: mean over 98 points = 98/98/10 = 0.1
    gt = face(10.0)
    pred = gt.copy()
    pred[5, 0] += 98.0
    np.testing.assert_allclose(metrics.nme(pred, gt), [0.1])


def test_nme_is_normalised_by_gt_not_prediction():
    gt = face(10.0)
    pred = gt.copy()
    pred[72] = pred[60]  # predicted eyes collapse, gt normaliser unchanged
    np.testing.assert_allclose(metrics.nme(pred, gt), [10.0 / NUM_POINTS / 10.0])


def test_inter_pupil_normaliser():
    gt = face(10.0)
    gt[96], gt[97] = (0.0, 0.0), (0.0, 4.0)
    pred = gt + np.array([0.0, 2.0])
    np.testing.assert_allclose(metrics.nme(pred, gt, norm="inter_pupil"), [0.5])
    with pytest.raises(ValueError, match="unknown normaliser"):
        metrics.nme(pred, gt, norm="box")


def test_zero_normaliser_names_the_face():
    gt = np.stack([face(), face()])
    gt[1, 72] = gt[1, 60]
    with pytest.raises(ValueError, match="face 1"):
        metrics.nme(gt, gt)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(N, 98, 2\)"):
        metrics.nme(np.zeros((2, 68, 2)), np.zeros((2, 68, 2)))
    with pytest.raises(ValueError, match="differ"):
        metrics.nme(np.zeros((1, 98, 2)), np.stack([face(), face()]))


def test_failure_rate_is_strictly_greater_than_threshold():
    assert metrics.failure_rate([0.05, 0.1, 0.2, 0.3]) == 0.5
    assert metrics.failure_rate([0.05, 0.1, 0.2, 0.3], threshold=0.25) == 0.25
    with pytest.raises(ValueError):
        metrics.failure_rate([])


def test_ced_grid_and_values():
    xs, ys = metrics.ced([0.0, 0.05, 0.2], threshold=0.1, step=0.025)
    np.testing.assert_allclose(xs, [0, 0.025, 0.05, 0.075, 0.1])
    np.testing.assert_allclose(ys, [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3])
    xs, _ = metrics.ced([0.01], threshold=0.1, step=1e-4)
    assert len(xs) == 1001 and xs[-1] == 0.1


def test_simpson_exact_on_polynomials():
    for n in (3, 5, 101):  # even number of intervals
        x = np.linspace(0, 1, n)
        assert metrics.simpson(x ** 2, x) == pytest.approx(1 / 3, abs=1e-12)
        assert metrics.simpson(x ** 3, x) == pytest.approx(1 / 4, abs=1e-12)
    for n in (4, 6, 100):  # odd number of intervals: 3/8 tail keeps cubics exact
        x = np.linspace(0, 2, n)
        assert metrics.simpson(x ** 3, x) == pytest.approx(4.0, abs=1e-12)
    x = np.linspace(0, 1, 2)
    assert metrics.simpson(x, x) == pytest.approx(0.5)


def test_simpson_differs_from_trapezoid_on_a_curve():
    x = np.linspace(0, np.pi, 11)
    s = metrics.simpson(np.sin(x), x)
    trapz = float(np.sum((np.sin(x[1:]) + np.sin(x[:-1])) / 2 * np.diff(x)))
    assert abs(s - 2.0) < 1e-3 < abs(trapz - 2.0)


def test_auc_perfect_and_hopeless():
    assert metrics.auc(np.zeros(10)) == pytest.approx(1.0)
    assert metrics.auc(np.full(10, 0.5)) == 0.0


@pytest.mark.parametrize("e", [0.02, 0.05, 0.08])
def test_auc_of_constant_error(e):
    # CED is a step at e: area (threshold - e) / threshold, up to one grid step
    assert metrics.auc(np.full(7, e)) == pytest.approx(1 - e / 0.1, abs=2e-3)


def test_auc_of_uniform_errors():
    # NMEs uniform on [0, 0.2]: CED(x) = x / 0.2, area on [0, 0.1] = 0.025, / 0.1 = 0.25
    nmes = np.linspace(0, 0.2, 20001)
    assert metrics.auc(nmes) == pytest.approx(0.25, abs=1e-3)


def test_accuracy():
    assert metrics.accuracy(0.0758) == pytest.approx(92.42)


def test_region_nme_only_counts_the_region():
    gt = face(10.0)
    pred = gt.copy()
    pred[list(REGIONS["nose"]), 1] += 5.0  # nose off by 5 px = 0.5 ocular
    r = metrics.region_nme(metrics.point_errors(pred, gt))
    assert r["nose"] == pytest.approx(0.5)
    assert all(v == 0 for k, v in r.items() if k != "nose")


def test_summarize_overall_subsets_and_regions():
    gt = np.stack([face(10.0, seed=s) for s in range(4)])
    pred = gt.copy()
    pred[1] += (1.0, 0.0)   # NME 0.1 (not a failure: FR counts > 0.1)
    pred[2] += (3.0, 0.0)   # NME 0.3 (failure)
    attrs = np.zeros((4, len(ATTRIBUTES)), int)
    attrs[2, ATTRIBUTES.index("pose")] = 1
    attrs[[0, 1], ATTRIBUTES.index("blur")] = 1
    s = metrics.summarize(pred, gt, attrs)
    assert s["count"] == 4
    assert s["nme"] == pytest.approx(0.1)
    assert s["accuracy"] == pytest.approx(90.0)
    assert s["failure_rate"] == 0.25
    assert set(s["regions"]) == set(REGIONS)
    assert s["regions"]["contour"] == pytest.approx(0.1)
    lp = s["attributes"]["largepose"]
    assert lp["count"] == 1 and lp["nme"] == pytest.approx(0.3)
    assert lp["failure_rate"] == 1.0 and lp["auc"] == 0
    assert s["attributes"]["blur"]["nme"] == pytest.approx(0.05)
    assert s["attributes"]["makeup"] == {"count": 0, "nme": None, "accuracy": None, "failure_rate": None,
                                         "auc": None}
    assert list(s["attributes"]) == list(metrics.subset_order())
    with pytest.raises(ValueError, match="attributes"):
        metrics.summarize(pred, gt, attrs[:, :5])


def test_summarize_without_attributes_is_json_ready():
    import json
    gt = face()[None]
    s = metrics.summarize(gt + 0.5, gt)
    assert s["attributes"] == {}
    json.dumps(s)  # only plain Python types
