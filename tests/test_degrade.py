"""Degradations and augmentations of training samples: bounds, identities, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.config import DegradationConfig
from training.data.augment import (
    Sample,
    random_clean_copies,
    random_flip,
    random_sign_inversion,
)
from training.data.degrade import (
    degrade,
    holes_and_speckle,
    misplace_edges,
    scale_drift,
    smooth_field,
)
from training.data.inputs import draw_predictor, make_predictions

H, W = 48, 64


def ramp() -> np.ndarray:
    """A map whose values are all different, so any moved or changed pixel shows."""
    rows, cols = np.mgrid[0:H, 0:W]
    return (1.0 + rows + 0.01 * cols).astype(np.float32)


def step(column: int) -> np.ndarray:
    """0 left of `column`, 1 from it on: one vertical edge."""
    out = np.zeros((H, W), np.float32)
    out[:, column:] = 1.0
    return out


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


DEGRADATIONS = [
    lambda d, g: misplace_edges(d, g, 3.0),
    lambda d, g: scale_drift(d, g, 0.2),
    lambda d, g: holes_and_speckle(d, g, 0.05, 0.01),
    lambda d, g: degrade(d, g, DegradationConfig(edge_shift=3.0, scale_drift=0.2, holes=0.05)),
]


@pytest.mark.parametrize("apply", DEGRADATIONS)
def test_same_seed_same_output_and_shape_dtype_kept(apply) -> None:
    depth = ramp()
    first, second = apply(depth, rng(7)), apply(depth, rng(7))
    np.testing.assert_array_equal(first, second)  # NaN compare equal here
    assert first.shape == depth.shape and first.dtype == np.float32
    np.testing.assert_array_equal(depth, ramp())  # the input is not modified


def test_degrade_differs_between_seeds() -> None:
    settings = DegradationConfig(edge_shift=3.0, scale_drift=0.2, holes=0.05)
    outputs = [degrade(ramp(), rng(seed), settings) for seed in range(4)]
    assert any(not np.array_equal(outputs[0], other, equal_nan=True) for other in outputs[1:])


def test_zero_strength_is_the_identity() -> None:
    depth = ramp()
    np.testing.assert_array_equal(misplace_edges(depth, rng(), 0.0), depth)
    np.testing.assert_array_equal(scale_drift(depth, rng(), 0.0), depth)
    np.testing.assert_array_equal(holes_and_speckle(depth, rng(), 0.0, 0.0), depth)
    zero = DegradationConfig(edge_shift=0.0, scale_drift=0.0, holes=0.0)
    for seed in range(8):  # every subset of kinds, all at strength 0
        np.testing.assert_array_equal(degrade(depth, rng(seed), zero), depth)


def test_smooth_field_stays_in_unit_range_and_is_smooth() -> None:
    for seed in range(5):
        field = smooth_field((H, W), rng(seed))
        assert field.min() >= -1 and field.max() <= 1
        # Neighbours differ by at most the grid's largest step (2) over one cell (W / 5 px).
        assert np.abs(np.diff(field, axis=1)).max() <= 2 / (W / 5) + 1e-6
        assert np.abs(np.diff(field, axis=0)).max() <= 2 / (H / 5) + 1e-6


@pytest.mark.parametrize("shift", [1.0, 2.5, 4.0])
def test_edges_move_by_at_most_max_shift(shift: float) -> None:
    column = W // 2
    moved_most = 0.0
    for seed in range(10):
        out = misplace_edges(step(column), rng(seed), shift)
        for row in out:
            # Where each row crosses 0.5; in the input it lies at column − 0.5.
            right = int(np.argmax(row >= 0.5))
            left = right - 1
            crossing = left + (0.5 - row[left]) / (row[right] - row[left])
            moved_most = max(moved_most, abs(crossing - (column - 0.5)))
    assert moved_most <= shift + 1e-4
    assert moved_most >= shift / 4  # the edge does move, by a fair share of the bound


@pytest.mark.parametrize("strength", [0.05, 0.3])
def test_scale_drift_factor_stays_within_strength(strength: float) -> None:
    depth = ramp()
    for seed in range(5):
        factor = scale_drift(depth, rng(seed), strength) / depth
        assert factor.min() >= 1 - strength - 1e-6 and factor.max() <= 1 + strength + 1e-6
        assert factor.max() - factor.min() > strength / 4  # it does drift across the image


@pytest.mark.parametrize(("holes", "speckle"), [(0.1, 0.0), (0.0, 0.02), (0.05, 0.01)])
def test_hole_and_speckle_counts(holes: float, speckle: float) -> None:
    depth = ramp()
    out = holes_and_speckle(depth, rng(3), holes, speckle)
    lost = np.isnan(out)
    changed = ~lost & (out != depth)
    assert lost.sum() == round(holes * H * W)
    assert changed.sum() <= round(speckle * H * W)  # speckle under a hole is lost
    if speckle and not holes:
        assert changed.sum() == round(speckle * H * W)  # a uniform draw equals a ramp value
        span = depth.max() - depth.min()
        assert out.min() >= depth.min() - span and out.max() <= depth.max() + span


def test_holes_are_blobs_not_scattered_pixels() -> None:
    lost = np.isnan(holes_and_speckle(ramp(), rng(1), 0.1, 0.0))
    # Most hole pixels have a hole as right-hand neighbour; scattered pixels would give ~10 %.
    pairs = lost[:, :-1]
    assert (pairs & lost[:, 1:]).sum() / pairs.sum() > 0.6


@pytest.mark.parametrize("bad", [
    lambda: misplace_edges(ramp(), rng(), -1.0),
    lambda: scale_drift(ramp(), rng(), 1.0),
    lambda: holes_and_speckle(ramp(), rng(), 1.0, 0.0),
    lambda: holes_and_speckle(ramp(), rng(), 0.0, -0.1),
    lambda: random_sign_inversion(sample(), rng(), 1.5),
    lambda: random_clean_copies(sample(), rng(), -0.1),
])
def test_out_of_range_strengths_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        bad()


def sample() -> Sample:
    """Low and high at different sizes, as in training, sharing one ramp pattern."""
    rows, cols = np.mgrid[0:8, 0:12]
    low = (rows * 12 + cols).astype(np.float32)
    high = np.kron(low, np.ones((2, 2), np.float32))  # 16 × 24
    return Sample(low=low, high=high, target=low + 100, mask=(rows + cols) % 3 == 0)


def test_flips_cover_all_four_and_keep_the_sample_consistent() -> None:
    original = sample()
    seen = set()
    for seed in range(40):
        flipped = random_flip(original, rng(seed))
        # Which flip was drawn shows in the low map; every other map must show the same.
        for axes in ((), (0,), (1,), (0, 1)):
            if np.array_equal(flipped.low, np.flip(original.low, axes)):
                seen.add(axes)
                break
        else:
            pytest.fail("low is not a flip of the input")
        for name in ("high", "target", "mask"):
            np.testing.assert_array_equal(getattr(flipped, name),
                                          np.flip(getattr(original, name), axes))
            assert getattr(flipped, name).dtype == getattr(original, name).dtype
        np.testing.assert_array_equal(flipped.high, np.kron(flipped.low, np.ones((2, 2))))
    assert seen == {(), (0,), (1,), (0, 1)}


def test_sign_inversion_negates_inputs_and_target_together_about_a_third_of_the_time() -> None:
    original = sample()
    draws, inverted = 3000, 0
    generator = rng(11)
    for _ in range(draws):
        out = random_sign_inversion(original, generator)
        np.testing.assert_array_equal(out.mask, original.mask)
        if out.low[0, 1] < 0:
            inverted += 1
            for name in ("low", "high", "target"):
                np.testing.assert_array_equal(getattr(out, name), -getattr(original, name))
        else:
            assert out is original
    # Binomial(3000, 1/3): σ ≈ 25.8; 4σ bounds a fair coin's count with odds ~1e-4 of failing.
    sigma = math.sqrt(draws * (1 / 3) * (2 / 3))
    assert abs(inverted - draws / 3) <= 4 * sigma


def test_sign_inversion_probability_extremes() -> None:
    for seed in range(5):
        assert random_sign_inversion(sample(), rng(seed), p=0.0).low[0, 1] > 0
        assert random_sign_inversion(sample(), rng(seed), p=1.0).low[0, 1] < 0


def valid_sample() -> Sample:
    """Low, high and target on one grid, valid everywhere, all three different."""
    target = ramp()
    return Sample(low=target + 1, high=target * 2, target=target, mask=np.ones((H, W), bool))


def test_clean_copies_replace_both_inputs_by_the_target_at_the_drawn_rate() -> None:
    original = valid_sample()
    draws, copied = 2000, 0
    generator = rng(5)
    for _ in range(draws):
        out = random_clean_copies(original, generator, p=0.2)
        if out is original:
            continue
        copied += 1
        np.testing.assert_array_equal(out.low, original.target)
        np.testing.assert_array_equal(out.high, original.target)
        np.testing.assert_array_equal(out.target, original.target)
        assert out.low is not out.target and out.high is not out.low  # no shared buffers
    sigma = math.sqrt(draws * 0.2 * 0.8)
    assert abs(copied - draws * 0.2) <= 4 * sigma


def test_clean_copies_leave_a_sample_with_invalid_pixels_and_p_zero_alone() -> None:
    holed = valid_sample()
    holed.mask[3, 4] = False
    assert random_clean_copies(holed, rng(), p=1.0) is holed
    assert random_clean_copies(valid_sample(), rng(), p=1.0).low[0, 0] == ramp()[0, 0]
    generator, untouched = rng(2), rng(2)
    original = valid_sample()
    assert random_clean_copies(original, generator, p=0.0) is original
    assert generator.random() == untouched.random()  # p = 0 draws nothing


def _predictions(settings: DegradationConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    depth = ramp()
    draw = draw_predictor(rng(seed), settings)
    return make_predictions(depth, np.ones_like(depth, bool), draw, rng(seed + 100), settings)


def test_high_scale_drift_changes_only_the_high_input() -> None:
    """Null keeps both inputs' drift at `scale_drift`; a value drifts the high input alone,
    within it, and leaves the low input and the random draws after it as they were."""
    small = dict(low_resolution=(32, 32), high_resolution=(64, 64), edge_shift=0.0, holes=0.0)
    same = DegradationConfig(**small, scale_drift=0.0)
    assert same.for_high_input() is same
    high_only = DegradationConfig(**small, scale_drift=0.0, high_scale_drift=0.5)
    assert high_only.for_high_input().scale_drift == 0.5
    drifted = 0
    for seed in range(20):
        low, high = _predictions(same, seed)
        low_drift, high_drift = _predictions(high_only, seed)
        np.testing.assert_array_equal(low_drift, low)
        ratio = high_drift / high
        assert ratio.min() >= 0.5 - 1e-4 and ratio.max() <= 1.5 + 1e-4
        drifted += np.abs(ratio - 1).max() > 0.05
    assert drifted >= 3  # each seed drifts with chance 1/2, at a strength uniform in [0, 0.5]
