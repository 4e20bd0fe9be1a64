"""Clip mode's temporal state: what one frame's refinement hands to the next (issue 27).

Per-frame refinement flickers for two reasons: each frame is put into its own low input's
scale and shift, which jump from frame to frame, and each frame's errors are drawn afresh.
`ClipState` answers both with O(1 frame) memory (decision 230):

1. Alignment. Frame t's network output is fitted robustly to the previous output (its
   least-squares affine fit, then refitted on the 80 % of pixels that fit best, so what moved
   does not pull the fit), and that fit is blended with the frame's own fit to its low input
   with weight `anchor`: the clip's scale and shift follow the inputs' slowly (a time constant
   of about 1 / `anchor` = 20 frames) instead of jumping with each frame's.
2. Gated blend. Where the aligned frame is within a few typical frame-to-frame changes of the
   previous output (and within `change_cap` of the frame's range: on a moving camera every
   pixel changes, and the typical change alone would let an edge's old place through,
   decision 323) and the frame has no edge within a pixel, the previous output is blended
   in; where it changed more (a moving edge, a disocclusion) or an edge is near, the gate
   closes and that pixel's own change is not blended, so edges are not dragged along behind
   their motion. The correction added is `hold` times the box mean (`smooth` of the longer
   side) of weight × (previous − frame) over the box mean of the weight (at least `floor`),
   the weight being the change gate squared times the edge gate: the weighted mean change of
   the still pixels around, so edges and moved pixels get the smooth flicker estimate of
   their neighbours, never their own change (decisions 335–337; squared, a pixel that
   changed by about the gate's scale weighs little even where such pixels fill the box, as
   after a fast move). Smoothed, it cannot move one side of a soft depth step and not the
   other, which made steps that flipped D³R's close pairs (decisions 300, 301).

The state is the previous output and a frame count, so a host can refine a clip of any length
in pieces and pass the state on: the pieces join as if the clip had been refined in one go.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from ..errors import InputError
from ..maps.alignment import align_to, fit_affine
from ..maps.box_mean import box_mean
from ..maps.normalise import robust_range

ANCHOR = 0.05
"""Weight of each frame's own low input in the clip's scale and shift."""
HOLD = 0.85
"""Share of the still neighbourhood's mean change (previous − frame) that is blended in: the
previous output's weight where the scene holds still."""
GATE = 5.0
"""A pixel's change, in units of the frame's typical change, at which its weight in the
blend's mean fades out."""
CHANGE_CAP = 0.05
"""The most the fade-out change may be, as a fraction of the frame's robust value range: a
moved edge is a step of several % of the range, so its change is not blended even when the
whole frame moves (decision 323)."""
DETAIL = 3.0
"""A pixel's 3×3 range in the current frame, in units of the frame's typical range, at which
its weight fades out: edges and their neighbours, moving or not, take their neighbours'
mean change instead of their own."""
SMOOTH = 17 / 256
"""Side of the box the blend's correction is averaged over, as a fraction of the frame's
longer side (17 px at 256, 85 at 1280)."""
FLOOR = 0.25
"""The least box mean of the weights the correction is divided by: where fewer of a box's
pixels pass (a large moving object), the correction fades instead of resting on a few."""
KEEP = 0.8
"""Fraction of pixels (the best-fitting) the robust fit to the previous output refits on."""
SAMPLES = 65536
"""Pixels a median or quantile of a frame is taken over."""


@dataclass
class ClipState:
    """The previous refined frame (H×W, in the clip's units) and the settings; starts empty.

    One `ClipState` per clip; a new clip (a cut) takes a new one.
    """

    anchor: float = ANCHOR
    hold: float = HOLD
    gate: float = GATE
    change_cap: float = CHANGE_CAP
    detail: float = DETAIL
    smooth: float = SMOOTH
    floor: float = FLOOR
    previous: torch.Tensor | None = field(default=None, repr=False)
    frames: int = 0

    def __post_init__(self) -> None:
        """Refuse a setting that would blend in NaN or nonsense, naming it."""
        rules = {"anchor": ("from 0 to 1", lambda v: 0 <= v <= 1),
                 "hold": ("from 0 to 1", lambda v: 0 <= v <= 1),
                 "gate": ("> 0", lambda v: v > 0),
                 "change_cap": ("> 0 (inf: no cap)", lambda v: v > 0),
                 "detail": ("> 0", lambda v: v > 0),
                 "smooth": ("≥ 0 and finite", lambda v: 0 <= v < math.inf),
                 "floor": ("above 0, at most 1", lambda v: 0 < v <= 1)}
        for name, (wanted, holds) in rules.items():
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, numbers.Real)
                    or not holds(value)):  # NaN fails every rule
                raise InputError(f"ClipState {name} {value!r}: must be a number {wanted}")

    def align(self, depth: torch.Tensor, low: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`depth` (1×H×W network output) in the clip's units: on the first frame its fit to
        `low` over `mask`, then mostly its robust fit to the previous output."""
        own = align_to(depth, low, mask)
        if self.previous is None or self.previous.shape != depth.shape[-2:]:
            return own
        chained = _robust_align(depth, self.previous[None])
        return self.anchor * own + (1 - self.anchor) * chained

    def blend(self, aligned: torch.Tensor) -> torch.Tensor:
        """`aligned` (1×H×W) with the previous output blended in where nothing changed, the
        correction a smoothed weighted mean; becomes the new previous output."""
        if self.previous is not None and self.previous.shape == aligned.shape[-2:]:
            change = (aligned[0] - self.previous).abs()
            low, high = robust_range(aligned)
            fade = _gate(change, self.gate, ceiling=self.change_cap * float(high - low))
            weight = fade**2 * _gate(_local_range(aligned[0]), self.detail)
            moved = _smoothed(weight * (self.previous - aligned[0]), self.smooth)
            share = _smoothed(weight, self.smooth).clamp_min(self.floor)
            aligned = (aligned[0] + self.hold * moved / share)[None]
        self.previous = aligned[0].detach().clone()
        self.frames += 1
        return aligned


def _gate(values: torch.Tensor, gate: float, ceiling: float = float("inf")) -> torch.Tensor:
    """1 where `values` are small against their median, fading to 0 at `gate` medians or at
    `ceiling`, whichever is smaller."""
    typical = _sample(values).median().clamp_min(torch.finfo(values.dtype).tiny)
    scale = torch.clamp(gate * typical, max=ceiling).clamp_min(torch.finfo(values.dtype).tiny)
    return torch.exp(-(values / scale) ** 2)


def _local_range(depth: torch.Tensor) -> torch.Tensor:
    """Max − min over each pixel's 3×3 neighbourhood (H×W): large at and beside edges.

    On the CPU OpenCV's dilate and erode take 3 ms at 720p where torch's pooling takes 70.
    """
    if depth.device.type == "cpu":
        values = depth.contiguous().numpy()
        return torch.from_numpy(cv2.dilate(values, _SQUARE) - cv2.erode(values, _SQUARE))
    maps = depth[None, None]
    highest = torch.nn.functional.max_pool2d(maps, 3, stride=1, padding=1)
    return (highest + torch.nn.functional.max_pool2d(-maps, 3, stride=1, padding=1))[0, 0]


_SQUARE = np.ones((3, 3), np.uint8)


def _smoothed(values: torch.Tensor, fraction: float) -> torch.Tensor:
    """`values` (H×W) averaged over a square of `fraction` of the longer side (odd, at most
    the shorter side), mirrored at the borders."""
    side = min(2 * int(fraction * max(values.shape) / 2) + 1,
               2 * ((min(values.shape) - 1) // 2) + 1)
    return values if side <= 1 else box_mean(values, side // 2)


def _robust_align(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Least-squares fit of `source` onto `target`, refitted on the `KEEP` best pixels; both
    fits on `SAMPLES` pixels, so they cost the same at any frame size."""
    source_sample, target_sample = _sample(source)[None], _sample(target)[None]
    scale, shift = fit_affine(source_sample, target_sample)
    residual = (source_sample * scale + shift - target_sample).abs()
    scale, shift = fit_affine(source_sample, target_sample,
                              residual <= torch.quantile(residual, KEEP))
    return source * scale + shift


def _sample(values: torch.Tensor) -> torch.Tensor:
    """About `SAMPLES` evenly strided values of a map: enough for a median or a quantile, and
    their cost does not grow with the frame."""
    return values.flatten()[:: max(1, values.numel() // SAMPLES)]
