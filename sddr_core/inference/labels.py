"""G_S pseudo-labels for a batch of training samples (method.md §3.1).

Self-distillation regenerates its labels with the current N_r ("when depth maps are better
refined, the labels also become more noise-free"), so a refresh must be cheap and must not
disturb the model being trained. `edge_labels` runs the same coarse-to-fine steps as two-stage
inference, batched across samples and windows, without gradients, and takes the predictor's
outputs from a cache where the data pipeline has one (predictor runs cost far more than N_r).
The caller's network comes back as it was: the `Refiner` wrapped around it switches it to
eval mode only for each pass and changes nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..network.model import RefinementNetwork
from ..predictors.base import DepthPredictor
from .coarse_to_fine import CoarseToFine, Estimate
from .edges import initial_edges
from .refiner import Refiner
from .windows import STEPS

Map = np.ndarray | torch.Tensor


@dataclass
class LabelSample:
    """One training image, as far as its labels go.

    `low`, `high`: the whole image's predictions N_d(L) at r̂ and N_d(H) at Eq. 11's
    resolution (any sizes); `window_highs[s − 1][k]`: the prediction of window k of step s
    (`windows.step_windows`) at its Eq. 11 resolution (any size: training keeps them on the
    window's grid, made as its whole-image inputs were). What is not cached is predicted from
    `image` (H×W×3 uint8) by the predictor given to `edge_labels`. `size`: (H, W) of the
    labels, by default the image's, else the high prediction's.
    """

    low: Map | None = None
    high: Map | None = None
    window_highs: Sequence[Sequence[Map]] | None = None
    image: np.ndarray | None = None
    size: tuple[int, int] | None = None


@torch.no_grad()
def edge_labels(
    model: RefinementNetwork | Refiner,
    samples: Sequence[LabelSample],
    steps: int = STEPS,
    predictor: DepthPredictor | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(D_S, G_S) of each sample: H×W float32 tensors on the network's device.

    Parameters
    ----------
    model : RefinementNetwork or Refiner
        N_r. A bare network runs in fp32 on its own device and is left exactly as it was
        (training flags, parameters, memory format, requires_grad).
    samples : sequence of LabelSample
    steps : int
        S, the coarse-to-fine steps (the paper's labels use S = 3).
    predictor : DepthPredictor, optional
        Makes the predictions a sample does not carry.

    Raises
    ------
    InputError
        A sample lacks a prediction and there is no image and predictor to make it.
    """
    refiner = model if isinstance(model, Refiner) else Refiner(
        model, device=next(model.parameters()).device, dtype="fp32")
    run = CoarseToFine(refiner, predictor)
    pairs = []
    for index, sample in enumerate(samples):
        low, high = sample.low, sample.high
        if low is None or high is None:
            if sample.image is None or predictor is None:
                raise InputError(f"samples[{index}]: give its low and high predictions, or "
                                 "its image and a predictor")
            low, high = run.whole_image_inputs(sample.image)
        size = sample.size or (sample.image.shape[:2] if sample.image is not None
                               else np.shape(high)[-2:])
        pairs.append((low, high, size))
    estimates = [Estimate(depth, initial_edges(depth), sample.image, sample.window_highs)
                 for depth, sample in zip(run.first_passes(pairs), samples, strict=True)]
    run.refine_steps(estimates, steps)
    return [(estimate.depth, estimate.edges) for estimate in estimates]
