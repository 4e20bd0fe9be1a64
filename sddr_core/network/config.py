"""Architecture configuration of the refinement network N_r, and its named presets.

A config is plain data: it is stored as JSON in every weights file, so a file alone
rebuilds its model (see `files/weights.py`). It holds architecture only; how a network is
run (working resolution, device, precision) belongs to the `Refiner`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from ..errors import InputError, WeightsError, shown

UPSAMPLE_MODES = ("bilinear", "bicubic")

LEGACY_FIELDS = frozenset({"max_side"})
"""Fields that files of earlier versions carry but that are no longer architecture; they are
dropped when read (`max_side` is now `Refiner(max_side=…)`)."""


@dataclass(frozen=True)
class NetworkConfig:
    """Sizes of every part of N_r. Field docs give the paper's (base) values.

    A field added later must default to the value that reproduces the networks saved before
    it existed: files that lack the field are read with its default.
    """

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
    residual: bool = False
    """D0 = the high input + the decoded map (a correction), instead of the decoded map itself
    (the paper's). The high input's edges then reach D0 without being re-drawn by the decoder
    (docs/decisions.md, decision 81)."""
    correction_filter_radius: int = 0
    """With `residual`: smooth the correction with a guided filter of this radius (px at the
    working resolution), the high input as guide, so it follows the high input's edges instead
    of redrawing them from the 1/2-resolution decoder (decision 134). 0: off (the paper's)."""
    full_resolution_head: int = 0
    """With `residual`: channels of a small convolutional head at full resolution that sees
    D0 and the high input pixel by pixel and adds its own correction (decision 237), so edges
    can be placed and sharpened finer than the 1/2-resolution decoder draws them. 0: none
    (the paper's and every network saved before it)."""
    step_head: int = 0
    """With `residual`: channels of the step head (`step_head.py`), which lets each pixel of
    D0 keep its value or take a local extreme, so ramps can become one-pixel steps. 0: none
    (every network saved before it)."""
    step_head_radii: tuple[int, ...] = (2, 4, 8)
    """Window radii (px at the working resolution) whose extremes the step head pulls towards,
    widest last; the widest bounds its output and must span the ramps it turns into steps
    (decision 290). (2, 4, 8): every step head saved before the field existed."""
    step_head_passes: int = 1
    """How many times the step head runs, each pass on the last one's output with the same
    weights, so a ramp wider than the widest window can still become a step (decision 345).
    1: every network saved before the field existed."""
    correction_filter_eps: float = 1e-3
    """The guided filter's ε, in units of the normalised ([0, 1]) high input squared: guide
    steps well above √ε keep the correction two-sided."""

    def __post_init__(self) -> None:
        problem = _first_problem(self)
        if problem:
            field, reason = problem
            raise InputError(f"network config field {field!r}: {reason}")

    @property
    def omega_levels(self) -> int:
        """How many fusion maps Ω the decoder gives (`NetworkOutput.omegas`), finest first."""
        return len(self.stem_channels) + len(self.embed_dims) - 1

    @property
    def stride(self) -> int:
        """Total down-sampling of the encoder; working sizes are padded to a multiple of it."""
        return 128

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> NetworkConfig:
        """Rebuild a config from `to_json` output of this or an earlier version.

        Missing fields take their defaults and legacy fields are dropped; unknown fields (a
        newer version's) and invalid values are a `WeightsError` naming them.
        """
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as err:
            raise WeightsError(f"architecture config is not valid JSON: {err}") from None
        if not isinstance(fields, dict):
            raise WeightsError(f"architecture config is not a JSON object: {text[:80]!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known - LEGACY_FIELDS)
        if unknown:
            raise WeightsError(
                f"architecture config has fields this version of sddr does not know: {unknown} "
                "(written by a newer version?)"
            )
        values = {k: tuple(v) if isinstance(v, list) else v
                  for k, v in fields.items() if k in known}
        try:
            return cls(**values)
        except InputError as err:
            raise WeightsError(f"invalid architecture config: {err}") from None


LIMITS = {"stem_channels": 1024, "embed_dims": 1024, "num_heads": 64, "depths": 64,
          "sr_ratios": 64, "mlp_ratio": 16, "cross_attention_layers": 64,
          "cross_attention_heads": 64, "correction_filter_radius": 256,
          "full_resolution_head": 64, "step_head": 64, "step_head_radii": 64,
          "step_head_passes": 8}
"""Largest value of each size field (of each entry, for tuples): twice the largest MiT
(SegFormer b5: widths up to 512, 40 blocks in a stage, mlp ratio 4) and more than any preset.
A weights file's config is read before its tensors, so without them a file asking for
100,000 blocks or 16 TB of weights would hang or fail in the allocator."""


def _is_int(value, minimum: int, maximum: int | None = None) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and value >= minimum
            and (maximum is None or value <= maximum))


def _first_problem(config: NetworkConfig) -> tuple[str, str] | None:
    """(field, reason) of the first value that would not build or run, else None."""
    lengths = {"stem_channels": 3, "embed_dims": 4, "num_heads": 4, "depths": 4, "sr_ratios": 4}
    for name, length in lengths.items():
        value = getattr(config, name)
        minimum = 0 if name == "depths" else 1
        if not (isinstance(value, tuple) and len(value) == length
                and all(_is_int(v, minimum, LIMITS[name]) for v in value)):
            return name, (f"must be {length} integers from {minimum} to {LIMITS[name]}, "
                          f"got {shown(value)}")
    for dim, heads in zip(config.embed_dims, config.num_heads, strict=True):
        if dim % heads:
            return "num_heads", (f"each stage's heads must divide its width; {heads} heads do "
                                 f"not divide {dim} (embed_dims {config.embed_dims})")
    deepest = config.embed_dims[-1]
    if deepest % 4:
        return "embed_dims", f"the last width must be a multiple of 4 (sine PE), got {deepest}"
    checks = [
        ("mlp_ratio", _is_int(config.mlp_ratio, 1, LIMITS["mlp_ratio"]),
         f"an integer from 1 to {LIMITS['mlp_ratio']}"),
        ("drop_path", isinstance(config.drop_path, int | float)
         and not isinstance(config.drop_path, bool) and 0 <= config.drop_path < 1, "in [0, 1)"),
        ("cross_attention_layers", _is_int(config.cross_attention_layers, 0,
                                           LIMITS["cross_attention_layers"]),
         f"an integer from 0 to {LIMITS['cross_attention_layers']}"),
        ("cross_attention_heads", _is_int(config.cross_attention_heads, 1,
                                          LIMITS["cross_attention_heads"])
         and deepest % config.cross_attention_heads == 0,
         f"an integer from 1 to {LIMITS['cross_attention_heads']} that divides the last width "
         f"{deepest}"),
        ("level_embedding", isinstance(config.level_embedding, bool), "true or false"),
        ("residual", isinstance(config.residual, bool), "true or false"),
        ("upsample_mode", config.upsample_mode in UPSAMPLE_MODES, f"one of {UPSAMPLE_MODES}"),
        ("correction_filter_radius", _is_int(config.correction_filter_radius, 0,
                                             LIMITS["correction_filter_radius"])
         and (config.residual or not config.correction_filter_radius),
         f"an integer from 0 to {LIMITS['correction_filter_radius']}, and 0 unless residual "
         "is true (it filters the correction)"),
        ("full_resolution_head", _is_int(config.full_resolution_head, 0,
                                         LIMITS["full_resolution_head"])
         and (config.residual or not config.full_resolution_head),
         f"an integer from 0 to {LIMITS['full_resolution_head']}, and 0 unless residual is "
         "true (it corrects D0 = high + correction)"),
        ("step_head", _is_int(config.step_head, 0, LIMITS["step_head"])
         and (config.residual or not config.step_head),
         f"an integer from 0 to {LIMITS['step_head']}, and 0 unless residual is true"),
        ("step_head_radii", isinstance(config.step_head_radii, tuple)
         and 1 <= len(config.step_head_radii) <= 6
         and all(_is_int(r, 1, LIMITS["step_head_radii"]) for r in config.step_head_radii)
         and list(config.step_head_radii) == sorted(set(config.step_head_radii)),
         f"1 to 6 increasing integers from 1 to {LIMITS['step_head_radii']}"),
        ("step_head_passes", _is_int(config.step_head_passes, 1, LIMITS["step_head_passes"]),
         f"an integer from 1 to {LIMITS['step_head_passes']}"),
        ("correction_filter_eps", isinstance(config.correction_filter_eps, int | float)
         and not isinstance(config.correction_filter_eps, bool)
         and config.correction_filter_eps > 0, "a number > 0"),
    ]
    for name, ok, expected in checks:
        if not ok:
            return name, f"must be {expected}, got {shown(getattr(config, name))}"
    return None


PRESETS: dict[str, NetworkConfig] = {
    # Paper scale: MiT-b0 encoder, 4 cross-resolution attention layers (about 7 M parameters).
    "base": NetworkConfig(),
    # The CPU default (and the first to be trained): same topology, about a fifth of the
    # parameters and under a third of base's FLOPs. Most FLOPs are spent at 1/2 and 1/4
    # resolution, so the stem is as narrow as base's at 1/2 and half as wide below it
    # (docs/architecture.md, docs/performance.md).
    "small": NetworkConfig(
        stem_channels=(8, 8, 16),
        embed_dims=(16, 48, 96, 128),
        num_heads=(1, 2, 4, 4),
        depths=(1, 1, 2, 1),
        cross_attention_layers=2,
        cross_attention_heads=4,
        residual=True,
    ),
}


def preset(name: str) -> NetworkConfig:
    """The config of a named preset; an unknown name lists the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}") from None
