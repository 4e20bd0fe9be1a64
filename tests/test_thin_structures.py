"""Thin near structures survive refinement: the quantile subsample has no spatial bias, and
`keep_thin_structures` restores what N_r erases (issue 24, part 2; decision 138)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

import sddr_core
from sddr_core.maps import thin_structures
from sddr_core.maps.normalise import SAMPLE_PIXELS, robust_range, sample_stride
from sddr_core.maps.thin_structures import heights, keep_thin_structures, thin_width


def plane(size: int) -> np.ndarray:
    """A background slanting from 0.3 to 0.5 (disparity), as far as a scene's floor."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    return 0.3 + 0.1 * (rows + cols) / size


def with_structure(size: int, width: int, start: int, vertical: bool,
                    value: float = 1.0) -> np.ndarray:
    depth = plane(size)
    if vertical:
        depth[:, start:start + width] = value
    else:
        depth[start:start + width, :] = value
    return depth


def contrast(depth: np.ndarray, width: int, start: int, vertical: bool) -> float:
    """Mean of the structure's middle half minus the mean of the background 3–5 px beside
    it (on the sides the image has)."""
    across = depth if vertical else depth.T
    size = across.shape[0]
    along = slice(size // 4, 3 * size // 4)
    beside = [across[along, max(start - 5, 0):start - 2]] if start >= 5 else []
    if start + width + 5 <= size:
        beside.append(across[along, start + width + 2:start + width + 5])
    return float(across[along, start:start + width].mean()
                 - np.mean([b.mean() for b in beside]))


# ------------------------------------------------------------------- the quantile subsample


@pytest.mark.parametrize("side", [300, 1024, 2048, 1000, 1536])
def test_sample_stride_visits_every_column_alike(side):
    stride = sample_stride(side * side, side)
    assert math.gcd(stride, side) == 1
    assert side * side // stride >= SAMPLE_PIXELS // 2
    columns = np.bincount(np.arange(0, side * side, stride) % side, minlength=side)
    assert columns.min() >= columns.max() - 1


@pytest.mark.parametrize("start", range(16))
def test_a_thin_pole_enters_the_quantiles_at_every_phase(start):
    """1024²: the old stride (16) sampled every 16th column, so a 2-px pole was in the
    quantiles at one phase in eight and clipped at the others."""
    depth = torch.from_numpy(with_structure(1024, 2, 512 + start, vertical=True))[None]
    _, high = robust_range(depth)
    assert float(high) == 1.0


# ------------------------------------------------------------------------- the restoration


def test_an_erased_pole_is_restored_from_the_high_input():
    high = torch.from_numpy(with_structure(64, 2, 30, vertical=True))[None]
    refined = torch.from_numpy(plane(64))[None] * 2 + 1  # other units, pole erased
    kept = keep_thin_structures(refined, high, width=5)
    assert contrast(kept[0].numpy(), 2, 30, True) == pytest.approx(
        2 * contrast(high[0].numpy(), 2, 30, True), rel=0.02)


def test_a_far_slit_is_deepened_as_a_near_pole_is_raised():
    high = torch.from_numpy(with_structure(64, 1, 20, vertical=False, value=0.0))[None]
    refined = torch.from_numpy(plane(64))[None]
    kept = keep_thin_structures(refined, high, width=3)
    assert contrast(kept[0].numpy(), 1, 20, False) < -0.25


def test_wide_objects_and_smooth_surfaces_are_left_alone():
    high = plane(64)
    high[10:40, 12:50] = 0.9  # an object far wider than one low-input pixel
    refined = cv2.GaussianBlur(high, (0, 0), 1.5)  # N_r's blurred version of it
    kept = keep_thin_structures(torch.from_numpy(refined)[None], torch.from_numpy(high)[None],
                                width=5)
    np.testing.assert_allclose(kept[0].numpy(), refined, atol=1e-6)


def test_low_structures_are_left_alone():
    """A rise of under MIN_HEIGHT of the range is texture or a slope, not a pole."""
    high = plane(256)
    high[:, 100:102] += 0.005  # 2.5 % of the plane's range
    refined = torch.from_numpy(plane(256))[None]
    high = torch.from_numpy(high)[None]
    torch.testing.assert_close(keep_thin_structures(refined, high, width=5), refined)


def test_lone_speckle_is_not_restored():
    high = plane(64)
    high[[10, 30, 50], [12, 40, 20]] = [1.0, 0.0, 0.9]
    refined = plane(64)  # N_r removed the speckle
    kept = keep_thin_structures(torch.from_numpy(refined)[None], torch.from_numpy(high)[None],
                                width=5)
    np.testing.assert_allclose(kept[0].numpy(), refined, atol=1e-6)


def test_nothing_is_taken_away():
    """A structure that the refined map shows more strongly than the high input stays."""
    refined = torch.from_numpy(with_structure(64, 2, 30, vertical=True, value=2.0))[None]
    high = torch.from_numpy(with_structure(64, 2, 30, vertical=True, value=1.0))[None]
    torch.testing.assert_close(keep_thin_structures(refined, high, width=5), refined)


def test_a_strip_along_the_image_edge_counts_as_thin():
    depth = torch.from_numpy(with_structure(32, 3, 29, vertical=True))[None]
    assert float(heights(depth, 5)[0, 16, 30]) > 0.4


@pytest.mark.parametrize(("size", "low_size", "width"),
                         [((1024, 1024), (256, 256), 5), ((1000, 700), (384, 269), 4),
                          ((64, 64), (64, 64), 2)])
def test_thin_width_is_one_low_input_pixel_plus_one(size, low_size, width):
    assert thin_width(size, low_size) == width


def test_huge_values_do_not_overflow():
    high = with_structure(64, 2, 30, vertical=True) * 3e38
    refined = plane(64) * 3e38
    kept = keep_thin_structures(torch.from_numpy(refined)[None], torch.from_numpy(high)[None],
                                width=5)
    assert bool(torch.isfinite(kept).all())


# ------------------------------------------------------------------ with the shipped weights

CASES = [(1024, width, start, vertical)
         for width in (1, 2, 4) for vertical in (True, False)
         for start in (0, 512, 519, 1024 - width)]
CASES += [(2048, width, start, True) for width in (1, 2, 4) for start in (0, 1024, 1061)]


@pytest.fixture(scope="module")
def shipped() -> sddr_core.Refiner:
    return sddr_core.load_refiner("default", device="cpu")


@pytest.mark.parametrize(("size", "width", "start", "vertical"), CASES)
def test_shipped_weights_keep_thin_near_structures(shipped, size, width, start, vertical):
    """A pole or wire nearer than everything else stays nearer than its background and keeps
    at least half its contrast, wherever it lies (the low input: a quarter of the size)."""
    high = with_structure(size, width, start, vertical)
    low = cv2.resize(high, (size // 4, size // 4), interpolation=cv2.INTER_AREA)
    refined = shipped.refine(low, high)
    kept = contrast(refined, width, start, vertical) / contrast(high, width, start, vertical)
    assert kept >= 0.5


@pytest.mark.parametrize("width", [2, 3, 4, 5])
def test_a_plane_has_no_heights_up_to_its_edges(width):
    slope = torch.from_numpy(plane(40))[None]
    for maps in (slope, -slope):
        assert float(heights(maps, width)[:, width:-width, width:-width].abs().max()) < 1e-6
        assert float(heights(maps, width).max()) <= 0.1 * width / 20 + 1e-6


def test_a_batch_gives_each_map_what_it_gives_alone():
    high = np.stack([with_structure(64, 2, 30, vertical=True),
                     with_structure(64, 1, 5, vertical=False) * 3 + 2])
    refined = np.stack([plane(64), plane(64) * 3 + 2])
    together = keep_thin_structures(torch.from_numpy(refined), torch.from_numpy(high), width=5)
    for index in range(2):
        alone = keep_thin_structures(torch.from_numpy(refined[index:index + 1]),
                                     torch.from_numpy(high[index:index + 1]), width=5)
        torch.testing.assert_close(together[index:index + 1], alone)


@pytest.mark.parametrize("width", [2, 5])
def test_heights_band_by_band_equal_heights_in_one_piece(monkeypatch, width):
    """Whole maps are scanned in bands of rows (for the cache); the bands must not show."""
    generator = torch.Generator().manual_seed(width)
    maps = torch.rand(2, 37, 23, generator=generator)
    whole = [thin_structures._rises(m, width, share) for m in (maps, -maps)
             for share in (0.0, thin_structures.FREE_STANDING)]
    monkeypatch.setattr(thin_structures, "BAND_PIXELS", 3 * 23)  # bands of 3 rows
    banded = [thin_structures._rises(m, width, share) for m in (maps, -maps)
              for share in (0.0, thin_structures.FREE_STANDING)]
    for one, other in zip(whole, banded, strict=True):
        assert torch.equal(one, other)


def test_heights_at_some_pixels_equal_the_whole_maps_there():
    """`keep_thin_structures` finds the refined map's heights only where it restores."""
    generator = torch.Generator().manual_seed(1)
    maps = torch.rand(2, 30, 41, generator=generator)
    at = (torch.rand(2, 30, 41, generator=generator) < 0.3).nonzero(as_tuple=True)
    for share in (0.0, thin_structures.FREE_STANDING):
        assert torch.equal(thin_structures._rises(maps, 4, share, at),
                           thin_structures._rises(maps, 4, share)[at])
