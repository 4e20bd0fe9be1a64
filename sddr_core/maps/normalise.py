"""Normalising and sizing a (low, high) depth pair for N_r: one rule for inference and training.

N_r is trained on maps scaled to [0, 1]. Plain min-max would let one extreme pixel (a hole, a
reflection, a sky value far off the scale — real predictors make them) squash the rest of the
map into a sliver of that range, so the range is taken between robust quantiles and the few
pixels outside it are clipped (docs/decisions.md). The rule itself is in `robust_range`, which
the Blender add-on shares; `robust_range` below applies it to batches of tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .resample import resize_maps
from .robust_range import (  # noqa: F401  (SAMPLE_PIXELS: re-exported with the rule)
    OUTLIER_FRACTION,
    SAMPLE_PIXELS,
    sample_stride,
)


def robust_range(
    maps: torch.Tensor, fraction: float = OUTLIER_FRACTION
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-map (low, high) of a B×H×W stack of finite maps, as float64 on their device: the
    rule of `robust_range.robust_range` (order statistics of an even subsample, min and max
    where they coincide) applied to every map at once; tests pin the two to the same values."""
    flat = maps.reshape(maps.shape[0], -1)
    flat = flat[:, :: sample_stride(flat.shape[1], maps.shape[-1])]
    count = flat.shape[1]
    skip = int(fraction * (count - 1))
    low = flat.kthvalue(skip + 1, dim=1).values.double()
    high = flat.kthvalue(count - skip, dim=1).values.double()
    collapsed = high <= low
    low = torch.where(collapsed, flat.amin(dim=1).double(), low)
    high = torch.where(collapsed, flat.amax(dim=1).double(), high)
    return low, high


def normalise_maps(maps: torch.Tensor, fraction: float = OUTLIER_FRACTION) -> torch.Tensor:
    """B×H×W maps scaled so their robust range (`robust_range`) is [0, 1], outliers clipped.

    Computed in float64 where a range is too wide for float32 (finite values anywhere in
    float32's range, ±3.4e38, cannot overflow); a constant map gives NaN (callers refuse
    constant maps first).
    """
    low, high = robust_range(maps, fraction)
    wide = not bool(torch.isfinite((high - low).float()).all())
    dtype = torch.float64 if wide else maps.dtype
    low, high = low.to(dtype)[:, None, None], high.to(dtype)[:, None, None]
    scaled = (maps.to(dtype).clamp(low, high) - low) / (high - low)
    return scaled.to(torch.float32)


def inlier_mask(maps: torch.Tensor, reference: torch.Tensor,
                fraction: float = OUTLIER_FRACTION) -> torch.Tensor:
    """Pixels of `maps` inside the robust range of `reference` (the same maps at another size):
    where a least-squares fit onto `maps` should look."""
    low, high = robust_range(reference, fraction)
    values = maps.double()
    return (values >= low[:, None, None]) & (values <= high[:, None, None])


BORDER_MARGIN = 8
"""Mirrored pixels N_r reads beyond each edge of the image at inference. Within about four
pixels of its input's edges N_r's output is off by up to a fifth of the range on a clean ramp
(most at the bottom and right); with this margin those pixels fall in the padding, which is
cropped off (docs/decisions.md, decision 82)."""


def padded_size(size: tuple[int, int], stride: int, margin: int = 0) -> tuple[int, int]:
    """(height, width) plus `margin` on each side, rounded up to multiples of `stride`: the
    size N_r actually runs at."""
    return tuple(-(-(side + 2 * margin) // stride) * stride for side in size)


def padding(size: tuple[int, int], stride: int, margin: int = 0) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) pixels that take `size` to `padded_size`, split evenly
    (the extra pixel at the bottom or right), so each side gets at least `margin`."""
    (height, width), (padded_height, padded_width) = size, padded_size(size, stride, margin)
    rows, cols = padded_height - height, padded_width - width
    return rows // 2, rows - rows // 2, cols // 2, cols - cols // 2


def mirror_pad(maps: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Pad B×1×H×W maps by reflection (the edge pixel not repeated), so N_r sees the image
    continue past its edges; what a small map is too narrow to reflect is replicated."""
    height, width = maps.shape[-2:]
    mirrored = [min(left, width - 1), min(right, width - 1),
                min(top, height - 1), min(bottom, height - 1)]
    maps = F.pad(maps, mirrored, mode="reflect") if any(mirrored) else maps
    rest = [want - got for want, got in zip((left, right, top, bottom), mirrored, strict=True)]
    return F.pad(maps, rest, mode="replicate") if any(rest) else maps


def network_inputs(
    low: torch.Tensor, high: torch.Tensor, size: tuple[int, int], stride: int, margin: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair N_r reads: each B×H×W map normalised, resized to `size` (height, width), and
    mirror-padded by `padding(size, stride, margin)`, as B×1×H'×W' channels-last tensors. The
    padding is cropped off the output (`size` is what is real). Training crops are multiples
    of the stride and take no margin, so they are not padded at all."""
    sides = padding(size, stride, margin)

    def prepare(maps: torch.Tensor) -> torch.Tensor:
        resized = resize_maps(normalise_maps(maps), size)[:, None]
        return mirror_pad(resized, *sides).contiguous(memory_format=torch.channels_last)

    return prepare(low), prepare(high)
