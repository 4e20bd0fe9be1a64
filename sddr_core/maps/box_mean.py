"""The mean of each pixel's (2r + 1)² window, borders mirrored without repeating the edge pixel.

Two users: the guided filter (six box means a call, in training too, so differentiable) and
clip mode's smoothed blend (one wide box a frame). On the CPU, where no gradient is wanted,
OpenCV's running sums cost the same per pixel whatever the radius (decision 291); elsewhere,
separable sums of shifted slices, several times faster on CPU than `avg_pool2d` on one-channel
maps and differentiable.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .opencv_path import opencv_maps


def box_mean(maps: torch.Tensor, radius: int) -> torch.Tensor:
    """Window means of `maps` (…×H×W), radius `radius` < min(H, W)."""
    size = 2 * radius + 1
    flat = opencv_maps(maps)
    if flat is not None:
        means = np.empty_like(flat)
        for one, mean in zip(flat, means, strict=True):  # written in place: no extra copy
            cv2.boxFilter(one, -1, (size, size), dst=mean, borderType=cv2.BORDER_REFLECT_101)
        return torch.from_numpy(means).reshape(maps.shape)
    lead = maps.shape[:-2]
    x = F.pad(maps.reshape(-1, 1, *maps.shape[-2:]), (radius,) * 4, mode="reflect")
    height, width = x.shape[-2] - 2 * radius, x.shape[-1] - 2 * radius
    rows = x[..., :, :width].clone()
    for shift in range(1, size):
        rows += x[..., :, shift:shift + width]
    total = rows[..., :height, :].clone()
    for shift in range(1, size):
        total += rows[..., shift:shift + height, :]
    return (total / size**2).reshape(*lead, height, width)
