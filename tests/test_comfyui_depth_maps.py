"""The IMAGE ↔ depth-map rules of the ComfyUI nodes (comfyui_nodes/depth_maps.py), which need
no ComfyUI."""

import pytest
import torch

from comfyui_nodes import depth_maps
from sddr_core import InputError


def ramp(frames: int, height: int = 32, width: int = 40, near_bright: bool = True):
    """B×H×W maps growing towards the bottom (near-bright ground) or shrinking (far-bright)."""
    rows = torch.linspace(0.0, 1.0, height)[:, None].expand(height, width)
    maps = rows if near_bright else 1.0 - rows
    return maps[None].repeat(frames, 1, 1).clone()


def test_auto_polarity_follows_the_ground_plane():
    assert depth_maps.is_near_bright(ramp(1), "auto")
    assert not depth_maps.is_near_bright(ramp(1, near_bright=False), "auto")


def test_auto_polarity_is_one_decision_for_the_whole_batch():
    """A frame that alone would read the other way does not flip inside a video."""
    video = ramp(4)
    video[2] = ramp(1, near_bright=False)[0]
    assert depth_maps.is_near_bright(video, "auto")
    image = depth_maps.to_image(video, depth_maps.is_near_bright(video, "auto"), "per frame")
    assert float(image[0, -1, 0, 0]) == 1.0 and float(image[2, -1, 0, 0]) == 0.0


def test_far_bright_maps_come_out_near_bright():
    image = depth_maps.to_image(ramp(1, near_bright=False), False, "per frame")
    assert image.shape == (1, 32, 40, 3)
    assert float(image[0, -1].mean()) == 1.0 and float(image[0, 0].mean()) == 0.0


def test_whole_batch_keeps_relative_brightness_between_frames():
    maps = ramp(2)
    maps[1] *= 0.5
    image = depth_maps.to_image(maps, True, "whole batch")
    assert float(image[0].max()) == 1.0
    assert float(image[1].max()) == pytest.approx(0.5, abs=0.01)


def test_unknown_options_are_refused_by_name():
    with pytest.raises(InputError, match="input_polarity 'up'"):
        depth_maps.is_near_bright(ramp(1), "up")
    with pytest.raises(InputError, match="normalisation 'none'"):
        depth_maps.to_image(ramp(1), True, "none")


def test_an_edge_map_without_edges_stays_black():
    edges = torch.zeros(2, 16, 16)
    edges[1, 8, 8] = 3.0
    image = depth_maps.edges_to_image(edges)
    assert bool(torch.isfinite(image).all())
    assert float(image[0].max()) == 0.0 and float(image[1].max()) == 1.0


def test_valid_mask_is_at_the_output_size():
    low, high = ramp(1, 16, 20), ramp(1)
    high[0, :4] = float("nan")
    mask = depth_maps.valid_mask(low, high, (64, 80))
    assert mask.shape == (1, 64, 80)
    assert float(mask[0, :8].max()) == 0.0 and float(mask[0, 32:].min()) == 1.0


def test_image_to_maps_reads_channel_zero_exactly():
    maps = torch.rand(2, 16, 16)
    image = maps[..., None].expand(-1, -1, -1, 3)
    assert torch.equal(depth_maps.image_to_maps(image, "depth"), maps)
    with pytest.raises(InputError, match="depth: the depth IMAGE is 4×16"):
        depth_maps.image_to_maps(image[:, :4], "depth")


def test_gray_view_reads_channel_zero_of_the_image_itself():
    """Clip mode reads depth IMAGEs through this view: no copy of the batch is made."""
    image = torch.rand(3, 16, 16, 1).expand(-1, -1, -1, 3).contiguous()
    view = depth_maps.gray_view(image, "depth")
    assert view.data_ptr() == image.data_ptr() and torch.equal(view, image[..., 0])


def test_an_image_filled_frame_by_frame_is_normalised_in_place():
    maps = ramp(3)
    maps[1] *= 0.5
    image = depth_maps.gray_image(iter(maps), 3, (32, 40))
    assert torch.equal(image[..., 2], maps)
    scaled = depth_maps.normalise_image(image, False, "per frame")
    assert scaled is image
    assert [float(frame[0, 0, 0]) for frame in image] == [1.0, 1.0, 1.0]  # far-bright flipped
    with pytest.raises(ValueError):
        depth_maps.gray_image(iter(maps[:2]), 3, (32, 40))
