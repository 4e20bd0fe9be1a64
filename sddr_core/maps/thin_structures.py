"""Thin structures (poles, wires, branches, slits) that only the high input resolves.

A structure narrower than one pixel of the low input is invisible to it, so the low input
carries no evidence about its depth; yet N_r, trained to keep the low input's structure, erases
most of such a structure's contrast (a 2-px pole in front of its background keeps about a
quarter of it with the shipped weights, decision 138). `keep_thin_structures` puts back, from
the high input, the contrast a thin structure lost: it compares the structure's height above
(or depth below) its surroundings in the high input and in the refined map and restores the
difference. Wide surfaces, edges of wide objects and compact specks (a predictor's stray
pixels) are left to N_r.

A structure's height is a morphological top-hat: the map minus its opening by a square as
wide as one low-input pixel (plus one), which removes exactly what is narrower than that.
Beyond the image's edges the opening sees the map's minimum, so a pole along an edge counts
as thin; the price is that a surface sloping steeply towards an edge (more than MIN_HEIGHT of
the range over one low-input pixel) takes the high input's shape in its outermost pixels.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .alignment import fit_affine
from .normalise import robust_range

FLAT = 1e-3
"""Heights up to this share of a map's robust range are rounding: what the scale is fitted on."""
MIN_HEIGHT = 0.05
"""Only structures standing out by more than this share of the refined map's robust range are
restored: a visible step in a mesh. Below it, a slanted surface's own rise over one low-input
pixel near a corner or the image's edge would count too."""
FREE_STANDING = 0.5
"""A structure is restored where its height is at least this share of its rise over the
lowest point around it (within its width limit on each side): a pole stands clear of its
background on both sides, while a ridge a predictor leaves along a wide object's edge (an
edge artefact N_r rightly removes) stands only a little above that object."""
LINE_LENGTH = 3
"""A structure is restored when it extends over at least this many times its width limit
(and MIN_LINE_PIXELS): poles, wires and branches are long, while a predictor's speckle, even
resampled into a small blob, is compact."""
MIN_LINE_PIXELS = 8


def _extreme_pool(maps: torch.Tensor, width: int, outside: float, sign: float) -> torch.Tensor:
    """Max (sign 1) or min (sign −1) over a width×width square of B×H×W `maps`, separable,
    with `outside` beyond the edges. An even square reaches one pixel further after a pixel
    for the min and before it for the max, so that the two make an opening in place."""
    before, after = (width - 1) // 2, width // 2
    if sign > 0:
        before, after = after, before
    x = F.pad(sign * maps[:, None], (before, after, before, after), value=sign * outside)
    x = F.max_pool2d(x, (1, width), stride=1)
    return sign * F.max_pool2d(x, (width, 1), stride=1)[:, 0]


def heights(maps: torch.Tensor, width: int) -> torch.Tensor:
    """How far each pixel of B×H×W `maps` stands above its surroundings as part of a
    structure narrower than `width` px (≥ 0; 0 on anything wider)."""
    # Beyond the edges lies the map's minimum: a strip along an edge ends there, as the
    # image gives no evidence that it continues.
    floor = float(maps.amin())
    opened = _extreme_pool(_extreme_pool(maps, width, floor, -1.0), width, floor, 1.0)
    return (maps - opened).clamp_min_(0)


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
    rises, dips = heights(high_units, width), heights(-high_units, width)
    plain = (rises <= FLAT) & (dips <= FLAT)
    rises = _free_standing(rises, high_units, width)
    dips = _free_standing(dips, -high_units, width)
    scale, _ = fit_affine(high_units, refined_units, plain if mask is None else plain & mask,
                          nonnegative=True)
    scale = scale[:, None, None]
    length = max(LINE_LENGTH * width, MIN_LINE_PIXELS)
    change = (_lost_height(scale * rises, heights(refined_units, width), length)
              - _lost_height(scale * dips, heights(-refined_units, width), length))
    largest = torch.finfo(refined.dtype).max
    return (refined.double() + change.double() * span).clamp_(-largest, largest).to(refined.dtype)


def _free_standing(rises: torch.Tensor, maps: torch.Tensor, width: int) -> torch.Tensor:
    """`rises` (the `heights` of `maps`), zero where a rise is less than FREE_STANDING of
    the pixel's rise over the lowest point within `width` px."""
    floor = float(maps.amin())
    lowest = _extreme_pool(maps, 2 * width + 1, floor, -1.0)
    return torch.where(rises >= FREE_STANDING * (maps - lowest), rises, 0.0)


def _lost_height(high_heights: torch.Tensor, refined_heights: torch.Tensor,
                 length: int) -> torch.Tensor:
    """How much less than in the high input the thin structures that rise there (at least
    MIN_HEIGHT, over at least `length` px) rise in the refined map."""
    lost = (high_heights - refined_heights).clamp_min_(0)
    return torch.where(_long(high_heights > MIN_HEIGHT, length), lost, 0.0)


def _in_range_units(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """B×H×W `maps` as float32 in units of their robust range (values beyond it kept, up to
    float32's limits), with that range's float64 span (B×1×1)."""
    low, high = robust_range(maps)
    span = (high - low).clamp_min(1e-30)[:, None, None]
    largest = torch.finfo(torch.float32).max
    units = ((maps.double() - low[:, None, None]) / span).clamp_(-largest, largest)
    return units.float(), span


def thin_width(size: tuple[int, int], low_size: tuple[int, int]) -> int:
    """The narrowest width (px of a `size` map) that a low input of `low_size` resolves:
    one of its pixels, rounded up, plus one."""
    pixel = max(size[0] / low_size[0], size[1] / low_size[1])
    return int(-(-pixel // 1)) + 1
