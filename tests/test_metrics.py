"""The paper's evaluation metrics: alignment, accuracy metrics, Boost's ORD/D3R, Eq. 13 ORD."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sddr_core.errors import InputError, SddrError
from sddr_core.evaluation.metrics import METRIC_KEYS, evaluate
from sddr_core.evaluation.ordinal import boost_ord, d3r, ranking_ord, superpixel_points

skimage_data = pytest.importorskip("skimage.data")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ACCURACY_KEYS = METRIC_KEYS[:7]


def _scene(height: int = 96, width: int = 128) -> np.ndarray:
    """GT depth: a slanted back wall, a fronto-parallel box and a slanted nearer box.
    Coordinates are relative, so every size renders the same scene."""
    rows, cols = np.mgrid[:height, :width]
    y, x = rows / height, cols / width
    depth = 4.0 + 1.3 * x
    depth = np.where((y > 0.2) & (y < 0.55) & (x > 0.25) & (x < 0.55), 2.0, depth)
    return np.where((y > 0.6) & (y < 0.95) & (x > 0.6) & (x < 0.95), 1.0 + 0.5 * y, depth)


def _noisy(depth: np.ndarray, seed: int = 0) -> np.ndarray:
    return depth * np.random.default_rng(seed).uniform(0.9, 1.1, depth.shape)


def _motorcycle() -> np.ndarray:
    """Middlebury 2014 Motorcycle as GT depth (1 / disparity) at a quarter of its size;
    0 where the disparity is unknown."""
    disparity = cv2.resize(skimage_data.stereo_motorcycle()[2], (185, 125),
                           interpolation=cv2.INTER_NEAREST)
    known = np.isfinite(disparity)
    return np.where(known, 1.0 / np.where(known, disparity, 1.0), 0.0)


def _assert_perfect(result: dict[str, float]) -> None:
    assert tuple(result) == METRIC_KEYS
    assert result["delta1"] == result["delta2"] == result["delta3"] == 1.0
    for key in ("rel", "sqrel", "rmse", "log10"):
        assert result[key] == pytest.approx(0.0, abs=1e-6), key  # float32 input
    assert result["ord"] == 0.0 and result["d3r"] == 0.0  # also: not NaN, so pairs existed


# ------------------------------------------------------------------------------------ alignment

@pytest.mark.parametrize(("space", "make_pred"), [
    ("depth", lambda gt: gt),
    ("depth", lambda gt: 3 * gt + 5),
    ("depth", lambda gt: torch.from_numpy(gt).float()),
    ("disparity", lambda gt: 1 / gt),
    ("disparity", lambda gt: 2 / gt + 0.1),
])
def test_affine_versions_of_the_truth_score_perfectly(space, make_pred):
    gt = _scene()
    _assert_perfect(evaluate(make_pred(gt), gt, space=space))


@pytest.mark.parametrize("space", ["depth", "disparity"])
def test_inverted_polarity_is_punished_unless_the_sign_is_free(space):
    """A map of the wrong polarity (a polarity bug in a node) scores no better than a constant:
    every ordinal pair and every discontinuity is wrong. With the old free-sign fit
    (`free_sign=True`, as np.polyfit) the least-squares scale flips it to a perfect score."""
    gt = _motorcycle()
    valid = gt > 0
    truth = np.where(valid, gt if space == "depth" else 1 / np.where(valid, gt, 1.0), 0.0)
    inverted = truth[valid].max() + truth[valid].min() - truth
    result = evaluate(inverted, gt, mask=valid, space=space)
    assert result["ord"] > 0.9 and result["d3r"] == 1.0
    assert result["delta1"] < 0.2
    _assert_perfect(evaluate(inverted, gt, mask=valid, space=space, free_sign=True))


def test_torch_gt_is_accepted():
    gt = _scene()
    _assert_perfect(evaluate(torch.from_numpy(gt), torch.from_numpy(gt)))


def test_accuracy_metrics_by_hand():
    """pred (0, 0, 1, 1) fits gt (1, 3, 3, 7) with scale 3 and shift 2: aligned (2, 2, 5, 5)."""
    result = evaluate(np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[1.0, 3.0], [3.0, 7.0]]))
    # ratios max(d/g, g/d): 2, 1.5, 5/3, 7/5; errors d − g: 1, −1, 2, −2
    assert result["delta1"] == 0.0
    assert result["delta2"] == 0.5  # 1.5 and 1.4 < 1.5625
    assert result["delta3"] == 0.75  # and 5/3 < 1.953125
    assert result["rel"] == pytest.approx((1 + 1 / 3 + 2 / 3 + 2 / 7) / 4)
    assert result["sqrel"] == pytest.approx((1 + 1 / 3 + 4 / 3 + 4 / 7) / 4)
    assert result["rmse"] == pytest.approx(np.sqrt((1 + 1 + 4 + 4) / 4))
    assert result["log10"] == pytest.approx(np.log10(2 * 1.5 * 5 / 3 * 7 / 5) / 4)


def test_disparity_fit_is_clamped_positive():
    """A region fitted to negative disparity would invert to negative depth (NaN log10)."""
    gt = _scene()
    pred = 1 / gt
    pred[:3, :10] = -1.0  # too few pixels to move the fit: they stay negative after it
    result = evaluate(pred, gt, space="disparity")
    assert all(np.isfinite(value) for value in result.values())
    assert 0.99 < result["delta1"] < 1.0


def test_size_mismatch_warns_and_resizes():
    gt = _scene()
    with pytest.warns(UserWarning, match="192x256.*96x128"):
        result = evaluate(_scene(192, 256), gt)
    # resized, not cropped: the boxes land where they are in gt
    assert result["delta1"] > 0.97 and result["ord"] < 0.05


# ------------------------------------------------------------------------------ ORD and D3R

def test_reversed_depth_has_large_ordinal_errors():
    """The ordinal functions take depth already aligned; here it is positive but reversed."""
    gt = _scene()
    valid = np.ones(gt.shape, bool)
    reversed_depth = gt.max() + gt.min() - gt
    assert boost_ord(reversed_depth, gt, valid) > 1.0
    assert d3r(reversed_depth, gt, valid) > 1.0
    assert ranking_ord(reversed_depth, gt, valid) > ranking_ord(gt, gt, valid) + 0.1


def test_ranking_variant_prefers_the_truth():
    gt = _scene()
    perfect = evaluate(gt, gt, ord_variant="ranking")["ord"]
    assert perfect > 0  # the logistic term never vanishes
    assert evaluate(_noisy(gt), gt, ord_variant="ranking")["ord"] > perfect


def test_blur_worsens_d3r():
    gt = _motorcycle()
    blurred = cv2.GaussianBlur(gt, (0, 0), 3)
    sharp_result, blurred_result = evaluate(gt, gt), evaluate(blurred, gt)
    assert sharp_result["d3r"] == 0.0
    assert blurred_result["d3r"] > 0.1
    assert blurred_result["ord"] > sharp_result["ord"]


@pytest.mark.parametrize("ord_variant", ["boost", "ranking"])
def test_flat_gt_has_no_ordinal_pairs(ord_variant):
    gt = np.full((40, 50), 3.0)
    result = evaluate(_noisy(gt), gt, ord_variant=ord_variant)
    assert np.isnan(result["ord"]) and np.isnan(result["d3r"])
    assert np.isfinite([result[key] for key in ACCURACY_KEYS]).all()


def test_superpixel_centres_are_valid_and_at_full_resolution():
    gt = _scene(400, 800)  # shrunk to 192×384 for SLIC
    valid = np.ones(gt.shape, bool)
    valid[100:300, 200:400] = False
    points = superpixel_points(gt, valid)
    assert valid[points.rows, points.cols].all()
    assert points.cols.max() > 780 and points.rows.max() > 380
    pairs = points.neighbours
    assert len(pairs) > len(points.rows)  # a superpixel touches several others
    assert (pairs[:, 0] < pairs[:, 1]).all() and len(np.unique(pairs, axis=0)) == len(pairs)
    gap = np.hypot(*(np.subtract(coord[pairs[:, 0]], coord[pairs[:, 1]])
                     for coord in (points.rows, points.cols)))
    assert gap.max() < 40  # touching superpixels (about 9 px apart at full size), not far ones


# ------------------------------------------------------------------------- validity and masks

@pytest.mark.parametrize("ord_variant", ["boost", "ranking"])
def test_masked_out_garbage_changes_nothing(ord_variant):
    gt, pred = _scene(), _noisy(_scene())
    mask = np.ones(gt.shape, bool)
    mask[30:70, 10:60] = False
    dirty_gt, dirty_pred = gt.copy(), pred.copy()
    dirty_gt[~mask] = np.random.default_rng(1).uniform(-5, 100, (~mask).sum())
    dirty_pred[~mask] = 1e6
    clean = evaluate(pred, gt, mask=mask, ord_variant=ord_variant)
    assert evaluate(dirty_pred, dirty_gt, mask=mask, ord_variant=ord_variant) == clean
    assert evaluate(pred, gt, ord_variant=ord_variant) != clean  # the mask mattered


def test_invalid_gt_and_pred_are_ignored():
    gt, pred = _scene(), _noisy(_scene())
    invalid = np.zeros(gt.shape, bool)
    invalid[5:15, 5:40] = True
    broken_gt, broken_pred = gt.copy(), pred.copy()
    broken_gt[5:10, 5:40], broken_gt[10:13, 5:40], broken_gt[13:15, 5:20] = 0, np.inf, np.nan
    broken_pred[13:15, 20:40] = np.nan
    assert evaluate(broken_pred, broken_gt) == evaluate(pred, gt, mask=~invalid)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"space": "inverse"}, r"space must be one of depth, disparity"),
    ({"ord_variant": "median"}, r"ord_variant must be one of boost, ranking"),
    ({"pred": [[1.0, 2.0], [3.0, 4.0]]}, r"pred must be a numpy array or torch tensor"),
    ({"pred": np.ones((4, 4, 3))}, r"pred must be a non-empty H×W array"),
    ({"gt": np.ones((4, 4), dtype=np.complex64)}, r"gt must hold integer or float values"),
    ({"mask": np.ones((4, 4), np.uint8)}, r"mask must be boolean"),
    ({"mask": np.ones((4, 5), bool)}, r"mask is 4x5 but gt is 4x4"),
    ({"gt": np.where(np.eye(4) > 0, 0.0, np.nan)}, r"gt has 0 valid pixel"),
    ({"mask": np.eye(4, dtype=bool) & (np.arange(4) == 0)}, r"gt has 1 valid pixel"),
])
def test_bad_arguments_raise_input_error(kwargs, match):
    arguments = {"pred": np.ones((4, 4)), "gt": np.arange(1.0, 17.0).reshape(4, 4)} | kwargs
    with pytest.raises(InputError, match=match):
        evaluate(**arguments)


def test_missing_scikit_image_is_explained(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage.segmentation", None)  # makes the import fail
    gt = _scene()
    with pytest.raises(SddrError, match=r"scikit-image: pip install 'sddr\[eval\]'"):
        evaluate(gt, gt)


@pytest.mark.parametrize("ord_variant", ["boost", "ranking"])
def test_seed_fixes_the_random_pairs(ord_variant):
    gt, pred = _scene(), _noisy(_scene())
    first = evaluate(pred, gt, ord_variant=ord_variant, seed=3)
    assert evaluate(pred, gt, ord_variant=ord_variant, seed=3) == first
    assert evaluate(pred, gt, ord_variant=ord_variant, seed=4)["ord"] != first["ord"]


# ---------------------------------------------------------------------------------- real data

def test_middlebury_scene():
    scene = DATA / "middlebury2006-half" / "aloe"
    if not scene.is_dir():
        pytest.skip(f"dev data not found at {scene}")
    disparity = cv2.imread(str(scene / "disp1.png"), cv2.IMREAD_UNCHANGED).astype(np.float64)
    dmin = float((scene / "dmin.txt").read_text())
    gt = np.where(disparity > 0, 3740 * 160 / (disparity + dmin), 0.0)  # mm; disparity 0 unknown
    perfect = evaluate(disparity + dmin, gt, space="disparity")
    assert perfect["ord"] == 0.0 and perfect["d3r"] == 0.0
    blurred = evaluate(cv2.GaussianBlur(gt, (0, 0), 3), gt)
    assert blurred["ord"] > 0.05 and blurred["d3r"] > 0.05
