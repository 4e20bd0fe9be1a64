"""He et al.'s guided filter: edge-aware smoothing of one map along the edges of another.

In every (2r + 1)² window the output is an affine function of the guide, `a·guide + b`, fitted
to the source by least squares with `eps` damping `a`; the per-window fits are averaged. Where
the guide is flat the output is the source's box mean; across a guide edge (a step well above
√eps) it stays two-sided instead of blurring the step.

Two uses share it: the guided-filter baseline (low input filtered with the high input as guide)
and N_r's correction filter (decision 134), which makes the correction follow the high input's
edges. Torch, batched and differentiable; borders are mirrored. On the CPU, where no gradient
is wanted, the box means are OpenCV's (running sums, a constant cost per pixel whatever the
radius; decision 291).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def guided_filter(source: torch.Tensor, guide: torch.Tensor, radius: int, eps: float
                  ) -> torch.Tensor:
    """`source` filtered with `guide` (both B×1×H×W, one dtype), window radius `radius` px.

    A radius beyond the map is cut to the map (minus one pixel, for the mirror padding).
    """
    if source.shape != guide.shape:
        raise ValueError(f"guided filter: source {tuple(source.shape)} and guide "
                         f"{tuple(guide.shape)} differ in shape")
    radius = min(radius, source.shape[-2] - 1, source.shape[-1] - 1)
    if radius < 1:
        return source
    mean_guide, mean_source = _box_mean(guide, radius), _box_mean(source, radius)
    covariance = _box_mean(guide * source, radius) - mean_guide * mean_source
    variance = _box_mean(guide * guide, radius) - mean_guide**2
    a = covariance / (variance + eps)
    b = mean_source - a * mean_guide
    return _box_mean(a, radius) * guide + _box_mean(b, radius)


def _box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over each (2r + 1)² window, with mirrored borders: separable sums of shifted
    slices, several times faster on CPU than `avg_pool2d` on one-channel maps."""
    size = 2 * radius + 1
    if x.device.type == "cpu" and x.dtype == torch.float32 and not (
            torch.is_grad_enabled() and x.requires_grad):
        maps = x.detach().reshape(-1, *x.shape[-2:]).contiguous().numpy()
        means = np.stack([cv2.boxFilter(one, -1, (size, size), borderType=cv2.BORDER_REFLECT_101)
                          for one in maps])
        return torch.from_numpy(means).reshape(x.shape)
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    height, width = x.shape[-2] - 2 * radius, x.shape[-1] - 2 * radius
    rows = x[..., :, :width].clone()
    for shift in range(1, size):
        rows += x[..., :, shift:shift + width]
    total = rows[..., :height, :].clone()
    for shift in range(1, size):
        total += rows[..., shift:shift + height, :]
    return total / size**2
