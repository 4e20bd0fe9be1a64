"""L_gt: MiDaS's scale-and-shift-invariant trimmed loss with multi-scale gradient matching.

The paper's L_gt is "the affinity-invariant loss of MiDaS/DPT" (method.md §4.1); the released
code applies MiDaS's trimmed form with gradient weight 0.5 to D0 and to its two deep-supervision
outputs (§4.2). The code's median over `mask * x` (invalid pixels counted as zeros) is not
copied: the median and the mean absolute deviation here are over the valid pixels only.
"""

from __future__ import annotations

import math

import torch

from .grids import fp32, on_prediction_grid

TRIM = 0.2
"""Fraction of each image's largest residuals left out (MiDaS's 20 %)."""
GRADIENT_WEIGHT = 0.5
"""α of L_ssitrim + α·L_reg (MiDaS, and the code's `TrimmedProcrustesLoss(alpha=0.5)`)."""
SCALES = 4
"""Scales of the gradient-matching term: strides 1, 2, 4, 8."""


def normalise(maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(x − median) / mean|x − median| over each image's valid pixels; 0 at invalid pixels.

    The median of an even count is the lower middle value (`torch.nanmedian`). A flat map, or
    one with no valid pixel, becomes 0 (the deviation is clamped at 1e-6).
    """
    count = mask.flatten(1).sum(1).clamp_min(1)
    filled = torch.where(mask, maps, torch.full_like(maps, math.nan))
    median = filled.flatten(1).nanmedian(dim=1).values.nan_to_num(0.0)
    centred = torch.where(mask, maps - median[:, None, None], torch.zeros_like(maps))
    deviation = centred.abs().flatten(1).sum(1) / count
    return centred / deviation.clamp_min(1e-6)[:, None, None]


def trimmed_absolute_error(
    residual: torch.Tensor, mask: torch.Tensor, trim: float = TRIM
) -> torch.Tensor:
    """Per image: the sum of the smallest ⌊(1 − trim)·M⌋ of |residual| over its M valid
    pixels, divided by 2M (MiDaS's L_ssitrim). Shape (B,)."""
    count = mask.flatten(1).sum(1)
    magnitude = torch.where(mask, residual.abs(), torch.full_like(residual, math.inf))
    ordered = magnitude.flatten(1).sort(dim=1).values
    kept = torch.floor((1 - trim) * count)
    position = torch.arange(ordered.shape[1], device=ordered.device)
    inside = position[None, :] < kept[:, None]
    total = torch.where(inside, ordered, torch.zeros_like(ordered)).sum(1)
    return total / (2 * count).clamp_min(1)


def gradient_matching(
    residual: torch.Tensor, mask: torch.Tensor, scales: int = SCALES
) -> torch.Tensor:
    """Per image: Σ over scales k (stride 2^k) of the mean, over that scale's M_k valid
    pixels, of |∂x R| + |∂y R| where both neighbours are valid (MiDaS's L_reg). Shape (B,)."""
    total = residual.new_zeros(residual.shape[0])
    for scale in range(scales):
        step = 2**scale
        r = residual[:, ::step, ::step]
        m = mask[:, ::step, ::step]
        dx = (r[:, :, 1:] - r[:, :, :-1]).abs() * (m[:, :, 1:] & m[:, :, :-1])
        dy = (r[:, 1:, :] - r[:, :-1, :]).abs() * (m[:, 1:, :] & m[:, :-1, :])
        count = m.flatten(1).sum(1).clamp_min(1)
        total = total + (dx.flatten(1).sum(1) + dy.flatten(1).sum(1)) / count
    return total


def gt_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    trim: float = TRIM,
    gradient_weight: float = GRADIENT_WEIGHT,
    scales: int = SCALES,
) -> torch.Tensor:
    """Scale-and-shift-invariant trimmed loss plus gradient matching, mean over the batch.

    Parameters
    ----------
    prediction : torch.Tensor
        (B, H, W) or (B, 1, H, W): D0 or a deep-supervision output.
    target : torch.Tensor
        (B, H', W') or (B, 1, H', W') ground truth; sampled (nearest) onto the prediction's
        grid when larger. Any affine function of the truth (depth, or disparity when the
        prediction is disparity-like): polarity is not invariant.
    mask : torch.Tensor, optional
        Valid pixels of `target` (bool or 0/1, same shape); invalid ones are never read.

    Returns
    -------
    torch.Tensor
        A scalar: the mean over images of L_ssitrim + gradient_weight · L_reg, each image
        normalised on its own (method.md §4.1–4.2; MiDaS Eqs. 7 and 11). An image with no
        valid pixel contributes 0.

    Examples
    --------
    >>> truth = torch.rand(2, 16, 16)
    >>> float(gt_loss(3 * truth + 1, truth)) < 1e-6
    True
    """
    with fp32(prediction):
        prediction, target, valid = on_prediction_grid(prediction, target, mask)
        residual = normalise(prediction, valid) - normalise(target, valid)
        per_image = trimmed_absolute_error(residual, valid, trim)
        if gradient_weight:
            per_image = per_image + gradient_weight * gradient_matching(residual, valid, scales)
        return per_image.mean()
