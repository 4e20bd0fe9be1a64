"""When a map operation may run in OpenCV instead of torch: on the CPU, in float32, with no
gradient wanted. OpenCV's box filter, dilation and erosion cost about the same per pixel
whatever the window (decision 291), where torch's grow with it."""

from __future__ import annotations

import numpy as np
import torch


def opencv_maps(maps: torch.Tensor) -> np.ndarray | None:
    """`maps` (…×H×W) as a contiguous N×H×W float32 array for OpenCV, or None where torch must
    do the work (another device or dtype, or a gradient wanted)."""
    if maps.device.type != "cpu" or maps.dtype != torch.float32 or (
            torch.is_grad_enabled() and maps.requires_grad):
        return None
    return maps.detach().reshape(-1, *maps.shape[-2:]).contiguous().numpy()
