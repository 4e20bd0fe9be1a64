"""fp32 islands under autocast, for the layers that touch depth values themselves.

Half precision keeps 8 (bf16) to 11 (fp16) bits: a full-range ramp 2048 px wide becomes a
staircase with a step every pixel or more, and ∇D0, G_S and Eq. 11 read the steps as edges.
The input layer and the output head therefore run in fp32; everything between them may run
in half precision.
"""

from __future__ import annotations

import contextlib

import torch


def full_precision(x: torch.Tensor) -> tuple[contextlib.AbstractContextManager, torch.Tensor]:
    """(context, x as fp32): inside the context autocast is off on x's device (a no-op on
    devices without autocast, such as `meta`, which the FLOP count uses)."""
    device = x.device.type
    if not torch.amp.is_autocast_available(device):
        return contextlib.nullcontext(), x.float()
    return torch.autocast(device, enabled=False), x.float()
