"""The encoder shared by the low- and high-resolution depth maps (method.md §2).

A residual CNN stem (1/2, 1/4, 1/8) feeds a MiT-style hierarchical transformer
(SegFormer's Mix Transformer: overlapping patch embeddings, efficient self-attention
with spatially reduced keys/values, Mix-FFN) that continues from the stem's 1/4
feature down to 1/16, 1/32, 1/64 and 1/128. Written from the paper's description.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import NetworkConfig
from .precision import full_precision


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with about 8 channels per group: channels // 8 groups, or the nearest smaller
    count that divides `channels` (a width of 44 gets 4 groups of 11)."""
    groups = max(1, channels // 8)
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels)


class ResidualDownBlock(nn.Module):
    """Stride-2 residual block: conv–GN–LeakyReLU–conv–GN plus a shortcut.

    The shortcut average-pools before its 1×1 conv (ResNet-D) instead of striding the 1×1
    conv, so it sees every pixel.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, 2, 1, bias=False),
            group_norm(out_channels),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            group_norm(out_channels),
        )
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            group_norm(out_channels),
        )
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop a residual branch for whole samples during training."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - p)
    return x * keep / (1 - p)


class EfficientSelfAttention(nn.Module):
    """Multi-head self-attention whose keys/values come from a grid reduced `sr` times."""

    def __init__(self, dim: int, heads: int, sr: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.reduce = nn.Conv2d(dim, dim, sr, sr) if sr > 1 else None
        self.reduce_norm = nn.LayerNorm(dim) if sr > 1 else None

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        q = rearrange(self.q(x), "b n (h d) -> b h n d", h=self.heads)
        kv_source = x
        if self.reduce is not None:
            grid = rearrange(x, "b (y x) c -> b c y x", y=height, x=width)
            kv_source = self.reduce_norm(rearrange(self.reduce(grid), "b c y x -> b (y x) c"))
        k, v = rearrange(self.kv(kv_source), "b n (two h d) -> two b h n d", two=2, h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class MixFFN(nn.Module):
    """Linear – 3×3 depthwise conv – GELU – Linear; the conv gives tokens positional cues."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        grid = rearrange(self.fc1(x), "b (y x) c -> b c y x", y=height, x=width)
        hidden = rearrange(self.dwconv(grid), "b c y x -> b (y x) c")
        return self.fc2(F.gelu(hidden))


class MiTBlock(nn.Module):
    """Pre-norm transformer block of the Mix Transformer."""

    def __init__(self, dim: int, heads: int, sr: int, mlp_ratio: int, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = EfficientSelfAttention(dim, heads, sr)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = MixFFN(dim, dim * mlp_ratio)
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x), height, width), self.drop_path, self.training)
        return x + drop_path(self.ffn(self.norm2(x), height, width), self.drop_path, self.training)


class MiTStage(nn.Module):
    """Overlapping patch embedding (a strided conv), MiT blocks, final LayerNorm."""

    def __init__(self, in_channels, dim, patch, stride, heads, sr, depth, mlp_ratio, drop_paths):
        super().__init__()
        self.embed = nn.Conv2d(in_channels, dim, patch, stride, patch // 2)
        self.embed_norm = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(
            MiTBlock(dim, heads, sr, mlp_ratio, p) for p in drop_paths[:depth]
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.embed(x)
        height, width = grid.shape[-2:]
        tokens = self.embed_norm(rearrange(grid, "b c y x -> b (y x) c"))
        for block in self.blocks:
            tokens = block(tokens, height, width)
        return rearrange(self.norm(tokens), "b (y x) c -> b c y x", y=height, x=width)


class SharedEncoder(nn.Module):
    """Returns seven features, finest first: stem 1/2, 1/4, 1/8, then MiT 1/16 … 1/128.

    The stem opens with a plain strided conv (as ResNet's conv1): on a one-channel map at
    full resolution a residual block costs more than the rest of the stem and adds little.
    That conv runs in fp32 under autocast (see `forward`).
    """

    def __init__(self, config: NetworkConfig):
        super().__init__()
        c1, c2, c3 = config.stem_channels
        self.stem = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(1, c1, 3, 2, 1), nn.LeakyReLU(0.2, inplace=True)),
                ResidualDownBlock(c1, c2),
                ResidualDownBlock(c2, c3),
            ]
        )
        total = sum(config.depths)
        rates = torch.linspace(0, config.drop_path, total).tolist()
        inputs = (c2,) + tuple(config.embed_dims[:-1])
        # The first stage reads the 1/4 stem feature with a 7×7/4 patch embedding (→ 1/16).
        patches, strides = (7, 3, 3, 3), (4, 2, 2, 2)
        self.stages = nn.ModuleList()
        for i, dim in enumerate(config.embed_dims):
            start = sum(config.depths[:i])
            self.stages.append(
                MiTStage(
                    inputs[i], dim, patches[i], strides[i], config.num_heads[i],
                    config.sr_ratios[i], config.depths[i], config.mlp_ratio,
                    rates[start : start + config.depths[i]],
                )
            )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        # The first layer reads the normalised depth in fp32 even under autocast. Its 1/2
        # feature stays fp32 on the skip path to the output head, so fine depth steps reach
        # D0 intact.
        context, x = full_precision(x)
        with context:
            half = self.stem[0](x)
        quarter = self.stem[1](half)
        eighth = self.stem[2](quarter)
        features = [half, quarter, eighth]
        deep = quarter
        for stage in self.stages:
            deep = stage(deep)
            features.append(deep)
        return features
