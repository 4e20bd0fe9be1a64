"""The training objective L = L_gt + λ1·L_grad + λ2·L_fusion (method.md §4.1, Eq. 10)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sddr_core.network.model import NetworkOutput

from .fusion import LEVELS, fusion_loss
from .gradient import grad_loss
from .ground_truth import gt_loss
from .regions import REGIONS


@dataclass(frozen=True)
class LossWeights:
    """Weights of the parts of the objective."""

    grad: float = 0.5
    """λ1 (paper)."""
    fusion: float = 0.1
    """λ2 (paper)."""
    aux: float = 1.0
    """Each deep-supervision output's L_gt relative to D0's (the released code sums them);
    0 supervises D0 only, as the paper's text."""


def total_loss(
    output: NetworkOutput,
    target: torch.Tensor,
    edges: torch.Tensor | None,
    mask: torch.Tensor | None = None,
    *,
    weights: LossWeights = LossWeights(),
    regions: int = REGIONS,
    fusion_levels: Sequence[int] = LEVELS,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of one batch and its parts.

    Parameters
    ----------
    output : NetworkOutput
        The network's output; `aux` (from `with_aux=True`) adds deep supervision.
    target : torch.Tensor
        (B, H, W) or (B, 1, H, W) ground truth on D0's grid.
    edges : torch.Tensor or None
        G_S on D0's grid; None in phase 1, which trains with L_gt alone.
    mask : torch.Tensor, optional
        Valid pixels of `target` (and of `edges`).
    weights, regions, fusion_levels
        λ1, λ2 and the aux weight; N_g of L_grad; the Ω levels of L_fusion.

    Returns
    -------
    (torch.Tensor, dict of str to torch.Tensor)
        The scalar to back-propagate, and its parts `gt`, `grad`, `fusion` (unweighted,
        detached; phase 1 has `gt` only), for logging.
    """
    supervised = [output.depth] + (list(output.aux.values()) if weights.aux else [])
    parts = {"gt": sum(gt_loss(depth, target, mask) * (1.0 if index == 0 else weights.aux)
                       for index, depth in enumerate(supervised))}
    loss = parts["gt"]
    if edges is not None:
        parts["grad"] = grad_loss(output.depth, edges, mask, regions=regions)
        parts["fusion"] = fusion_loss(output.omegas, edges, mask, levels=fusion_levels)
        loss = loss + weights.grad * parts["grad"] + weights.fusion * parts["fusion"]
    return loss, {name: value.detach() for name, value in parts.items()}
