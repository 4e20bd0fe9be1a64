"""A head that turns D0's ramps into steps: each pixel is pulled towards local extremes.

A network trained by regression draws an edge whose position it is unsure of as a ramp (the
mean of the steps it finds plausible), and a ramp is what users see as outlines and rubber
sheets. A toggle operator (each ramp pixel takes the nearer of its window's maximum and
minimum) makes steps, but a fixed toggle also terraces slopes and misplaces edges. This head
learns the move: from a small dilated convolution stack that sees where D0 and the high input
sit between their local extremes, it pulls each pixel towards D0's maximum and minimum over
square windows of a few radii, and keeps the result within the widest window's extremes. A
pixel moved all the way takes a value D0 already holds on one side, so a ramp can become a
one-pixel step (decision 320).

It reads only positions between local extremes and the local spans, and starts silent (the
pulls are zero at initialisation), so a network gains the head without changing its output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..maps.row_bands import in_row_bands
from ..maps.window_extremes import window_extremes
from .precision import full_precision

DILATIONS = (1, 2, 4, 8)
"""Dilations of the 3×3 convolutions: a 31-px field."""
SPAN_FLOOR = 1e-3
"""Added to a window's span before dividing by it (inputs are normalised to about [0, 1])."""


class StepHead(nn.Module):
    """D0 ← D0 + Σ_r a_r (max_r D0 − D0) + b_r (min_r D0 − D0), kept between the widest
    window's extremes; the pulls a_r, b_r are zero at initialisation."""

    def __init__(self, channels: int, radii: tuple[int, ...]):
        """`radii`: the windows' radii, widest last (`NetworkConfig.step_head_radii`)."""
        super().__init__()
        self.radii = tuple(radii)
        features = 4 * len(radii)  # D0's and the high input's position and span per radius
        widths = [features] + [channels] * len(DILATIONS)
        self.convs = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], 3, padding=d, dilation=d)
            for i, d in enumerate(DILATIONS)
        )
        self.pulls = nn.Conv2d(channels, 2 * len(radii), 1)
        nn.init.zeros_(self.pulls.weight)
        nn.init.zeros_(self.pulls.bias)

    def forward(self, depth: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        context, depth = full_precision(depth)
        with context:
            high = high.float()
            # the widest window, then the convolutions' field: every row a row depends on
            margin = max(self.radii) + sum(DILATIONS)
            return in_row_bands(self._stepped, (depth, high), margin)

    def _stepped(self, depth: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """The head on fp32 maps (B×1×H×W)."""
        offsets, features = [], []
        for radius in self.radii:
            top, bottom = window_extremes(depth, radius)
            high_top, high_bottom = window_extremes(high, radius)
            offsets += [top - depth, bottom - depth]
            features += [_position(depth, top, bottom), top - bottom,
                         _position(high, high_top, high_bottom), high_top - high_bottom]
        x = torch.cat(features, dim=1)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2, inplace=True)
        pulls = self.pulls(x)  # unbounded: a clamp at zero would let a pull die there
        moved = depth + (pulls * torch.cat(offsets, dim=1)).sum(dim=1, keepdim=True)
        kept = torch.minimum(torch.maximum(moved, bottom), top)  # the widest radius's
        # the bounds pass gradients straight through: a pixel pulled past them would
        # otherwise get none, and could never come back (a step stuck pixels off its edge)
        return kept.detach() + (moved - moved.detach())  # the value is `kept`, exactly


def _position(value: torch.Tensor, top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
    """Where `value` sits between its window's minimum (−1) and maximum (+1); 0 when flat."""
    return (2 * value - top - bottom) / (top - bottom + SPAN_FLOOR)
