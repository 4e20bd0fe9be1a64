"""Shared plumbing of the losses: one layout (B×H×W, fp32), masks, and labels on coarser grids.

Every loss takes maps as B×H×W or B×1×H×W, a boolean mask of valid pixels (default: all) and
works in fp32 (fp64 when given it) even under autocast, so sorting, quantiles and
least-squares fits are exact enough whatever precision the network ran in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sddr_core.maps.resample import resize_maps


def fp32(tensor: torch.Tensor) -> torch.autocast:
    """A context that switches autocast off on `tensor`'s device type."""
    return torch.autocast(tensor.device.type, enabled=False)


def as_maps(maps: torch.Tensor) -> torch.Tensor:
    """B×1×H×W or B×H×W → B×H×W in float32, or float64 when given float64."""
    if maps.ndim == 4:
        if maps.shape[1] != 1:
            raise ValueError(f"expected one channel, got shape {tuple(maps.shape)}")
        maps = maps[:, 0]
    if maps.ndim != 3:
        raise ValueError(f"expected B×H×W or B×1×H×W, got shape {tuple(maps.shape)}")
    return maps if maps.dtype == torch.float64 else maps.float()


def as_mask(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """The boolean B×H×W mask of valid pixels of `like` (B×H×W); None means all valid."""
    if mask is None:
        return torch.ones_like(like, dtype=torch.bool)
    if mask.ndim == 4:
        mask = mask[:, 0]
    mask = mask if mask.dtype == torch.bool else mask > 0.5
    if mask.shape != like.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} differs from {tuple(like.shape)}")
    return mask


def erode(mask: torch.Tensor) -> torch.Tensor:
    """Pixels whose whole 3×3 neighbourhood is valid: where a Sobel of the map sees no invalid
    pixel (the image border counts as valid, as the Sobel replicates it)."""
    invalid = F.max_pool2d((~mask)[:, None].float(), 3, stride=1, padding=1)
    return invalid[:, 0] == 0


def nearest_to(
    maps: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth targets and their mask on a coarser grid by nearest sampling: a depth target must
    not be blended across a discontinuity (the blend is a depth that exists nowhere)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps, mask
    sampled = F.interpolate(maps[:, None], size=size, mode="nearest")[:, 0]
    valid = F.interpolate(mask[:, None].float(), size=size, mode="nearest")[:, 0] > 0.5
    return sampled, valid


def on_prediction_grid(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(prediction, target, valid) as B×H×W maps and mask for a depth loss: the target and
    its mask (None: all valid) sampled by `nearest_to` onto the prediction's grid."""
    prediction, target = as_maps(prediction), as_maps(target)
    target, valid = nearest_to(target, as_mask(mask, target), tuple(prediction.shape[-2:]))
    return prediction, target, valid


def averaged_to(
    maps: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge labels and their mask on a coarser grid by anti-aliased averaging (a gradient
    magnitude is a density: sampling would drop one-pixel edges); a coarse pixel is valid when
    every fine pixel it averages is."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps, mask
    filled = torch.where(mask, maps, torch.zeros_like(maps))
    coverage = resize_maps(mask.float(), size)
    return resize_maps(filled, size), coverage > 1 - 1e-4
