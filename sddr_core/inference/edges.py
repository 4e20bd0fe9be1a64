"""The depth-edge labels: G0 from the one-stage depth, and Eq. 6 for each window.

G0 = ∇D0, bilateral-filtered (method.md §3.1): the filter should smooth the noise of flat
regions and keep edges. A bilateral filter does that only when its range σ sits below the edge
gradients; a fixed σ above them makes it a plain Gaussian. So σ is read off the map itself:
half the gradient that marks its strongest edges (the released code calls the top 6 % of
|Sobel| edges). A neighbour across such an edge then weighs at most e⁻² ≈ 0.14.

Eq. 6 maps each refined window's gradient onto the previous label by a least-squares scale and
shift. A fit with scale ≤ 0 would turn edges into troughs, so that window keeps G_{s−1}; and
since an edge map holds magnitudes, G stays ≥ 0.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ..maps.alignment import fit_affine
from ..maps.gradients import sobel_magnitude

EDGE_QUANTILE = 0.94
"""Gradients above this quantile are the map's edges (the released code's top 6 %)."""
EDGE_FILTER = {"d": 5, "sigmaSpace": 2.0}
"""Bilateral filter of G0: 5 px wide; its range σ is half the EDGE_QUANTILE gradient."""


def initial_edges(depth: torch.Tensor) -> torch.Tensor:
    """G0 of D0 (H×W): ∇D0 in D0's range, edge-preservingly filtered; same device."""
    gradient = sobel_magnitude(depth[None].float())[0]
    values = gradient.cpu().numpy()
    strong = values[values > 0]
    if strong.size == 0:  # a flat map has no edges to keep or noise to smooth
        return gradient
    sigma = 0.5 * float(np.quantile(strong, EDGE_QUANTILE))
    filtered = cv2.bilateralFilter(values, sigmaColor=sigma, **EDGE_FILTER)
    return torch.from_numpy(filtered).to(depth.device)


def align_edges(refined: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """Eq. 6 for a batch of windows: ∇ of each refined window (N×h×w), fitted by
    β1·∇D + β0 to its crop of G_{s−1} (`previous`, N×h×w); where β1 ≤ 0 the crop of
    G_{s−1} is kept. Clipped at 0."""
    gradient = sobel_magnitude(refined.float())
    scale, shift = fit_affine(gradient, previous)
    aligned = gradient * scale[:, None, None] + shift[:, None, None]
    kept = torch.where((scale > 0)[:, None, None], aligned, previous)
    return kept.clamp_min(0.0)
