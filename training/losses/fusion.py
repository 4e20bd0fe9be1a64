"""L_fusion, the edge-based fusion loss on the decoder's weights Ω (method.md §4.1, Eq. 9).

For n = 1..N_w and q = n·a, pixels in the bottom q tail of G_S (flat) are pushed to have Ω at
most T_q, the q-quantile of Ω, and pixels in the top tail (edges) to have Ω at least
T_{1−q}: the high-resolution input is trusted at edges, the low one in flat areas. Choices the
paper leaves open (recorded in docs/decisions.md):

- the thresholds t_q, T_q are per image, over its valid pixels, and detached (they are
  targets, not something to move);
- the tails are closed (G_S ≤ t_q, G_S ≥ t_{1−q}) and an edge pixel must not also be a
  flat one: G_S is exactly 0 on large parts of many scenes, and the paper's strict
  G_S < t_q would then select no flat pixel at all;
- G_S is brought to each Ω level by anti-aliased averaging, and a coarse pixel counts when
  every fine pixel under it is valid;
- the default levels are the two finest (1/2 and 1/4), as the released code, averaged, so
  λ2 means the same whatever the number of levels.

`variant="code"` is the released code's "FeatureMask" loss (method.md §4.2): one quantile per
tail, no threshold subtracted: edge pixels whose Ω is below Ω's 85th percentile add the mean
of 1 − Ω over them, flat pixels whose Ω is above the 15th add the mean of Ω. The code's
`mask_edge`/`mask_flat` come from its unreleased loader; here they are the top-5 % binarised
G_S (as L_grad) and G_S at or below its 5 % quantile, and percentiles are per image where
the code pools the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

from .grids import as_maps, as_mask, averaged_to, fp32
from .regions import TOP, binarise

STEP = 0.02
"""a: the quantile step."""
WINDOWS = 4
"""N_w: how many quantiles per tail (2/4/6/8 % and 92/94/96/98 %)."""
LEVELS = (0, 1)
"""Ω levels supervised, finest first: 1/2 and 1/4 (the released code's two finest)."""
CODE_QUANTILE = 0.15
"""The code variant's Ω percentile: 15th for flat pixels, 85th for edges."""

Variant = Literal["paper", "code"]


def _quantiles(maps: torch.Tensor, mask: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per image, the q-quantiles (linear interpolation) over valid pixels: B×len(q)."""
    values = torch.where(mask, maps, torch.full_like(maps, math.nan)).flatten(1)
    return torch.nanquantile(values, q, dim=1).T.nan_to_num(0.0)


def fusion_level(
    omega: torch.Tensor, edges: torch.Tensor, mask: torch.Tensor, *,
    step: float = STEP, windows: int = WINDOWS,
) -> torch.Tensor:
    """Eq. 9 on one level, per image (B,): Ω, G_S and the mask B×h×w on the same grid."""
    low_q = step * torch.arange(1, windows + 1, device=omega.device, dtype=omega.dtype)
    q = torch.cat([low_q, 1 - low_q])
    label = _quantiles(edges, mask, q)  # [B,2W]: t_q then t_{1−q}
    target = _quantiles(omega.detach(), mask, q)  # T_q, T_{1−q}
    flat = (edges[:, None] <= label[:, :windows, None, None]) & mask[:, None]
    edge = (edges[:, None] >= label[:, windows:, None, None]) & mask[:, None] & ~flat
    # relu, not clamp_min: no gradient where Ω sits exactly on its threshold.
    too_high = (omega[:, None] - target[:, :windows, None, None]).relu()
    too_low = (target[:, windows:, None, None] - omega[:, None]).relu()
    total = (too_high * flat).flatten(1).sum(1) + (too_low * edge).flatten(1).sum(1)
    pixels = mask.flatten(1).sum(1).clamp_min(1)
    return total / (windows * pixels)


def fusion_level_code(
    omega: torch.Tensor, edges: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The released code's variant on one level, per image (B,)."""
    edge = binarise(edges, mask, TOP)
    flat = mask & (edges <= _quantiles(edges, mask, edges.new_tensor([TOP]))[:, :, None])
    bounds = _quantiles(omega.detach(), mask,
                        omega.new_tensor([CODE_QUANTILE, 1 - CODE_QUANTILE]))
    raise_ = edge & (omega < bounds[:, 1, None, None])
    lower = flat & (omega > bounds[:, 0, None, None])
    return _mean_over(1 - omega, raise_) + _mean_over(omega, lower)


def _mean_over(values: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Per image, the mean of `values` over the `chosen` pixels (0 where none is)."""
    total = torch.where(chosen, values, torch.zeros_like(values)).flatten(1).sum(1)
    return total / chosen.flatten(1).sum(1).clamp_min(1)


def fusion_loss(
    omegas: Sequence[torch.Tensor],
    edges: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    step: float = STEP,
    windows: int = WINDOWS,
    levels: Sequence[int] = LEVELS,
    variant: Variant = "paper",
) -> torch.Tensor:
    """The edge-based fusion loss of the Ω maps against G_S, mean over levels and images.

    Parameters
    ----------
    omegas : sequence of torch.Tensor
        Ω per decoder level, finest first, each (B, 1, h, w) or (B, h, w)
        (`NetworkOutput.omegas`); 1 means "trust the high-resolution input".
    edges : torch.Tensor
        (B, H, W) or (B, 1, H, W) G_S at full resolution.
    mask : torch.Tensor, optional
        Valid pixels of `edges`.
    step, windows : float, int
        a and N_w of Eq. 9.
    levels : sequence of int
        Indices into `omegas` supervised.
    variant : "paper" or "code"
        Eq. 9 (default), or the released code's single-quantile form (step, windows unused).

    Returns
    -------
    torch.Tensor
        A scalar, 1/(N_w·N_p) Σ_n Σ_i [flat hinge + edge hinge] (Eq. 9) per image and level.
    """
    with fp32(edges):
        edges = as_maps(edges)
        valid = as_mask(mask, edges)
        per_level = []
        for level in levels:
            omega = as_maps(omegas[level])
            label, inside = averaged_to(edges, valid, tuple(omega.shape[-2:]))
            per_level.append(
                fusion_level_code(omega, label, inside) if variant == "code"
                else fusion_level(omega, label, inside, step=step, windows=windows))
        return torch.stack(per_level).mean()
