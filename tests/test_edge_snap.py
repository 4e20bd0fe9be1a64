"""`sddr_core.maps.edge_snap.snap_edges`: ramps go to the side the photo says, and nothing else
moves. Hand-built depth ramps with a colour edge; every figure here is constructed, not
measured."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sddr_core import DepthPipeline, Refiner
from sddr_core.cli.sample import sample_scene
from sddr_core.errors import InputError
from sddr_core.maps.edge_snap import SIDE_BAND, snap_edges
from sddr_core.network.model import RefinementNetwork
from tests.tiny import TINY, TINY_MAX_SIDE

HEIGHT, WIDTH = 24, 64
RAMP = (20, 30)
"""Columns where the hand-built depth rises from 1 to 2: a 10-px ramp, like the demo's."""


def ramp_scene(colour_edge: int, height: int = HEIGHT, width: int = WIDTH):
    """(depth, image): far (1.0) left of RAMP, a linear ramp across it, near (2.0) right of it;
    the photo is dark grey left of `colour_edge` and light beige from it on."""
    depth = np.interp(np.arange(width), RAMP, [1.0, 2.0]).astype(np.float32)
    depth = np.repeat(depth[None], height, axis=0)
    image = np.full((height, width, 3), 60, np.uint8)
    image[:, colour_edge:] = (200, 180, 150)
    return depth, image


@pytest.mark.parametrize("colour_edge", [22, 25, 28])
def test_ramp_pixels_go_to_the_side_the_photo_shows(colour_edge):
    depth, image = ramp_scene(colour_edge)
    snapped = snap_edges(depth, image, radius=12)
    band = SIDE_BAND * 1.0  # the step is 1.0
    assert np.all(snapped[:, :colour_edge] <= 1.0 + band)
    assert np.all(snapped[:, colour_edge:] >= 2.0 - band)
    # before snapping, pixels on both sides of the colour edge floated
    assert np.any(np.abs(depth[:, colour_edge - 2:colour_edge + 2] - 1.5) < 0.4)


def test_a_colourless_ramp_splits_at_its_middle():
    depth, image = ramp_scene(colour_edge=WIDTH)  # one colour everywhere
    snapped = snap_edges(depth, image, radius=12)
    floating = (snapped > 1.0 + SIDE_BAND) & (snapped < 2.0 - SIDE_BAND)
    assert not floating.any()
    assert np.all(snapped[:, :25] < 1.5) and np.all(snapped[:, 26:] > 1.5)


@pytest.mark.parametrize("polarity", ["depth", "disparity"])
def test_both_polarities_assign_the_same_sides(polarity):
    depth, image = ramp_scene(colour_edge=27)
    given = depth if polarity == "depth" else 1.0 / depth
    snapped = snap_edges(given, image, radius=12)
    near = snapped > 1.5 if polarity == "depth" else snapped < 1 / 1.5
    assert np.array_equal(near, np.broadcast_to(np.arange(WIDTH) >= 27, near.shape))


def test_a_slanted_plane_is_unchanged_even_across_a_colour_edge():
    ys, xs = np.mgrid[0:48, 0:64].astype(np.float32)
    image = np.where((xs < 30)[..., None], 40, 220).astype(np.uint8).repeat(3, axis=2)
    plane = 1.0 + 0.05 * xs + 0.02 * ys  # steep: crosses the whole range in 64 px
    assert np.array_equal(snap_edges(plane, image), plane)
    disparity_plane = 1.0 / (0.2 + 0.005 * xs)  # a plane seen in perspective, as depth
    assert np.array_equal(snap_edges(disparity_plane, image), disparity_plane)


def test_a_colour_edge_with_no_depth_step_creates_no_step():
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:48, 0:64].astype(np.float32)
    gentle = 3.0 + 0.002 * xs + 0.001 * ys + rng.normal(0, 1e-4, xs.shape).astype(np.float32)
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, 32:] = 255
    image[20:, :] = (255, 0, 0)
    assert np.array_equal(snap_edges(gentle, image), gentle)
    flat = np.full((48, 64), 2.0, np.float32)
    assert np.array_equal(snap_edges(flat, image), flat)


def blurred_blocks(seed: int, size: int = 64):
    """A random scene of blocks at random depths, blurred into ramps, and a photo whose colours
    follow the blocks with noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, (size // 8, size // 8)).repeat(8, 0).repeat(8, 1)
    depth = rng.uniform(1, 10, 5)[labels].astype(np.float32)
    image = rng.integers(0, 256, (5, 3))[labels] + rng.normal(0, 8, (size, size, 3))
    blurred = F.avg_pool2d(torch.from_numpy(depth)[None, None], 7, 1, 3,
                           count_include_pad=False)[0, 0].numpy()
    return blurred, np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("seed", range(4))
def test_output_stays_within_the_local_minimum_and_maximum(seed):
    depth, image = blurred_blocks(seed)
    radius = 6
    snapped = snap_edges(depth, image, radius=radius)
    window = torch.from_numpy(depth)[None, None]
    high = F.max_pool2d(window, 2 * radius + 1, 1, radius)[0, 0].numpy()
    low = -F.max_pool2d(-window, 2 * radius + 1, 1, radius)[0, 0].numpy()
    assert np.all(snapped >= low) and np.all(snapped <= high)
    assert not np.array_equal(snapped, depth)  # it did snap something
    assert set(np.unique(snapped)) <= set(np.unique(depth))  # values copied, never mixed


def test_a_batch_is_snapped_map_by_map():
    scenes = [blurred_blocks(seed) for seed in range(3)]
    depth = np.stack([d for d, _ in scenes])
    image = np.stack([i for _, i in scenes])
    batch = snap_edges(depth, image)
    assert batch.shape == depth.shape
    for one, (d, i) in zip(batch, scenes, strict=True):
        assert np.array_equal(one, snap_edges(d, i))


def test_tensors_stay_tensors_and_a_larger_photo_is_resized():
    depth, image = ramp_scene(colour_edge=25)
    large = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)  # twice the depth's size
    snapped = snap_edges(torch.from_numpy(depth), torch.from_numpy(large), radius=12)
    assert isinstance(snapped, torch.Tensor) and snapped.shape == depth.shape
    assert np.array_equal(snapped.numpy(), snap_edges(depth, image, radius=12))
    as_float = snap_edges(depth, image.astype(np.float32) / 255, radius=12)
    assert np.array_equal(as_float, snap_edges(depth, image, radius=12))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_snapping_on_cuda_matches_the_cpu():
    """The same sides on the GPU: a CUDA tensor in, a CUDA tensor out, the CPU's values."""
    _, depth = sample_scene(96, 128)
    disparity = cv2.GaussianBlur(1.0 / depth, (0, 0), 2.0)
    rgb = sample_scene(96, 128)[0]
    on_cpu = snap_edges(disparity, rgb)
    on_gpu = snap_edges(torch.from_numpy(disparity).cuda(), torch.from_numpy(rgb).cuda())
    assert on_gpu.device.type == "cuda"
    np.testing.assert_allclose(on_gpu.cpu().numpy(), on_cpu, atol=1e-5)


@pytest.mark.parametrize(("depth", "image", "options", "message"), [
    (np.full((8, 8), np.nan), np.zeros((8, 8, 3), np.uint8), {}, "depth: holds 64 NaN"),
    (np.zeros((2, 3, 8, 8)), np.zeros((8, 8, 3), np.uint8), {}, "depth: expected shape"),
    ("depth.png", np.zeros((8, 8, 3), np.uint8), {}, "depth: expected a numpy array"),
    (np.zeros((8, 8)), np.zeros((8, 8)), {}, "image: expected an RGB image"),
    (np.zeros((8, 8)), np.zeros((2, 8, 8, 3), np.uint8), {}, "image holds 2 picture(s)"),
    (np.zeros((8, 8)), np.full((8, 8, 3), 2.0), {}, "image: a float image must hold"),
    (np.zeros((8, 8)), np.zeros((8, 8, 3), np.int8), {}, "image: expected uint8"),
    (np.zeros((8, 8)), np.zeros((8, 8, 3), np.uint8), {"radius": 0}, "radius 0"),
    (np.zeros((8, 8)), np.zeros((8, 8, 3), np.uint8), {"min_step": -1}, "min_step -1"),
    (np.zeros((8, 8)), np.zeros((8, 8, 3), np.uint8), {"colour_sigma": 0}, "colour_sigma 0"),
])
def test_bad_inputs_name_the_argument(depth, image, options, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        snap_edges(depth, image, **options)


# ------------------------------------------------------------------ wired into the pipeline

def blurry_predictor(disparity: np.ndarray):
    """A predictor that never sees finer than 48 px: its depth, up-sampled, has ramps."""
    def predict(image, resolution):
        scale = min(resolution, 48) / max(disparity.shape)
        size = (round(disparity.shape[1] * scale), round(disparity.shape[0] * scale))
        return cv2.resize(disparity, size, interpolation=cv2.INTER_AREA)
    return predict


@pytest.mark.parametrize("mode", ["one-stage", "two-stage"])
def test_the_pipeline_snaps_unless_switched_off(mode):
    """On by default where the photo is known (decision 322)."""
    refiner = Refiner(RefinementNetwork(TINY), device="cpu", max_side=TINY_MAX_SIDE)
    rgb, depth = sample_scene(96, 144)
    pipeline = DepthPipeline(refiner, blurry_predictor(1.0 / depth))
    unsnapped = pipeline(rgb, mode=mode, steps=1, snap_edges=False)
    snapped = pipeline(rgb, mode=mode, steps=1)
    assert not np.array_equal(snapped, unsnapped)
    assert np.array_equal(snapped, snap_edges(unsnapped, rgb))
    with pytest.raises(InputError, match="snap_edges 'no'"):
        pipeline(rgb, snap_edges="no")
