"""L_sides: near a true discontinuity, a pixel should lie on one of its two sides.

L_gt's absolute term is linear between the two sides of an edge, so a pixel whose side the
network is unsure of costs the same anywhere between them, and its pull towards either side
is weak: the network draws ramps, which a mesh turns into rubber sheets. This term charges
each pixel in the band around a true discontinuity its distance to the nearer side, in the
same scale-and-shift-normalised units as L_gt, with the sides and the band read from the
ground truth exactly as the flying-pixel rule reads them (`sddr_core.evaluation.boundaries`:
4-neighbours differing by a factor of at least 1.1, pixels within 3 px, the sides the
nearest and farthest truth of the 7×7 neighbourhood; the truth at the pixel counts as a side
too, so a slope inside the band costs nothing). Which side is L_gt's business; this term only
asks for one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sddr_core.evaluation.boundaries import REACH, STEP

from .grids import fp32, on_prediction_grid
from .ground_truth import normalise


def discontinuity_band(target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """B×H×W bool: valid pixels whose 7×7 window holds both pixels of a pair of valid
    4-neighbours whose magnitudes differ by a factor of at least STEP: the evaluation's band
    (`sddr_core.evaluation.boundaries.discontinuity_band`), on a target of either sign."""
    magnitude = target.abs()
    band = torch.zeros_like(mask)
    for dim in (1, 2):
        ahead = magnitude.narrow(dim, 1, magnitude.shape[dim] - 1)
        behind = magnitude.narrow(dim, 0, magnitude.shape[dim] - 1)
        both = mask.narrow(dim, 1, mask.shape[dim] - 1) & mask.narrow(dim, 0, mask.shape[dim] - 1)
        pairs = (both & (torch.maximum(ahead, behind) >= STEP * torch.minimum(ahead, behind)))
        # A pair at first pixel p is in the window of c when p − REACH + 1 ≤ c ≤ p + REACH
        # along `dim`, and within REACH across it.
        along = (REACH, REACH) if dim == 2 else (0, 0)
        down = (REACH, REACH) if dim == 1 else (0, 0)
        padded = F.pad(pairs[:, None].float(), (*along, *down))
        kernel = (2 * REACH if dim == 1 else 2 * REACH + 1,
                  2 * REACH if dim == 2 else 2 * REACH + 1)
        padding = (0 if dim == 1 else REACH, 0 if dim == 2 else REACH)
        band |= F.max_pool2d(padded, kernel, stride=1, padding=padding)[:, 0] > 0
    return band & mask


def side_loss(prediction: torch.Tensor, target: torch.Tensor,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per image, Σ over the band of min(|p − upper|, |p − lower|, |p − truth|) / 2M (M
    valid pixels, the scale of L_gt's absolute term), where upper and lower are the 7×7
    window's extreme truths and every map is normalised as L_gt normalises it; the mean over
    the batch. 0 for a map whose every band pixel sits on a side.

    Examples
    --------
    >>> truth = torch.ones(1, 8, 8); truth[:, :, 4:] = 2.0
    >>> float(side_loss(truth, truth))
    0.0
    >>> ramp = truth.clone(); ramp[:, :, 4] = 1.5
    >>> float(side_loss(ramp, truth)) > 0
    True
    """
    with fp32(prediction):
        prediction, target, valid = on_prediction_grid(prediction, target, mask)
        band = discontinuity_band(target, valid)
        p, t = normalise(prediction, valid), normalise(target, valid)
        window = 2 * REACH + 1
        upper = F.max_pool2d(torch.where(valid, t, -torch.inf)[:, None], window, stride=1,
                             padding=REACH)[:, 0]
        lower = -F.max_pool2d(torch.where(valid, -t, -torch.inf)[:, None], window, stride=1,
                              padding=REACH)[:, 0]
        distance = torch.minimum(torch.minimum((p - upper).abs(), (p - lower).abs()),
                                 (p - t).abs())
        distance = torch.where(band, distance, torch.zeros_like(distance))
        count = valid.flatten(1).sum(1).clamp_min(1)
        return (distance.flatten(1).sum(1) / (2 * count)).mean()
