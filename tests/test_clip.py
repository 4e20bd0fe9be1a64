"""Clip mode: `Refiner.refine(..., clip=True)`, `Refiner.refine_clip`, `ClipState` and
`DepthPipeline(frames, clip=True)` / `DepthPipeline.frames`."""

from __future__ import annotations

import copy
import gc
import resource
import weakref

import numpy as np
import pytest
import torch

from sddr_core import DepthPipeline, InputError, Refiner, load_refiner
from sddr_core.inference.clip import ClipState
from sddr_core.inference.coarse_to_fine import Cancelled
from sddr_core.network.model import RefinementNetwork
from tests.tiny import TINY, TINY_MAX_SIDE

SIZE = (96, 128)


@pytest.fixture(scope="module")
def tiny() -> Refiner:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Refiner(RefinementNetwork(TINY), device="cpu", max_side=TINY_MAX_SIDE)


@pytest.fixture(scope="module")
def trained() -> Refiner:
    return load_refiner("default", device="cpu", max_side=256)


def _room(size=SIZE, box_left: float = 0.4) -> np.ndarray:
    """Disparity of a slanted wall with a nearer box whose left side is at `box_left`·width."""
    height, width = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    disparity = 0.2 + 0.2 * y / height + 0.1 * x / width
    box = (x >= box_left * width) & (x < box_left * width + width / 4) & (np.abs(
        y - height / 2) < height / 4)
    return np.where(box, 0.8, disparity).astype(np.float32)


def _low(disparity: np.ndarray) -> np.ndarray:
    """The low input: a quarter of the size, so its edges are soft."""
    tensor = torch.from_numpy(disparity)[None, None]
    return torch.nn.functional.interpolate(tensor, scale_factor=0.25, mode="area")[0, 0].numpy()


def _frame_to_frame_change(frames: np.ndarray) -> float:
    """Mean |frame t+1 − frame t| over the clip, relative to the mean value."""
    return float(np.abs(np.diff(frames, axis=0)).mean() / np.abs(frames).mean())


def test_still_clip_with_per_frame_scale_jitter_is_steady_in_clip_mode(tiny):
    rng = np.random.default_rng(0)
    truth = _room()
    scales = np.exp(rng.normal(0, 0.05, 12)).astype(np.float32)
    shifts = rng.normal(0, 0.02, 12).astype(np.float32)
    low = np.stack([_low(truth) * s + o for s, o in zip(scales, shifts, strict=True)])
    high = np.stack([truth * s + o for s, o in zip(scales, shifts, strict=True)])
    per_frame = tiny.refine(low, high)
    clip = tiny.refine(low, high, clip=True)
    assert _frame_to_frame_change(per_frame) > 0.01
    assert _frame_to_frame_change(clip) < 0.2 * _frame_to_frame_change(per_frame)


@pytest.mark.parametrize("pixels_per_frame", [5, 1])
def test_moving_edge_stays_as_sharp_and_in_place_in_clip_mode(trained, pixels_per_frame):
    rng = np.random.default_rng(1)
    lefts = 0.2 + np.arange(10) * pixels_per_frame / SIZE[1]
    truths = [_room(box_left=left) for left in lefts]
    low = np.stack([_low(t) + rng.normal(0, 0.01, _low(t).shape) for t in truths])
    high = np.stack([t + rng.normal(0, 0.02, t.shape) for t in truths]).astype(np.float32)
    per_frame = trained.refine(low.astype(np.float32), high)
    clip = trained.refine(low.astype(np.float32), high, clip=True)
    row = SIZE[0] // 2
    for index, left in enumerate(lefts):
        edge = int(round(left * SIZE[1]))
        window = slice(edge - 8, edge + 8)
        assert _ramp_width(clip[index, row, window]) <= _ramp_width(
            per_frame[index, row, window]) + 1
        assert abs(_step_position(clip[index, row, window]) - 8) <= 1


def _ramp_width(profile: np.ndarray) -> int:
    """Pixels between 10 % and 90 % of the way from the profile's far side to its near side."""
    low, high = np.percentile(profile, 5), np.percentile(profile, 95)
    between = (profile > low + 0.1 * (high - low)) & (profile < low + 0.9 * (high - low))
    return int(between.sum())


def _step_position(profile: np.ndarray) -> int:
    """Index of the first pixel past half-way up the step."""
    low, high = np.percentile(profile, 5), np.percentile(profile, 95)
    return int(np.argmax(profile > (low + high) / 2))


def _smooth_noise(rng: np.random.Generator, size=SIZE, scale: float = 0.02) -> torch.Tensor:
    """A smooth random field (σ about `scale`): the kind of error a refined frame carries
    from its low input, which changes from frame to frame."""
    coarse = torch.from_numpy(rng.normal(0, scale, (1, 1, size[0] // 16, size[1] // 16)))
    return torch.nn.functional.interpolate(coarse.float(), size=size, mode="bicubic")[0]


def test_blend_averages_a_still_scenes_noise_over_time():
    rng = np.random.default_rng(3)
    truth = torch.from_numpy(_room())
    state = ClipState()
    frame_errors, clip_errors = [], []
    for _ in range(12):
        frame = truth[None] + _smooth_noise(rng)
        clip = state.blend(frame)
        frame_errors.append(float((frame[0] - truth).abs().mean()))
        clip_errors.append(float((clip[0] - truth).abs().mean()))
    assert np.mean(clip_errors[4:]) < 0.85 * np.mean(frame_errors[4:])


def test_blend_moves_a_step_with_its_sides_where_its_gate_closes():
    """A soft step between two frames that differ by an offset: the gate is closed on the step
    and open beside it. Blending each pixel on its own would move the sides and not the step,
    a new step as high as most of the offset (decisions 300, 301); diluting the correction by
    the closed gate moved the step by half as much as its sides (decision 335). The step's
    pixels take their still neighbours' mean change: the whole map moves as one."""
    x = np.arange(SIZE[1], dtype=np.float32)
    step = torch.from_numpy(np.tile(0.5 + 1.0 * np.clip((x - 64) / 3, 0, 1), (SIZE[0], 1)))
    offset = 0.01
    state = ClipState()
    state.blend(step[None])
    change = state.blend(step[None] + offset)[0] - step - offset
    assert float(change.abs().min()) > 0.8 * offset  # the blend acted, on the step too
    assert float(change.diff(dim=1).abs().max()) < 0.01 * offset


@pytest.mark.parametrize("setting, value, wanted", [
    ("change_cap", float("nan"), "> 0"), ("change_cap", 0.0, "> 0"),
    ("hold", 1.5, "from 0 to 1"), ("anchor", -0.1, "from 0 to 1"), ("gate", "5", "> 0"),
    ("smooth", float("inf"), "≥ 0 and finite"), ("detail", True, "> 0"),
    ("floor", 0.0, "above 0, at most 1"), ("floor", 1.5, "above 0, at most 1")])
def test_a_bad_clip_setting_is_refused_naming_it(setting, value, wanted):
    with pytest.raises(InputError, match=f"ClipState {setting} .*must be a number {wanted}"):
        ClipState(**{setting: value})


@pytest.mark.parametrize("cap, dragged", [(None, False), (float("inf"), True)])
def test_a_moving_camera_does_not_drag_an_edge_behind(cap, dragged):
    """Every pixel changes by about 3 % of the range (a moving camera) and a 10 % step moves
    8 px: a gate scaled by the median change alone blends the step's old place into the frame;
    capped at 5 % of the range (decision 323) the old place moves with the still pixels beside
    it (those left of both steps) to within 30 % of the step (decisions 336, 337)."""
    x = np.arange(SIZE[1], dtype=np.float32)
    ramp = np.tile(x / SIZE[1], (SIZE[0], 1))  # the range, 0..1
    before = torch.from_numpy(ramp + 0.1 * (x >= 60))
    after = torch.from_numpy(ramp * 1.06 + 0.1 * (x >= 68))  # up to 6 % more, the step moved
    state = ClipState() if cap is None else ClipState(change_cap=cap)
    state.blend(before[None])
    out = state.blend(after[None])[0]
    change = out - after
    ghost = float(change[:, 63:66].mean() - change[:, 56:59].mean())  # old place against still
    assert (ghost > 0.04) if dragged else (ghost < 0.03)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_clip_mode_on_cuda_matches_the_cpu(tiny):
    """The blend's GPU path (torch pooling for the 3×3 range, where the CPU uses OpenCV) gives
    the CPU's frames."""
    frames = np.stack([_room(box_left=0.3 + 0.02 * t) for t in range(5)])
    lows = np.stack([_low(frame) for frame in frames])
    on_cpu = tiny.refine(lows, frames, clip=True)
    gpu = Refiner(copy.deepcopy(tiny.network), device="cuda", dtype="fp32", max_side=TINY_MAX_SIDE)
    on_gpu = gpu.refine(torch.from_numpy(lows).cuda(), torch.from_numpy(frames).cuda(),
                        clip=True)
    assert on_gpu.device.type == "cuda"
    np.testing.assert_allclose(on_gpu.cpu().numpy(), on_cpu, rtol=1e-3, atol=1e-3)


def test_clip_output_is_in_the_first_low_inputs_units(tiny):
    truth = _room()
    low = np.stack([_low(truth) * 50 + 3] * 4)
    high = np.stack([truth] * 4)
    clip = tiny.refine(low, high, clip=True)
    assert clip.mean() == pytest.approx(float(low[0].mean()), rel=0.05)


def test_iterator_form_matches_the_batch_form_and_continues_a_state(tiny):
    rng = np.random.default_rng(2)
    truth = _room()
    pairs = [(_low(truth) * s, truth * s) for s in np.exp(rng.normal(0, 0.05, 6))]
    batch = tiny.refine(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]),
                        clip=True)
    state = ClipState()
    pieces = [*tiny.refine_clip(pairs[:3], state=state), *tiny.refine_clip(pairs[3:],
                                                                            state=state)]
    np.testing.assert_allclose(np.stack(pieces), batch, rtol=1e-5, atol=1e-6)
    assert state.frames == 6


def test_iterator_reads_one_frame_ahead_and_keeps_no_frame(tiny):
    truth = torch.from_numpy(_room())
    read = []

    def frames():
        for index in range(8):
            read.append(index)
            yield torch.from_numpy(_low(truth.numpy())), truth * (1 + 0.01 * index)

    outputs = []
    for index, depth in enumerate(tiny.refine_clip(frames())):
        assert len(read) == index + 1
        outputs.append(weakref.ref(depth))
        del depth
    gc.collect()
    assert all(ref() is None for ref in outputs)


def test_memory_does_not_grow_with_clip_length(tiny):
    size = (512, 512)
    truth = _room(size)
    low = _low(truth)

    def run(frames: int) -> int:
        for depth in tiny.refine_clip((low, truth * (1 + 0.001 * i)) for i in range(frames)):
            del depth
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    warm = run(6)
    grown = run(60)
    frame_kib = truth.nbytes // 1024
    # keeping every frame's input and output would add over 100 frames' worth
    assert grown - warm < 20 * frame_kib


def test_one_frame_clip_equals_per_frame_refinement(tiny):
    truth = _room()
    np.testing.assert_allclose(tiny.refine(_low(truth)[None], truth[None], clip=True),
                               tiny.refine(_low(truth)[None], truth[None]), rtol=1e-5, atol=1e-6)


def test_bad_clip_inputs_are_refused_with_their_names(tiny):
    truth = _room()
    with pytest.raises(InputError, match="clip"):
        tiny.refine(_low(truth), truth, clip="yes")
    with pytest.raises(InputError, match="frame 1"):
        list(tiny.refine_clip([(_low(truth), truth), (np.stack([_low(truth)] * 2),
                                                      np.stack([truth] * 2))]))
    with pytest.raises(InputError, match="low of frame 0"):
        list(tiny.refine_clip([(np.full((4, 4, 4, 4), 1.0), truth)]))


def _brightness_predictor(image: np.ndarray, resolution: int) -> np.ndarray:
    """Disparity from the image's brightness, at `resolution` on the long side."""
    tensor = torch.from_numpy(image.mean(axis=2).astype(np.float32) / 255 + 0.1)[None, None]
    scale = resolution / max(image.shape[:2])
    return torch.nn.functional.interpolate(tensor, scale_factor=scale, mode="area")[0, 0].numpy()


def _frames(count: int) -> np.ndarray:
    return np.stack([np.repeat((_room(box_left=0.2 + 0.02 * i)[..., None] * 255), 3, axis=2)
                     for i in range(count)]).astype(np.uint8)


def test_pipeline_refines_a_frame_batch_as_a_clip_with_progress_per_frame(tiny):
    pipeline = DepthPipeline(tiny, _brightness_predictor)
    calls = []
    depth = pipeline(_frames(3), clip=True, progress=lambda done, total: calls.append(
        (done, total)))
    assert depth.shape == (3, *SIZE)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    first = next(pipeline.frames(_frames(1)))
    np.testing.assert_allclose(depth[0], first, rtol=1e-5, atol=1e-6)


def test_pipeline_clip_cancel_keeps_the_frames_already_yielded(tiny):
    pipeline = DepthPipeline(tiny, _brightness_predictor)
    done = []
    with pytest.raises(Cancelled, match="after 2 frames"):
        for depth in pipeline.frames(iter(_frames(4)), cancel=lambda: len(done) == 2):
            done.append(depth)
    assert len(done) == 2 and all(d.shape == SIZE for d in done)


def test_pipeline_clip_refuses_frames_of_another_size_and_other_modes(tiny):
    pipeline = DepthPipeline(tiny, _brightness_predictor)
    frames = [_frames(1)[0], _frames(1)[0][:64]]
    with pytest.raises(InputError, match="frame 1: 64×128"):
        list(pipeline.frames(frames))
    with pytest.raises(InputError, match="B×H×W×3"):
        pipeline(_frames(1)[0], clip=True)
    with pytest.raises(InputError, match="one-stage"):
        pipeline(_frames(2), clip=True, mode="two-stage")
