"""Least-squares scale-and-shift alignment of one depth map to another.

Depth predictors are only right up to an affine map, so every comparison and every
hand-over between maps (refined output → the low input's units, a window → the previous
estimate, G_s → G_{s−1}) goes through this one fit.
"""

from __future__ import annotations

import numpy as np
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


CHUNK = 1 << 18
"""Pixels per map converted to float64 at a time on the CPU: a 4K map in one piece made five
134 MB temporaries per fit, and the fit spent most of its time on memory, not arithmetic. A
GPU takes a map whole (one launch, not 64)."""


def _pieces(maps: torch.Tensor) -> list[tuple[slice, slice]]:
    """Index of each piece of columns of a B×N stack handled at a time: `CHUNK` columns on the
    CPU, all of them elsewhere."""
    columns = maps.shape[1]
    chunk = CHUNK if maps.device.type == "cpu" else max(1, columns)
    return [np.s_[:, start:start + chunk] for start in range(0, columns, chunk)]


def _fit_float64(source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None,
                 nonnegative: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """`fit_affine`'s least squares in float64: maps near float32's limits overflow it
    (decision 83). Two passes over CHUNK-pixel pieces: the means, then the centred sums."""
    batch = source.shape[0]
    pieces = _float64_pieces(source.reshape(batch, -1), target.reshape(batch, -1),
                             None if mask is None else mask.reshape(batch, -1))
    # Sums of products as batched dot products (einsum), which make no further temporaries.
    zeros = source.new_zeros(batch, dtype=torch.float64)
    count = s_sum = t_sum = zeros
    for s, t, w in pieces():
        count = count + w.sum(dim=1)
        s_sum = s_sum + torch.einsum("bn,bn->b", w, s)
        t_sum = t_sum + torch.einsum("bn,bn->b", w, t)
    count = count.clamp_min(1)
    s_mean, t_mean = s_sum / count, t_sum / count
    covariance = variance = zeros
    for s, t, w in pieces():
        weighted = (s - s_mean[:, None]).mul_(w)
        covariance = covariance + torch.einsum("bn,bn->b", weighted, t - t_mean[:, None])
        variance = variance + torch.einsum("bn,bn->b", weighted, weighted)
    scale = torch.where(variance > 0, covariance / variance.clamp_min(1e-300), 0.0)
    if nonnegative:
        scale = scale.clamp_min(0.0)
    shift = t_mean - scale * s_mean
    return scale, shift


def _float64_pieces(source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None):
    """A function yielding (source, target, weight) in float64, a piece (`_pieces`) of the B×N
    maps at a time (weight 1 where there is no mask)."""
    parts = _pieces(source)

    def pieces():
        for part in parts:
            s = source[part].double()
            yield (s, target[part].double(),
                   torch.ones_like(s) if mask is None else mask[part].double())
    return pieces


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
    largest = torch.finfo(source.dtype).max
    flat = source.reshape(source.shape[0], -1)
    aligned = torch.empty_like(flat)
    for part in _pieces(flat):
        aligned[part] = (flat[part].double() * scale[:, None] + shift[:, None]
                         ).clamp_(-largest, largest)
    return aligned.reshape(source.shape)
