"""The training objective L = L_gt + λ1·L_grad + λ2·L_fusion (method.md §4.1, Eq. 10), and
our optional L_sides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from sddr_core.network.model import NetworkOutput

from .fusion import LEVELS, fusion_loss
from .fusion import Variant as FusionVariant
from .gradient import Variant as GradVariant
from .gradient import grad_loss
from .ground_truth import GRADIENT_WEIGHT, TRIM, gt_loss
from .regions import REGIONS
from .sides import side_loss


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
    sides: float = 0.0
    """L_sides on D0 (ours, decision 349): near a true discontinuity each pixel's distance to
    the nearer side; 0 leaves it out."""


@dataclass(frozen=True)
class LossOptions:
    """The open choices of L_gt, L_grad and L_fusion (docs/decisions.md, "Training losses")."""

    gt_trim: float = TRIM
    """Share of each image's largest L_gt residuals left out (MiDaS's 0.2, made for noisy
    ground truth; on exact procedural depth they are the edges, decision 236)."""
    gt_gradient_weight: float = GRADIENT_WEIGHT
    """α of L_gt's gradient-matching term (MiDaS's 0.5), the only part of L_gt that sees how
    wide a ramp is once the trim is off (decision 290)."""
    regions: int = REGIONS
    """N_g, the k-means regions of L_grad."""
    fusion_levels: tuple[int, ...] = LEVELS
    """Ω levels of L_fusion, finest first."""
    grad_variant: GradVariant = "paper"
    """"paper" (Eq. 7) or "code" (the released code's trimmed loss on edge pixels)."""
    fusion_variant: FusionVariant = "paper"
    """"paper" (Eq. 9) or "code" (the released code's single-quantile FeatureMask loss)."""


class Term(NamedTuple):
    """One term of the objective: its weight and its unweighted value, attached to the graph."""

    weight: float
    value: torch.Tensor

    @property
    def weighted(self) -> torch.Tensor:
        return self.weight * self.value


def loss_terms(
    output: NetworkOutput,
    target: torch.Tensor,
    edges: torch.Tensor | None,
    mask: torch.Tensor | None = None,
    *,
    weights: LossWeights = LossWeights(),
    options: LossOptions = LossOptions(),
) -> dict[str, Term]:
    """The objective of one batch term by term; `combine` sums them.

    Kept apart so that each term's pull can be measured (`training.losses.balance`).

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
    weights : LossWeights
        λ1, λ2 and the deep-supervision weight.
    options : LossOptions
        N_g, the Ω levels, and paper or code variants of L_grad and L_fusion.

    Returns
    -------
    dict of str to Term
        `gt_d0`: D0's L_gt (weight 1); `gt_half`, `gt_quarter`: each deep-supervision
        output's (weight `weights.aux`; absent when it is 0); `grad`: L_grad (λ1) and
        `fusion`: L_fusion (λ2), only when `edges` is given.
    """
    def ground_truth(depth: torch.Tensor) -> torch.Tensor:
        return gt_loss(depth, target, mask, trim=options.gt_trim,
                       gradient_weight=options.gt_gradient_weight)

    terms = {"gt_d0": Term(1.0, ground_truth(output.depth))}
    if weights.aux:
        terms |= {f"gt_{name}": Term(weights.aux, ground_truth(aux))
                  for name, aux in output.aux.items()}
    if weights.sides:
        terms["sides"] = Term(weights.sides, side_loss(output.depth, target, mask))
    if edges is not None:
        terms["grad"] = Term(weights.grad, grad_loss(
            output.depth, edges, mask, regions=options.regions, variant=options.grad_variant))
        terms["fusion"] = Term(weights.fusion, fusion_loss(
            output.omegas, edges, mask, levels=options.fusion_levels,
            variant=options.fusion_variant))
    return terms


def combine(terms: dict[str, Term]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss to back-propagate, L = L_gt + λ1·L_grad + λ2·L_fusion, and its parts for
    logging, detached: `gt` (every L_gt term, weighted), `grad` and `fusion` (before λ1, λ2;
    absent in phase 1) and `sides` (unweighted; absent when off)."""
    loss = sum(term.weighted for term in terms.values())
    parts = {"gt": sum(term.weighted for name, term in terms.items() if name.startswith("gt_"))}
    parts |= {name: terms[name].value for name in ("grad", "fusion", "sides") if name in terms}
    return loss, {name: value.detach() for name, value in parts.items()}
