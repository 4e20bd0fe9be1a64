"""Spotting depth maps that lost their values before they reached us: clipped or quantised.

A 16-bit depth PNG read by an 8-bit image loader comes out with nearly every pixel at the
top value; a map that went through a few-level encoding keeps only a handful of values.
Either still refines without an error, into a flat or terraced result, so a host shows the
sentence `damaged_levels` returns to the user instead of failing silently.
"""

from __future__ import annotations

import torch

CLIPPED_FRACTION = 0.9
"""Share of a map's finite pixels at its minimum or at its maximum value above which it is
called clipped. A real scene can have large flat regions at one end (a sky through an 8-bit
encoding: about half the picture at most), never nine tenths of it."""
FEW_LEVELS = 16
"""Number of distinct values at or below which a map is called quantised. An 8-bit map
(up to 256 values, what most depth nodes output) is not flagged: it refines well."""
SAMPLE_PIXELS = 1 << 16
"""Distinct values are first counted on an even subsample of about this many pixels; only
a map whose subsample has few values is counted in full."""


def damaged_levels(maps: torch.Tensor, name: str) -> str | None:
    """A sentence naming `name`'s first frame of a B×H×W stack that is clipped (most pixels at
    its minimum or maximum) or has at most FEW_LEVELS distinct values, or None if none is.

    Non-finite pixels are left out; a frame without finite values is someone else's error.
    """
    flagged = [(index, _problem(frame[torch.isfinite(frame)])) for index, frame in
               enumerate(maps.detach().to("cpu", torch.float32).reshape(maps.shape[0], -1))]
    flagged = [(index, problem) for index, problem in flagged if problem]
    if not flagged:
        return None
    index, problem = flagged[0]
    more = f" (and {len(flagged) - 1} more of {len(maps)} frames)" if len(flagged) > 1 else ""
    return (f"{name}: frame {index}{more} {problem}: its depth was clipped or quantised "
            "before it got here, and the refined depth will be flat or stepped")


def _problem(values: torch.Tensor) -> str | None:
    """What is wrong with one map's finite values, or None."""
    if values.numel() == 0:
        return None
    for end, value in (("maximum", values.max()), ("minimum", values.min())):
        share = (values == value).float().mean().item()
        if share > CLIPPED_FRACTION:
            return f"has {share:.2%} of its pixels at its {end} value {value.item():g}"
    sample = values[:: max(1, values.numel() // SAMPLE_PIXELS)]
    if len(torch.unique(sample)) <= FEW_LEVELS:
        levels = len(torch.unique(values))
        if levels <= FEW_LEVELS:
            return f"has only {levels} distinct values"
    return None
