"""The refinement network N_r: D0, Ω = N_r(N_d(L), N_d(H)) (method.md §2).

Both depth maps go through one shared encoder (as one batch), meet in the
cross-resolution attention, and are fused level by level by the decoder.
No RGB input, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..maps.alignment import fit_affine
from ..maps.guided_filter import guided_filter
from ..maps.row_bands import in_row_bands
from .config import NetworkConfig
from .cross_attention import CrossResolutionAttention
from .decoder import FullResolutionHead, FusionDecoder
from .encoder import SharedEncoder
from .precision import full_precision
from .step_head import StepHead


@dataclass
class NetworkOutput:
    depth: torch.Tensor
    """D0, B×1×H×W, in the normalised units of the inputs."""
    omegas: list[torch.Tensor]
    """Ω of each decoder level, finest (1/2) first; 1 means "trust the high-res input"."""
    aux: dict[str, torch.Tensor] = field(default_factory=dict)
    """Deep-supervision depths `half` (1/2) and `quarter` (1/4), only when asked for."""


class RefinementNetwork(nn.Module):
    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        self.encoder = SharedEncoder(config)
        deepest = config.embed_dims[-1]
        self.cross_attention = CrossResolutionAttention(
            deepest, config.cross_attention_heads, config.cross_attention_layers,
            config.level_embedding,
        )
        self.decoder = FusionDecoder(
            list(config.stem_channels) + list(config.embed_dims), config.upsample_mode
        )
        self.full_resolution_head = (FullResolutionHead(config.full_resolution_head)
                                     if config.full_resolution_head else None)
        self.step_head = (StepHead(config.step_head, config.step_head_radii)
                          if config.step_head else None)
        self.apply(_init_weights)

    def forward(self, low: torch.Tensor, high: torch.Tensor, with_aux: bool = False):
        """`low`, `high`: B×1×H×W normalised depth, H and W multiples of `config.stride`."""
        stride = self.config.stride
        if low.shape != high.shape or low.shape[1] != 1 or low.shape[-1] % stride or (
            low.shape[-2] % stride
        ):
            raise ValueError(
                f"network inputs must both be B×1×H×W with H, W multiples of {stride}; "
                f"got low {tuple(low.shape)} and high {tuple(high.shape)}"
            )
        batch = low.shape[0]
        features = self.encoder(torch.cat([low, high]))
        low_features = [f[:batch] for f in features]
        high_features = [f[batch:] for f in features]
        low_features[-1], high_features[-1] = self.cross_attention(
            low_features[-1], high_features[-1]
        )
        depth, omegas, aux = self.decoder(low_features, high_features, with_aux)
        if self.config.residual:
            depth = high + depth
            if self.full_resolution_head is not None:
                depth = self.full_resolution_head(depth, high)
            if self.config.correction_filter_radius:
                depth = self._filtered(depth, high)
            if self.step_head is not None:  # last: a filter would spread its steps again
                for _ in range(self.config.step_head_passes):
                    depth = self.step_head(depth, high)
            aux = {name: F.avg_pool2d(high, high.shape[-1] // correction.shape[-1]) + correction
                   for name, correction in aux.items()}
        return NetworkOutput(depth, omegas, aux)

    def _filtered(self, depth: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """D0 with its correction made to follow the high input's edges
        (`correction_filter_radius`), in fp32.

        D0's scale is free (the losses and the `Refiner` fit it), so the decoded map also holds
        an affine copy of the high input, often larger than the correction proper. That part is
        fitted out first and kept as it is: the guided filter reproduces a multiple of its own
        guide only where the guide varies well above ε, and would blur it elsewhere. Two numbers
        need no more than every fourth row and column for their fit (a sixteenth of the cost).
        """
        context, depth = full_precision(depth)
        with context:
            high = high.float()
            scale, shift = (fitted.view(-1, 1, 1, 1) for fitted in
                            fit_affine(high[..., ::4, ::4], depth[..., ::4, ::4]))
            radius, eps = self.config.correction_filter_radius, self.config.correction_filter_eps

            def corrected(depth: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
                trend = scale * high + shift
                return trend + guided_filter(depth - trend, high, radius, eps)

            # a guided filter's output depends on the rows within twice its radius
            return in_row_bands(corrected, (depth, high), 2 * radius)

    def flops(self, height: int, width: int) -> int:
        """FLOPs (2 per multiply-add of convolutions, linear layers and attention, both
        branches) of one inference pass on a height×width input, counted by torch."""
        x = torch.zeros((1, 1, height, width), device=next(self.parameters()).device)
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            self(x, x)
        return counter.get_total_flops()


def _init_weights(module: nn.Module) -> None:
    """Linear layers trunc-normal(0.02) as in SegFormer; convs keep PyTorch's default."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
