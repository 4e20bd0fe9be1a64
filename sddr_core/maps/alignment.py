"""Least-squares scale-and-shift alignment of one depth map to another.

Depth predictors are only right up to an affine map, so every comparison and every
hand-over between maps (refined output → the low input's units, a window → the previous
estimate, G_s → G_{s−1}) goes through this one fit.
"""

from __future__ import annotations

import torch


def fit_affine(
    source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
    nonnegative: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (scale, shift) minimising ‖scale·source + shift − target‖² over `mask`.

    `source`, `target`: B×H×W (or B×…); `mask`: boolean, same shape (which pixels count).
    Returns two tensors of shape (B,). A flat `source`
    gets scale 0 and the target's mean as shift. `nonnegative=True` minimises under
    scale ≥ 0 (the optimum of a negative fit is then scale 0, shift = the target's mean), so
    an evaluation cannot flip a map of the wrong polarity into a good one.
    """
    scale, shift = _fit_float64(source, target, mask, nonnegative)
    return scale.to(source.dtype), shift.to(source.dtype)


def _fit_float64(source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None,
                 nonnegative: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """`fit_affine`'s least squares in float64: maps near float32's limits overflow it
    (decision 83)."""
    batch = source.shape[0]
    s = source.reshape(batch, -1).double()
    t = target.reshape(batch, -1).double()
    w = torch.ones_like(s) if mask is None else mask.reshape(batch, -1).double()
    # Sums of products as batched dot products (einsum), which make no full-size temporaries.
    count = w.sum(dim=1).clamp_min(1)
    s_mean = torch.einsum("bn,bn->b", w, s) / count
    t_mean = torch.einsum("bn,bn->b", w, t) / count
    weighted = (s - s_mean[:, None]).mul_(w)
    covariance = torch.einsum("bn,bn->b", weighted, t - t_mean[:, None])
    variance = torch.einsum("bn,bn->b", weighted, weighted)
    scale = torch.where(variance > 0, covariance / variance.clamp_min(1e-300), 0.0)
    if nonnegative:
        scale = scale.clamp_min(0.0)
    shift = t_mean - scale * s_mean
    return scale, shift


def align_to(
    source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
    nonnegative: bool = False,
) -> torch.Tensor:
    """`source` mapped by the least-squares affine fit onto `target` (see `fit_affine`).

    Mapped in float64 and clamped to `source`'s dtype's finite range: for a target near the
    ends of float32 the scale alone, or a value that slightly overshoots the target's range,
    would not fit in float32 (an infinity, then NaN).
    """
    scale, shift = _fit_float64(source, target, mask, nonnegative)
    shape = (-1,) + (1,) * (source.ndim - 1)
    aligned = source.double() * scale.view(shape) + shift.view(shape)
    largest = torch.finfo(source.dtype).max
    return aligned.clamp_(-largest, largest).to(source.dtype)
