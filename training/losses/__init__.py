"""SDDR's training losses (method.md §4): L_gt, L_grad, L_fusion and their weighted sum."""

from .fusion import fusion_loss
from .gradient import grad_loss
from .ground_truth import gt_loss
from .regions import edge_regions
from .total import LossOptions, LossWeights, total_loss

__all__ = ["LossOptions", "LossWeights", "edge_regions", "fusion_loss", "grad_loss", "gt_loss",
           "total_loss"]
