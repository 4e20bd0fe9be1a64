"""SDDR's training losses (method.md §4): L_gt, L_grad, L_fusion, our L_sides, their weighted
sum, and how hard each term pulls at the network's output."""

from .balance import gradient_shares, output_gradient_norms
from .fusion import fusion_loss
from .gradient import grad_loss
from .ground_truth import gt_loss
from .regions import edge_regions
from .sides import side_loss
from .total import LossOptions, LossWeights, Term, combine, loss_terms

__all__ = ["LossOptions", "LossWeights", "Term", "combine", "edge_regions", "fusion_loss",
           "grad_loss", "gradient_shares", "gt_loss", "loss_terms", "output_gradient_norms",
           "side_loss"]
