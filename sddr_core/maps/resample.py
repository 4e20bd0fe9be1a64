"""Resizing stacks of depth maps: the one interpolation rule used everywhere."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def scaled_size(height: int, width: int, long_side: float) -> tuple[int, int]:
    """(h, w) with the long side at `long_side` pixels and the aspect ratio kept (≥ 1 each)."""
    factor = long_side / max(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def resize_maps(maps: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """B×H×W → B×h×w, bilinear (or bicubic); anti-aliased when shrinking so thin edges do not
    alias."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    shrinking = size[0] < maps.shape[-2] or size[1] < maps.shape[-1]
    resized = F.interpolate(
        maps[:, None], size=size, mode=mode, align_corners=False, antialias=shrinking
    )
    return resized[:, 0]
