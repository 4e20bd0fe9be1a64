"""Depth-edge metrics: boundary F1 (Depth Pro) and the flying-pixel rate, on hand-built maps."""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np
import pytest
import torch

from sddr_core.errors import InputError
from sddr_core.evaluation.boundaries import (
    THRESHOLDS,
    aligned_boundary_f1,
    boundary_f1,
    discontinuity_band,
    flying_pixel_rate,
    flying_pixels,
)
from sddr_core.evaluation.metrics import evaluate


def _box(size: int = 48, shift: int = 0) -> np.ndarray:
    """GT depth: a box at depth 1 (rows and columns 16–31, moved `shift` px right) in front of
    a wall at depth 2: steps in all four directions."""
    depth = np.full((size, size), 2.0)
    depth[16:32, 16 + shift:32 + shift] = 1.0
    return depth


def _ramp(depth: np.ndarray, width: int = 5) -> np.ndarray:
    """The same map with every step blurred into a ramp `width` px wide."""
    return cv2.blur(depth, (width, width), borderType=cv2.BORDER_REFLECT)


def _slanted(size: int = 48) -> np.ndarray:
    """A plane whose depth grows 1.5 % per column: 10 % across a 7-px window, but no step."""
    return np.tile(1.0 + 0.015 * np.arange(size), (size, 1))


def _contours(depth: np.ndarray, axis: int, flip: bool, t: float) -> np.ndarray:
    """Pairs along `axis` whose second (`flip`: first) pixel's inverse depth is > t times the
    other's."""
    inverse = 1.0 / depth
    a, b = (inverse[:-1], inverse[1:]) if axis == 0 else (inverse[:, :-1], inverse[:, 1:])
    return (a / b if flip else b / a) > t


def _reference_f1(depth: np.ndarray, gt: np.ndarray) -> float:
    """The definition written out loop by loop (no masks, every direction has GT contours)."""
    scores = []
    for t in THRESHOLDS:
        precisions, recalls = [], []
        for axis, flip in itertools.product((0, 1), (False, True)):
            predicted, truth = _contours(depth, axis, flip, t), _contours(gt, axis, flip, t)
            matched = (predicted & truth).sum()
            precisions.append(matched / max(predicted.sum(), 1))
            recalls.append(matched / truth.sum())
        p, r = np.mean(precisions), np.mean(recalls)
        scores.append(2 * p * r / (p + r) if p + r else 0.0)
    return float(np.sum(np.array(scores) * THRESHOLDS) / THRESHOLDS.sum())


# ---------------------------------------------------------------------------------- boundary F1

@pytest.mark.parametrize(("space", "make_pred"), [
    ("depth", lambda gt: gt),
    ("depth", lambda gt: torch.from_numpy(3 * gt + 5)),
    ("disparity", lambda gt: 2 / gt + 0.1),
])
def test_perfect_step_scores_f1_one(space, make_pred):
    gt = _box()
    assert boundary_f1(make_pred(gt), gt, space=space) == 1.0


def test_ramp_scores_lower_f1_than_step():
    gt = _box()
    assert boundary_f1(_ramp(gt, 3), gt) < 0.9
    assert boundary_f1(_ramp(gt, 7), gt) < boundary_f1(_ramp(gt, 3), gt)


@pytest.mark.parametrize("shift", [1, 2])
def test_shifted_step_scores_lower_f1(shift):
    """The box's left and right edges miss by `shift` px; top and bottom stay right."""
    gt = _box()
    score = boundary_f1(_box(shift=shift), gt)
    assert 0.3 < score < 0.9


def test_f1_matches_the_definition_written_out():
    """On depth already aligned, the vectorised count equals the loops."""
    gt = _box()
    rng = np.random.default_rng(0)
    everywhere = np.ones(gt.shape, bool)
    for depth in (_ramp(gt, 3), _box(shift=1) * rng.uniform(0.93, 1.07, gt.shape)):
        assert aligned_boundary_f1(depth, gt, everywhere) == pytest.approx(
            _reference_f1(depth, gt), abs=1e-12)


@pytest.mark.parametrize("space", ["depth", "disparity"])
def test_f1_is_scale_invariant(space):
    gt = _box()
    pred = _ramp(gt, 3) if space == "depth" else 1 / _ramp(gt, 3)
    assert boundary_f1(7.5 * pred, gt, space=space) == pytest.approx(
        boundary_f1(pred, gt, space=space), abs=1e-12)


def test_f1_is_nan_without_gt_contours():
    assert math.isnan(boundary_f1(np.random.default_rng(0).random((16, 16)), _slanted(16)))


def test_f1_ignores_masked_out_pixels():
    gt = _box()
    pred = gt.copy()
    pred[:, 40:] = np.random.default_rng(0).uniform(1, 2, (48, 8))  # garbage edges
    keep = np.ones(gt.shape, bool)
    keep[:, 40:] = False
    assert boundary_f1(pred, gt) < 1.0
    assert boundary_f1(pred, gt, mask=keep) == 1.0


def test_f1_ignores_invalid_gt():
    gt = _box()
    gt[:, 40:] = 0.0  # no ground truth there
    pred = _box()
    pred[:, 40:] = np.random.default_rng(0).uniform(1, 2, (48, 8))
    assert boundary_f1(pred, gt) == 1.0


# ---------------------------------------------------------------------------------- flying pixels

def test_perfect_step_has_no_flying_pixels():
    gt = _box()
    assert flying_pixel_rate(4 * gt - 1, gt) == 0.0


def test_ramp_has_flying_pixels():
    gt = _box()
    assert flying_pixel_rate(_ramp(gt, 3), gt) > 0.1
    assert flying_pixel_rate(_ramp(gt, 7), gt) > flying_pixel_rate(_ramp(gt, 3), gt)


@pytest.mark.parametrize("shift", [1, 2])
def test_misplaced_step_does_not_fly(shift):
    """A pixel on the wrong side of a misplaced edge takes that side's depth: wrong, but on a
    surface, so it is no rubber sheet."""
    assert not flying_pixels(_box(shift=shift), _box()).any()


def test_step_misplaced_by_a_pixel_has_no_flying_rate():
    """Through the alignment too: the fit of a map whose box is one pixel off stays within
    10 % of each side."""
    assert flying_pixel_rate(_box(shift=1), _box()) == 0.0


def test_flying_pixels_counted_by_hand():
    """A 1 → 2 step between columns 3 and 4 ramped over columns 3–5: the candidates are
    columns 1–6 (their 7-px windows hold both columns 3 and 4); 1.25, 1.5 and 1.75 each lie
    more than 0.1 from both sides and from the GT, so 3 of 6 float."""
    gt = np.tile(np.where(np.arange(8) < 4, 1.0, 2.0), (5, 1))
    ramp = np.tile([1.0, 1.0, 1.0, 1.25, 1.5, 1.75, 2.0, 2.0], (5, 1))
    assert discontinuity_band(gt)[0].tolist() == [False] + [True] * 6 + [False]
    assert flying_pixels(ramp, gt)[0].tolist() == [False] * 3 + [True] * 3 + [False] * 2


def test_depth_near_a_side_or_the_gt_does_not_fly():
    """Within 10 % of the step (0.1) of either side, or of the GT at the pixel, is no float."""
    gt = np.tile(np.where(np.arange(8) < 4, 1.0, 2.0), (5, 1))
    for value, floats in ((1.09, False), (1.11, True), (1.89, True), (1.91, False)):
        depth = gt.copy()
        depth[:, 4] = value  # GT 2 there
        assert flying_pixels(depth, gt)[0, 4] == floats, value
    depth = gt.copy()
    depth[:, 4] = 1.5
    between = gt.copy()
    between[:, 4] = 1.45  # a GT pixel between the sides: 1.5 is its own surface
    assert flying_pixels(depth, gt)[0, 4]
    assert not flying_pixels(depth, between)[0, 4]


def test_missing_depth_does_not_fly():
    """A mesh without a vertex at a pixel (NaN depth) has nothing floating there."""
    gt = _box()
    depth = _ramp(gt, 5)
    depth[:, :24] = np.nan
    flying = flying_pixels(depth, gt)
    assert flying[:, 24:].any() and not flying[:, :24].any()


def test_slanted_plane_has_no_candidates():
    gt = _slanted()
    pred = gt * np.random.default_rng(0).uniform(0.97, 1.03, gt.shape)
    assert not discontinuity_band(gt).any()
    assert math.isnan(flying_pixel_rate(pred, gt))


def test_slanted_surface_at_a_step_keeps_its_own_values():
    """Beside the box the wall is slanted, so its depths lie between the window's extremes:
    the GT itself still scores 0."""
    gt = _slanted()
    gt[16:32, 16:32] = 0.5
    assert discontinuity_band(gt).sum() > 0
    assert flying_pixel_rate(gt, gt) == 0.0


def test_flying_rate_is_scale_invariant():
    gt = _box()
    assert flying_pixel_rate(0.2 * _ramp(gt, 5), gt) == flying_pixel_rate(_ramp(gt, 5), gt)


def test_flying_rate_respects_the_mask():
    gt = _box()
    pred = _ramp(gt, 5)
    pred[:, :24] = gt[:, :24]  # the left half's edges are sharp
    left = np.zeros(gt.shape, bool)
    left[:, :24] = True
    assert flying_pixel_rate(pred, gt, mask=left) == 0.0
    assert flying_pixel_rate(pred, gt, mask=~left) > 0.1
    assert math.isnan(flying_pixel_rate(pred, gt, mask=gt == 2.0))  # no step left


def test_invalid_gt_is_no_discontinuity():
    gt = _box()
    gt[16:32, 16:32] = np.nan
    assert not discontinuity_band(gt).any()


# ------------------------------------------------------------------------------ evaluate, inputs

def test_evaluate_reports_both():
    gt = _box()
    pred = _ramp(gt, 5)
    scores = evaluate(pred, gt)
    assert scores["boundary_f1"] == boundary_f1(pred, gt)
    assert scores["flying"] == flying_pixel_rate(pred, gt)


@pytest.mark.parametrize("metric", [boundary_f1, flying_pixel_rate])
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"space": "inverse"}, r"space must be one of depth, disparity"),
    ({"pred": [[1.0, 2.0], [3.0, 4.0]]}, r"pred must be a numpy array or torch tensor"),
    ({"gt": np.ones((4, 4, 3))}, r"gt must be a non-empty H×W array"),
    ({"mask": np.ones((4, 4), np.uint8)}, r"mask must be boolean"),
    ({"mask": np.ones((4, 5), bool)}, r"mask is 4x5 but gt is 4x4"),
    ({"gt": np.zeros((4, 4))}, r"gt has 0 valid pixel"),
])
def test_bad_arguments_raise_input_error(metric, kwargs, match):
    arguments = {"pred": np.ones((4, 4)), "gt": np.arange(1.0, 17.0).reshape(4, 4)} | kwargs
    with pytest.raises(InputError, match=match):
        metric(**arguments)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"depth": np.ones((4, 5))}, r"depth is 4x5 but gt is 4x4"),
    ({"depth": "deep"}, r"depth must be a numpy array or torch tensor"),
    ({"gt": np.ones((4, 4), dtype=np.complex64)}, r"gt must hold integer or float values"),
    ({"valid": np.ones((4, 4))}, r"valid must be boolean"),
])
def test_flying_pixels_bad_arguments_raise_input_error(kwargs, match):
    arguments = {"depth": np.ones((4, 4)), "gt": np.arange(1.0, 17.0).reshape(4, 4)} | kwargs
    with pytest.raises(InputError, match=match):
        flying_pixels(**arguments)
