"""Thin structures (poles, wires, branches, slits) that only the high input resolves.

A structure narrower than one pixel of the low input is invisible to it, so the low input
carries no evidence about its depth; yet N_r, trained to keep the low input's structure, erases
most of such a structure's contrast (a 2-px pole in front of its background keeps about a
quarter of it with the shipped weights, decision 138). `keep_thin_structures` puts back, from
the high input, the contrast a thin structure lost: it compares the structure's height above
(or depth below) its surroundings in the high input and in the refined map and restores the
difference. Wide surfaces, edges of wide objects and compact specks (a predictor's stray
pixels) are left to N_r.

A structure's height at a pixel is its rise over the higher of the two pixels one low-input
pixel away on either side (along rows, columns or a diagonal): a structure narrower than that
has its background on both sides, a wide surface or an object's edge does not. Beyond the
image's edges lies the map's minimum, so a pole along an edge counts as thin; the price is
that a surface sloping steeply towards an edge (more than MIN_HEIGHT of the range over one
low-input pixel) takes the high input's shape in its outermost pixels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from .alignment import fit_affine
from .normalise import robust_range
from .row_bands import rows_per_band

FLAT = 1e-3
"""Heights up to this share of a map's robust range are rounding: what the scale is fitted on."""
MIN_HEIGHT = 0.05
"""Only structures standing out by more than this share of the refined map's robust range are
restored: a visible step in a mesh. Below it, a slanted surface's own rise over one low-input
pixel near a corner or the image's edge would count too."""
FREE_STANDING = 0.5
"""A structure is restored where its height is at least this share of its rise over the lower
of its two sides: a pole stands clear of its background on both sides, while a ridge a
predictor leaves along a wide object's edge (an edge artefact N_r rightly removes) stands only
a little above that object."""
LINE_LENGTH = 3
"""A structure is restored when it extends over at least this many times its width limit
(and MIN_LINE_PIXELS): poles, wires and branches are long, while a predictor's speckle, even
resampled into a small blob, is compact."""
MIN_LINE_PIXELS = 8


SAFE_FLOAT32 = 1e18
"""Maps within ±this, with spans above its inverse, are put in range units in float32."""
DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))
"""Rows, columns and both diagonals: any line is crossed by one of them within 45°."""
BAND_PIXELS = 1 << 20
"""Pixels per band of rows in which the rises of a whole map are found on the CPU: 4 MB per
float32 temporary, which the cache of a 2-core machine holds."""


def heights(maps: torch.Tensor, width: int) -> torch.Tensor:
    """How far each pixel of B×H×W `maps` stands above a structure narrower than `width` px
    around it (≥ 0; 0 on anything wider): its rise over the higher of the two pixels
    `width` − 1 px away on either side, along the direction where that rise is largest."""
    return _rises(maps, width, free_share=0.0)


def _rises(maps: torch.Tensor, width: int, free_share: float,
           at: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
    """`heights`, counting only directions where the rise is at least `free_share` of the
    pixel's rise over the lower of the two pixels (a structure standing clear on both
    sides). A pixel of a structure narrower than `width` has background at `width` − 1 px on
    both sides of it along some direction; on a wide surface or an edge one of the two lies on
    the same surface.

    With `at` (the (batch, row, column) indices of some pixels, as `nonzero(as_tuple=True)`
    gives them), the rises of those pixels alone, as a 1-D tensor: the same values, at a
    fraction of the cost where the pixels are few.
    """
    reach = width - 1
    rows, cols = maps.shape[-2:]
    # Beyond the edges lies the map's minimum: a strip along an edge ends there, as the
    # image gives no evidence that it continues.
    floor = maps.amin(dim=(-2, -1), keepdim=True)  # each map's own, so batches change nothing
    padded = floor.expand(*maps.shape[:-2], rows + 2 * reach, cols + 2 * reach).clone()
    padded[..., reach:reach + rows, reach:reach + cols] = maps
    if at is not None:
        batch, row, col = at

        def probe_at(dy: int, dx: int) -> torch.Tensor:
            return padded[batch, row + reach + dy * reach, col + reach + dx * reach]

        return _largest_rise(maps[at], probe_at, _diagonals_see(row, col, (rows, cols), reach),
                             free_share)
    # On the CPU a band of rows at a time: on a 4K map the whole-map temporaries went to memory
    # and back for each step (2.3× slower), a band's stay in the cache. A GPU takes it whole.
    best = torch.empty_like(maps)
    band_rows = rows_per_band(maps, BAND_PIXELS, min_rows=1)
    for top in range(0, rows, band_rows):
        bottom = min(top + band_rows, rows)

        def probe(dy: int, dx: int, top: int = top, bottom: int = bottom) -> torch.Tensor:
            return padded[..., top + reach + dy * reach:bottom + reach + dy * reach,
                          reach + dx * reach:reach + dx * reach + cols]

        sees = None  # only bands within reach of the top or bottom hold corners
        if top < reach or bottom > rows - reach:
            sees = _diagonals_see(torch.arange(top, bottom, device=maps.device)[:, None],
                                  torch.arange(cols, device=maps.device), (rows, cols), reach)
        best[..., top:bottom, :] = _largest_rise(maps[..., top:bottom, :], probe, sees,
                                                 free_share)
    return best


def _diagonals_see(row: torch.Tensor, col: torch.Tensor, size: tuple[int, int], reach: int
                   ) -> torch.Tensor:
    """Whether a diagonal probe from each pixel sees anything: not from within `reach` of two
    edges, where both of its sides lie outside the image."""
    return (((row >= reach) & (row < size[0] - reach))
            | ((col >= reach) & (col < size[1] - reach)))


def _largest_rise(centre: torch.Tensor, probe, diagonals_see: torch.Tensor | None,
                  free_share: float) -> torch.Tensor:
    """`_rises` of the pixels `centre`, whose neighbours `probe(dy, dx)` gives `reach` px away
    along each direction, with diagonal probes silenced where `diagonals_see` is False."""
    best = torch.zeros_like(centre)
    side_share = free_share / (1 - free_share)
    for dy, dx in DIRECTIONS:
        before, after = probe(-dy, -dx), probe(dy, dx)
        rise = torch.maximum(before, after)
        # Negative rises never count (`best` starts at 0); clamped, a product with False
        # below is +0 (multiplying is 4× faster than `masked_fill_` on the CPU).
        torch.sub(centre, rise, out=rise).clamp_min_(0.0)
        if free_share:
            # rise ≥ share · (rise + |before − after|), the rise over the lower side
            sides = torch.sub(before, after).abs_().mul_(side_share)
            rise.mul_(rise >= sides)
        if dx and diagonals_see is not None:
            rise.mul_(diagonals_see)
        torch.maximum(best, rise, out=best)
    return best


def _long(mask: torch.Tensor, length: int) -> torch.Tensor:
    """The parts of a B×H×W boolean `mask` whose 8-connected components span at least
    `length` px in height or width."""
    kept = torch.zeros_like(mask)
    for index, one in enumerate(mask.cpu().numpy().astype(np.uint8)):
        count, labels, stats, _ = cv2.connectedComponentsWithStats(one, connectivity=8)
        spans = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT])
        long_enough = (spans >= length) & (np.arange(count) > 0)
        kept[index] = torch.from_numpy(long_enough[labels])
    return kept


def keep_thin_structures(refined: torch.Tensor, high: torch.Tensor, width: int,
                         mask: torch.Tensor | None = None) -> torch.Tensor:
    """`refined` (B×H×W) with the contrast of structures narrower than `width` px restored
    to what `high` (same size, linearly related units) gives them, in both directions (near
    poles and far slits); nothing is taken away.

    The high input's heights are brought into `refined`'s units by the least-squares scale
    of `high` onto `refined` over `mask` (e.g. the high input's inliers: one wild pixel must
    not decide the scale), leaving out the thin structures themselves, which `refined` lacks
    by assumption; a structure keeps the larger of its two heights.
    """
    if width < 2:
        return refined
    # In units of each map's robust range, unclipped: values near float32's limits would
    # overflow the differences below.
    refined_units, span = _in_range_units(refined)
    high_units, _ = _in_range_units(high)
    rises = _rises(high_units, width, FREE_STANDING)
    dips = _rises(-high_units, width, FREE_STANDING)
    plain = (rises <= FLAT) & (dips <= FLAT)
    scale, _ = fit_affine(high_units, refined_units, plain if mask is None else plain & mask,
                          nonnegative=True)
    rises, dips = rises * scale[:, None, None], dips * scale[:, None, None]
    length = max(LINE_LENGTH * width, MIN_LINE_PIXELS)
    rises = torch.where(_long(rises > MIN_HEIGHT, length), rises, 0.0)
    dips = torch.where(_long(dips > MIN_HEIGHT, length), dips, 0.0)
    at = ((rises > 0) | (dips > 0)).nonzero(as_tuple=True)
    if not len(at[0]):
        return refined
    # Only the restored pixels change: heights and sums at those alone.
    change = ((rises[at] - _rises(refined_units, width, 0.0, at)).clamp_min_(0)
              - (dips[at] - _rises(-refined_units, width, 0.0, at)).clamp_min_(0))
    largest = torch.finfo(refined.dtype).max
    kept = refined.clone()
    kept[at] = ((refined[at].double() + change.double() * span[at[0], 0, 0])
                .clamp_(-largest, largest).to(refined.dtype))
    return kept


def _in_range_units(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """B×H×W `maps` as float32 in units of their robust range (values beyond it kept, up to
    float32's limits), with that range's float64 span (B×1×1)."""
    low, high = robust_range(maps)
    span = (high - low).clamp_min(1e-30)[:, None, None]
    if bool(maps.abs().amax() < SAFE_FLOAT32) and bool((span > 1 / SAFE_FLOAT32).all()):
        return (maps - low.float()[:, None, None]) / span.float(), span
    largest = torch.finfo(torch.float32).max
    units = ((maps.double() - low[:, None, None]) / span).clamp_(-largest, largest)
    return units.float(), span


def thin_width(size: tuple[int, int], low_size: tuple[int, int]) -> int:
    """The narrowest width (px of a `size` map) that a low input of `low_size` resolves:
    one of its pixels, rounded up, plus one."""
    return math.ceil(max(size[0] / low_size[0], size[1] / low_size[1])) + 1
