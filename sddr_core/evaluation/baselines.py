"""Classical answers to the same fusion problem, so a refiner's score means something.

`low` is the low-resolution prediction up-sampled (bicubic); `high` the high-resolution
prediction resized to the output; `guided` is GBDF's training target: the low prediction
guided-filtered with the high one as guide, so high's edges carry low's structure.
"""

from __future__ import annotations

import numpy as np
import torch

from ..maps.guided_filter import guided_filter
from ..maps.resample import resize_maps

GUIDED_EPS = 1e-6
"""Regulariser of the guided filter on [0, 1]-normalised maps (see docs/decisions.md)."""


def resize_prediction(prediction: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`prediction` at `size` (H, W): bicubic when growing, anti-aliased when shrinking."""
    tensor = torch.from_numpy(np.ascontiguousarray(prediction, dtype=np.float32))[None]
    return resize_maps(tensor, size, mode="bicubic")[0].numpy()


def guided_fusion(low: np.ndarray, high: np.ndarray, size: tuple[int, int],
                  eps: float = GUIDED_EPS) -> np.ndarray:
    """Low filtered with high as guide at `size`, in low's units (GBDF radius: H/12 − 1)."""
    low_up = resize_prediction(low, size).astype(np.float64)
    guide = resize_prediction(high, size).astype(np.float64)
    lo, hi = low_up.min(), low_up.max()
    source = (low_up - lo) / max(hi - lo, 1e-12)
    guide = (guide - guide.min()) / max(guide.max() - guide.min(), 1e-12)
    radius = max(1, size[0] // 12 - 1)
    fused = guided_filter(*(torch.from_numpy(x)[None, None] for x in (source, guide)),
                          radius, eps)[0, 0].numpy()
    return (fused * (hi - lo) + lo).astype(np.float32)

