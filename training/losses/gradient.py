"""L_grad, the edge-guided gradient loss (method.md §4.1, paper Eq. 7).

In each edge-dense region P_n, G0 = ∇D0 is mapped onto G_S by its least-squares scale and shift
(β1, β0) and the remaining L1 error is averaged over the region; L_grad is the mean over the
regions. G0 is the core's `sobel_magnitude`, the ∇ that made G_S. It is taken with a fixed value
range of 1: the per-region fit absorbs any scale, and no gradient then flows through the map's
min and max. The fit is differentiable (gradients flow through β1, β0 as in MiDaS's
alignment). The paper's ‖·‖₁ is taken as a mean over the region's pixels, not a sum, so the
loss does not grow with the image size; flat areas outside every region are unconstrained.

`variant="code"` is the released code's form (method.md §4.2): one median/mean-absolute-
deviation alignment of G0 to G_S over all the binarised edge pixels, no regions, and MiDaS's
20 % trimmed L1; its grad² weighting quirk is not copied.
"""

from __future__ import annotations

from typing import Literal

import torch

from sddr_core.maps.alignment import fit_affine
from sddr_core.maps.gradients import sobel_magnitude

from .grids import as_maps, as_mask, erode, fp32
from .ground_truth import normalise, trimmed_absolute_error
from .regions import ITERATIONS, REGIONS, TOP, RegionShape, binarise, edge_regions

Variant = Literal["paper", "code"]


def grad_loss(
    depth: torch.Tensor,
    edges: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    regions: int = REGIONS,
    top: float = TOP,
    shape: RegionShape = "box",
    iterations: int = ITERATIONS,
    variant: Variant = "paper",
) -> torch.Tensor:
    """The edge-guided gradient loss of D0 against the pseudo-label G_S, mean over the batch.

    Parameters
    ----------
    depth : torch.Tensor
        (B, H, W) or (B, 1, H, W) D0.
    edges : torch.Tensor
        (B, H, W) or (B, 1, H, W) G_S, e.g. from `sddr_core.inference.labels.edge_labels`.
    mask : torch.Tensor, optional
        Valid pixels (same shape). It is eroded by one pixel, so no Sobel reads an invalid one.
    regions, top, shape, iterations
        N_g, the binarised fraction, the region shape and the k-means iterations
        (see `edge_regions`).
    variant : "paper" or "code"
        Eq. 7 (default), or the released code's trimmed loss on the edge pixels (regions,
        shape and iterations then unused).

    Returns
    -------
    torch.Tensor
        A scalar: per image, (1/N_g') Σ_n mean_{P_n} |β1·G0 + β0 − G_S| over its N_g'
        non-empty regions (0 if none), then the mean over images.

    Notes
    -----
    Invariant to any shift and any non-zero scale of D0 (the Sobel magnitude ignores shifts
    and signs, the fit absorbs the scale); a positive scale c of G_S (with any shift) scales
    the loss by c. The code variant is also invariant to a positive scale of G_S.
    """
    with fp32(depth):
        depth = as_maps(depth)
        edges = as_maps(edges)
        valid = erode(as_mask(mask, edges))
        gradient = sobel_magnitude(depth, value_range=1.0)
        if variant == "code":
            edge = binarise(edges, valid, top)
            residual = normalise(gradient, edge) - normalise(edges, edge)
            return trimmed_absolute_error(residual, edge).mean()
        parts = edge_regions(edges, valid, regions=regions, top=top, shape=shape,
                             iterations=iterations)  # [B,K,H,W]
        batch, count = parts.shape[:2]
        source = gradient[:, None].expand(-1, count, -1, -1).reshape(batch * count, -1)
        target = edges[:, None].expand(-1, count, -1, -1).reshape(batch * count, -1)
        inside = parts.reshape(batch * count, -1)
        scale, shift = fit_affine(source, target, inside)
        error = (scale[:, None] * source + shift[:, None] - target).abs()
        pixels = inside.sum(1)
        per_region = (error * inside).sum(1) / pixels.clamp_min(1)
        per_region, present = per_region.view(batch, count), (pixels > 0).view(batch, count)
        per_image = (per_region * present).sum(1) / present.sum(1).clamp_min(1)
        return per_image.mean()
