"""Normalising and sizing a (low, high) depth pair for N_r: one rule for inference and training.

N_r is trained on maps scaled to [0, 1]. Plain min-max would let one extreme pixel (a hole, a
reflection, a sky value far off the scale — real predictors make them) squash the rest of the
map into a sliver of that range, so the range is taken between robust quantiles and the few
pixels outside it are clipped (docs/decisions.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .resample import resize_maps

OUTLIER_FRACTION = 0.001
"""Fraction of pixels at each end of a map's value range that may be clipped as outliers."""
SAMPLE_PIXELS = 1 << 16
"""Larger maps take their quantiles from an even subsample of about this many pixels: the
0.1% tail is still 65 pixels, and the cost stops growing with the map (exact
quantiles of a 2048² map took a fifth of a `small` refine)."""


def robust_range(
    maps: torch.Tensor, fraction: float = OUTLIER_FRACTION
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-map (low, high) of a B×H×W stack, as float64: the `fraction` and 1 − `fraction`
    order statistics (of every pixel, or of an even subsample past SAMPLE_PIXELS), or the min
    and max where those coincide (a map that is mostly one value) or where the map has fewer
    than 1 / `fraction` pixels."""
    flat = maps.reshape(maps.shape[0], -1)
    flat = flat[:, :: max(1, flat.shape[1] // SAMPLE_PIXELS)]
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


def padded_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """(height, width) rounded up to multiples of `stride`: the size N_r actually runs at."""
    return -(-size[0] // stride) * stride, -(-size[1] // stride) * stride


def network_inputs(
    low: torch.Tensor, high: torch.Tensor, size: tuple[int, int], stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair N_r reads: each B×H×W map normalised, resized to `size` (height, width), and
    replicate-padded on the bottom and right up to a multiple of `stride`, as B×1×H'×W'
    channels-last tensors. The padding is cropped off the output (`size` is what is real)."""
    padded_height, padded_width = padded_size(size, stride)
    pad_h, pad_w = padded_height - size[0], padded_width - size[1]

    def prepare(maps: torch.Tensor) -> torch.Tensor:
        resized = resize_maps(normalise_maps(maps), size)[:, None]
        padded = F.pad(resized, (0, pad_w, 0, pad_h), mode="replicate")
        return padded.contiguous(memory_format=torch.channels_last)

    return prepare(low), prepare(high)
