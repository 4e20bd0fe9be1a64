"""Decoder with adaptive weight allocation (method.md §2.1, Eq. 8).

Going from the deepest level up, each level predicts a one-channel soft mask Ω from the
running feature r, fuses the two branches' skip features as `(1 − Ω)·F_low + Ω·F_high`
(Ω = 1 trusts the high-resolution prediction, i.e. edges), adds the fused feature to r
(the feature-fusion step) and up-samples r to the next level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .encoder import group_norm
from .precision import full_precision


class UpBlock(nn.Module):
    """GroupNorm → ×2 up-sampling → conv → LeakyReLU (none on output heads)."""

    def __init__(self, in_channels: int, out_channels: int, mode: str, activate: bool = True):
        super().__init__()
        self.norm = group_norm(in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.mode = mode
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.norm(x), scale_factor=2, mode=self.mode, align_corners=False)
        x = self.conv(x)
        return F.leaky_relu(x, 0.2, inplace=True) if self.activate else x


class SubPixelOutput(nn.Module):
    """Full-resolution depth from the 1/2 feature: GroupNorm → conv to 4 channels → PixelShuffle.

    Each 1/2-res pixel predicts its 2×2 full-res children, so the output keeps full-res
    detail without up-sampling the feature map first (4× less memory traffic on CPU).

    It runs in fp32 even under autocast (`precision.py`): D0 is the refined depth itself.
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.norm = group_norm(in_channels)
        self.conv = nn.Conv2d(in_channels, 4, 3, 1, 1)
        self._init_as_bilinear()

    @torch.no_grad()
    def _init_as_bilinear(self) -> None:
        """ICNR with bilinear phases: the four sub-pixel kernels start as one 1×1 projection
        times the bilinear ×2 weights of their phase, so at initialisation the layer equals
        project-then-bilinear-up-sample and D0 holds no 2×2 pattern (with independent kernels
        each phase has its own offset and slope, a checkerboard that self-distillation would
        learn back from ∇D0). Training is then free to make the phases differ."""
        taps = torch.tensor([[0.25, 0.75, 0.0], [0.0, 0.75, 0.25]])  # row/column offset 0, 1
        phases = torch.stack([torch.outer(taps[i], taps[j]) for i in (0, 1) for j in (0, 1)])
        bound = self.conv.in_channels ** -0.5  # PyTorch's default bound for a 1×1 conv
        projection = torch.empty(self.conv.in_channels).uniform_(-bound, bound)
        self.conv.weight.copy_(phases[:, None] * projection[None, :, None, None])
        self.conv.bias.fill_(float(torch.empty(()).uniform_(-bound, bound)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context, x = full_precision(x)
        with context:
            return F.pixel_shuffle(self.conv(self.norm(x)), 2)


class FullResolutionHead(nn.Module):
    """A correction of D0 from D0 and the high input at full resolution: three 3×3 convs
    with dilations 1, 2, 4 (a 15-px field, wider than the simulated predictors' ~4-px edge
    blur), so a ramp's exact pixels are seen, which the 1/2-resolution decoder cannot.

    The last conv starts at zero, so a network gains the head without changing its output
    (training starts from, and can be initialised with, weights trained without it). fp32, as
    D0 itself.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.convs = nn.ModuleList([
            nn.Conv2d(2, channels, 3, padding=1),
            nn.Conv2d(channels, channels, 3, padding=2, dilation=2),
            nn.Conv2d(channels, 1, 3, padding=4, dilation=4),
        ])
        nn.init.zeros_(self.convs[-1].weight)
        nn.init.zeros_(self.convs[-1].bias)

    def forward(self, depth: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        context, depth = full_precision(depth)
        with context:
            x = torch.cat([depth, high.float()], dim=1)
            for conv in self.convs[:-1]:
                x = F.leaky_relu(conv(x), 0.2)
            return depth + self.convs[-1](x)


class OmegaHead(nn.Module):
    """Predicts the regional soft mask Ω ∈ [0, 1] of one decoder level."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.conv = nn.Conv2d(channels, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(self.norm(x)))


class FusionDecoder(nn.Module):
    """Fuses the two branches' features, finest first `channels` = widths at 1/2 … 1/128."""

    def __init__(self, channels: list[int], upsample_mode: str):
        super().__init__()
        mode = upsample_mode
        self.bottom = UpBlock(channels[-1], channels[-2], mode)
        levels = range(len(channels) - 1)  # 1/2 … 1/64
        self.omega_heads = nn.ModuleList(OmegaHead(channels[k]) for k in levels)
        self.ups = nn.ModuleList(
            UpBlock(channels[k], channels[k - 1], mode) if k else SubPixelOutput(channels[0])
            for k in levels
        )
        # Deep supervision (training only): depth at 1/4 from level 1/8, at 1/2 from level 1/4.
        self.aux_quarter = UpBlock(channels[2], 1, mode, activate=False)
        self.aux_half = UpBlock(channels[1], 1, mode, activate=False)

    def forward(
        self, low: list[torch.Tensor], high: list[torch.Tensor], with_aux: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor]]:
        r = self.bottom(low[-1] + high[-1])
        omegas: list[torch.Tensor] = []
        aux: dict[str, torch.Tensor] = {}
        for k in reversed(range(len(self.ups))):
            omega = self.omega_heads[k](r)
            omegas.insert(0, omega)
            # (1 − Ω)·F_low + Ω·F_high, in the skip's precision (fp32 at 1/2, see encoder)
            r = r + torch.lerp(low[k], high[k], omega.to(low[k].dtype))
            if with_aux and k == 2:
                aux["quarter"] = self.aux_quarter(r)
            if with_aux and k == 1:
                aux["half"] = self.aux_half(r)
            r = self.ups[k](r)
        return r, omegas, aux
