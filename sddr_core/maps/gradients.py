"""The paper's ∇: depth gradient magnitude, one definition for G_S, Eq. 11 and the losses.

The paper leaves ∇ unspecified; the released code uses a 3×3 Sobel with magnitude
|g_x| + |g_y| (method.md §4.1). Dividing by 8 (the Sobel kernel's weight) and by the map's value
range makes it the per-pixel change as a fraction of the range, comparable across maps.

`sobel_magnitude` is the definition: torch, batched, differentiable, on any device, so the
labels (G_S), the adaptive resolution (Eq. 11) and the training loss L_grad all agree. The
numpy functions below are conveniences over it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def sobel_magnitude(
    maps: torch.Tensor, value_range: float | torch.Tensor | None = None
) -> torch.Tensor:
    """(|Sobel_x| + |Sobel_y|) / 8 of each map, divided by its value range.

    Parameters
    ----------
    maps : torch.Tensor
        (B, H, W) or (B, 1, H, W) depth maps, floating point; borders are replicated.
    value_range : float or torch.Tensor of shape (B,), optional
        What a change of 1.0 per pixel is measured against; default: each map's own
        max − min (a flat map gives 0 everywhere).

    Returns
    -------
    torch.Tensor
        The magnitudes, same shape, dtype and device as `maps`; differentiable.
    """
    channel = maps.ndim == 4
    stack = maps if channel else maps[:, None]
    p = F.pad(stack, (1, 1, 1, 1), mode="replicate")
    # The separable Sobel as shifted sums: a 1-channel conv2d's backward pass is several
    # times slower on CPU (oneDNN), and this costs the same on a GPU.
    rows = p[..., :-2, :] + 2 * p[..., 1:-1, :] + p[..., 2:, :]  # [1 2 1] down the columns
    cols = p[..., :, :-2] + 2 * p[..., :, 1:-1] + p[..., :, 2:]  # [1 2 1] along the rows
    grad_x = rows[..., :, 2:] - rows[..., :, :-2]
    grad_y = cols[..., 2:, :] - cols[..., :-2, :]
    magnitude = (grad_x.abs() + grad_y.abs()) / 8.0
    if value_range is None:
        flat = maps.reshape(maps.shape[0], -1)
        value_range = flat.amax(dim=1) - flat.amin(dim=1)
    scale = torch.as_tensor(value_range, dtype=maps.dtype, device=maps.device)
    scale = scale.clamp_min(1e-12).reshape(-1, 1, 1, 1)
    magnitude = magnitude / scale
    return magnitude if channel else magnitude[:, 0]


def gradient_magnitude(depth: np.ndarray, value_range: float | None = None) -> np.ndarray:
    """`sobel_magnitude` of one H×W numpy map, as float32."""
    tensor = torch.from_numpy(np.asarray(depth, dtype=np.float32))[None]
    return sobel_magnitude(tensor, value_range)[0].numpy()


def mean_gradient(depth: np.ndarray, value_range: float | None = None) -> float:
    """Mean of `gradient_magnitude`: how much edge content a map (or a window of it) holds."""
    return float(gradient_magnitude(depth, value_range).mean())
