"""Clipped and quantised depth maps are named; ordinary 16-bit, 8-bit and float maps are not."""

from __future__ import annotations

import numpy as np
import torch

from sddr_core.cli.sample import sample_scene
from sddr_core.maps.levels import CLIPPED_FRACTION, FEW_LEVELS, SAMPLE_PIXELS, damaged_levels


def _scene_disparity() -> torch.Tensor:
    """The sample scene's disparity as a 16-bit PNG holds it: 0..65535, near = bright."""
    _, depth = sample_scene(96, 128)
    disparity = 1.0 / depth
    scaled = (disparity - disparity.min()) / (disparity.max() - disparity.min())
    return torch.from_numpy(np.round(scaled * 65535).astype(np.float32))[None]


def test_full_precision_and_8_bit_maps_pass():
    png16 = _scene_disparity()
    assert damaged_levels(png16, "low_depth") is None
    assert damaged_levels(png16 / 65535, "low_depth") is None
    eight_bit = torch.round(png16 / 65535 * 255) / 255  # what depth nodes output
    assert damaged_levels(eight_bit, "low_depth") is None


def test_a_16_bit_file_read_as_8_bits_is_named_as_clipped():
    """Load Image converts a 16-bit gray PNG to RGB by clipping every value above 255."""
    clipped = _scene_disparity().clamp(max=255) / 255
    message = damaged_levels(clipped, "high_depth")
    assert message is not None
    assert message.startswith("high_depth: frame 0 has")
    assert "at its maximum value 1" in message and "clipped or quantised" in message


def test_a_map_mostly_at_its_minimum_is_clipped_and_half_of_it_is_not():
    ramp = torch.linspace(0, 1, 100 * 100).reshape(1, 100, 100)
    mostly_far = torch.where(ramp < CLIPPED_FRACTION + 0.02, 0.0, ramp)
    assert "at its minimum value 0" in damaged_levels(mostly_far, "low_depth")
    half_sky = torch.where(ramp < 0.5, 0.0, ramp)  # a sky at one end is a real scene
    assert damaged_levels(half_sky, "low_depth") is None


def test_few_levels_are_named_with_their_count():
    ramp = torch.linspace(0, 1, 64 * 64).reshape(1, 64, 64)
    assert damaged_levels(torch.round(ramp * (FEW_LEVELS - 1)), "low_depth") == (
        f"low_depth: frame 0 has only {FEW_LEVELS} distinct values: its depth was clipped or "
        "quantised before it got here, and the refined depth will be flat or stepped")
    assert damaged_levels(torch.round(ramp * FEW_LEVELS), "low_depth") is None


def test_a_large_map_with_a_rare_extra_level_is_counted_in_full():
    """The subsample sees only the few common levels; the full count decides."""
    steps = torch.round(torch.linspace(0, 1, 1024 * 1024) * (FEW_LEVELS - 1))
    stride = steps.numel() // SAMPLE_PIXELS
    steps[1::stride] += 0.5  # FEW_LEVELS more values, on pixels the subsample skips
    assert damaged_levels(steps.reshape(1, 1024, 1024), "low_depth") is None


def test_the_first_damaged_frame_is_named_with_the_count_and_non_finite_pixels_ignored():
    good = _scene_disparity()[0]
    clipped = good.clamp(max=255)
    clipped[:4] = float("nan")
    message = damaged_levels(torch.stack([good, clipped, good, clipped]), "low_depth")
    assert message.startswith("low_depth: frame 1 (and 1 more of 4 frames) has")
    assert damaged_levels(torch.full((1, 16, 16), float("nan")), "low_depth") is None
