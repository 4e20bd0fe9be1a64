"""He et al.'s guided filter: edge-aware smoothing of one map along the edges of another.

In every (2r + 1)² window the output is an affine function of the guide, `a·guide + b`, fitted
to the source by least squares with `eps` damping `a`; the per-window fits are averaged. Where
the guide is flat the output is the source's box mean; across a guide edge (a step well above
√eps) it stays two-sided instead of blurring the step.

Two uses share it: the guided-filter baseline (low input filtered with the high input as guide)
and N_r's correction filter (decision 134), which makes the correction follow the high input's
edges. Torch, batched and differentiable; borders are mirrored (`box_mean`).
"""

from __future__ import annotations

import torch

from .box_mean import box_mean


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
    mean_guide, mean_source = box_mean(guide, radius), box_mean(source, radius)
    covariance = box_mean(guide * source, radius) - mean_guide * mean_source
    variance = box_mean(guide * guide, radius) - mean_guide**2
    a = covariance / (variance + eps)
    b = mean_source - a * mean_guide
    return box_mean(a, radius) * guide + box_mean(b, radius)
