"""Cross-resolution attention over both inputs' deepest features (method.md §2.1, Eq. 12).

`F_in = Stack(F_low, F_high) + PE_x + PE_y + PE_f`: the tokens of both maps form one
sequence, so every low-res location can attend to every high-res one and back.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def sine_position_encoding(height: int, width: int, dim: int, like: torch.Tensor) -> torch.Tensor:
    """(height·width, dim) encoding: PE_y in the first half of the channels, PE_x in the second.

    Coordinates are normalised to [0, 2π] so the same encoding serves every working size
    and aspect ratio. `dim` must be a multiple of 4 (a sin and a cos per frequency per axis).
    """
    quarter = dim // 4
    freqs = 10000.0 ** (-torch.arange(quarter, device=like.device, dtype=torch.float32) / quarter)
    ys = (torch.arange(height, device=like.device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=like.device, dtype=torch.float32) + 0.5) / width
    ay = ys[:, None] * 2 * math.pi * freqs * quarter
    ax = xs[:, None] * 2 * math.pi * freqs * quarter
    pe_y = torch.cat([ay.sin(), ay.cos()], dim=1)[:, None, :].expand(height, width, 2 * quarter)
    pe_x = torch.cat([ax.sin(), ax.cos()], dim=1)[None, :, :].expand(height, width, 2 * quarter)
    return torch.cat([pe_y, pe_x], dim=2).reshape(height * width, 4 * quarter).to(like.dtype)


class TransformerLayer(nn.Module):
    """Pre-norm multi-head self-attention plus MLP, both residual: `Softmax(KᵀQ/√d)V + F_in`."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(
            self.qkv(self.norm1(x)), "b n (three h d) -> three b h n d", three=3, h=self.heads
        )
        attended = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(rearrange(attended, "b h n d -> b n (h d)"))
        return x + self.mlp(self.norm2(x))


class CrossResolutionAttention(nn.Module):
    """Joint attention over the low- and high-res deepest features; returns both, updated.

    The result of the layers is projected and added back to each branch's feature, so the
    encoder features pass through and the attention only adds what the other map tells.
    """

    def __init__(self, dim: int, heads: int, layers: int, level_embedding: bool):
        super().__init__()
        if dim % 4:
            raise ValueError(f"cross-attention width must be a multiple of 4, got {dim}")
        self.level = nn.Parameter(torch.zeros(2, dim)) if level_embedding else None
        self.layers = nn.ModuleList(TransformerLayer(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, dim)

    def forward(
        self, low: torch.Tensor, high: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _, dim, height, width = low.shape
        grid = torch.stack([low, high], dim=1)  # b, 2, c, y, x
        tokens = rearrange(grid, "b m c y x -> b m (y x) c")
        tokens = tokens + sine_position_encoding(height, width, dim, tokens)
        if self.level is not None:
            tokens = tokens + self.level[None, :, None, :].to(tokens.dtype)
        x = rearrange(tokens, "b m n c -> b (m n) c")
        for layer in self.layers:
            x = layer(x)
        update = rearrange(
            self.out(self.norm(x)), "b (m y x) c -> b m c y x", m=2, y=height, x=width
        )
        return low + update[:, 0], high + update[:, 1]
