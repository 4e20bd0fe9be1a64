"""Architecture configuration of the refinement network N_r, and its named presets.

A config is plain data: it is stored as JSON in every weights file, so a file alone
rebuilds its model (see `weights.py`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from ..errors import InputError, WeightsError


@dataclass(frozen=True)
class NetworkConfig:
    """Sizes of every part of N_r. Field docs give the paper's (base) values."""

    stem_channels: tuple[int, int, int] = (8, 16, 32)
    """Residual CNN stem, one stride-2 block each: features at 1/2, 1/4, 1/8."""
    embed_dims: tuple[int, int, int, int] = (32, 64, 160, 256)
    """MiT-b0 stage widths, features at 1/16, 1/32, 1/64, 1/128."""
    num_heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    depths: tuple[int, int, int, int] = (2, 2, 2, 2)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    """Spatial reduction of keys/values in each MiT stage (efficient self-attention)."""
    mlp_ratio: int = 4
    drop_path: float = 0.1
    cross_attention_layers: int = 4
    """Paper: 4 layers (Eq. 12). The released code uses 8."""
    cross_attention_heads: int = 8
    level_embedding: bool = True
    """Add the learned PE_f that tells low-res tokens from high-res tokens (paper; code: off)."""
    upsample_mode: str = "bilinear"
    """Decoder ×2 up-sampling: bilinear (ours, 4× cheaper on CPU) or bicubic (the code's)."""
    max_side: int = 2048
    """Longest side of the working resolution; larger inputs are resized down to it."""

    @property
    def stride(self) -> int:
        """Total down-sampling of the encoder; working sizes are padded to a multiple of it."""
        return 128

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> NetworkConfig:
        """Rebuild a config from `to_json` output; unknown or missing fields are an error."""
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as err:
            raise WeightsError(f"architecture config is not valid JSON: {err}") from None
        if not isinstance(fields, dict):
            raise WeightsError(f"architecture config is not a JSON object: {text[:80]!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown, missing = sorted(set(fields) - known), sorted(known - set(fields))
        if unknown or missing:
            raise WeightsError(
                "architecture config does not match this version of sddr: "
                f"unknown fields {unknown}, missing fields {missing}"
            )
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
        return cls(**values)


PRESETS: dict[str, NetworkConfig] = {
    # Paper scale: MiT-b0 encoder, 4 cross-resolution attention layers (about 7 M parameters).
    "base": NetworkConfig(),
    # CPU-friendly bundled default: same topology, a fifth of the parameters; its
    # full-resolution stem is wider than base's because CPU convs are only efficient there
    # when they have enough channels (see docs/performance.md).
    "small": NetworkConfig(
        stem_channels=(16, 32, 48),
        embed_dims=(24, 48, 96, 128),
        num_heads=(1, 2, 4, 4),
        depths=(1, 1, 2, 1),
        cross_attention_layers=2,
        cross_attention_heads=4,
    ),
}


def preset(name: str) -> NetworkConfig:
    """The config of a named preset; an unknown name lists the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}") from None
