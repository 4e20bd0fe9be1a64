"""Two-stage refinement: window geometry, seamless blending, batching, progress, cancel, G_S,
and the properties that make it sharpen: N_r at each window's native size, Eq. 11 never below
r̂, Eq. 5's low input, Eq. 6's labels, Eq. 8's Ω convention, flat windows."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from sddr_core.cli.sample import sample_scene
from sddr_core.errors import InputError
from sddr_core.evaluation.diagnostics import edge_error
from sddr_core.inference import coarse_to_fine
from sddr_core.inference.coarse_to_fine import Cancelled, CoarseToFine
from sddr_core.inference.edges import initial_edges
from sddr_core.inference.pipeline import DepthPipeline
from sddr_core.inference.refiner import Refiner
from sddr_core.inference.resolution import (
    RESOLUTION_CAP,
    adaptive_resolution,
    window_resolutions,
)
from sddr_core.inference.windows import OVERLAP, blend_mask, passes, step_windows
from sddr_core.maps.resample import resize_maps
from sddr_core.network.model import RefinementNetwork
from sddr_core.predictors import GRADIENT_PRIOR
from sddr_core.predictors.base import MIN_RESOLUTION
from sddr_core.predictors.exact import MapPredictor
from tests.tiny import TINY


class RecordingPredictor(MapPredictor):
    """The exact map predictor at a small r̂, checking and recording every call."""

    def __init__(self, full: np.ndarray, training_resolution: int = 32):
        super().__init__(full, training_resolution)
        self.calls = []

    def predict(self, image, resolution, region=None):
        assert image.shape[:2] == (region or (0, 0, *self.depth_map.shape))[2:]
        self.calls.append((resolution, region))
        return super().predict(image, resolution, region)


class PassThroughRefiner:
    """Wraps a refiner so N_r returns its high input: D_S then carries the predictor's exact
    edges, which isolates the G_S machinery (alignment, merging) from a random network."""

    def __init__(self, refiner):
        self.inner = refiner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def refine(self, low, high, out_size=None):
        maps = torch.as_tensor(high, dtype=torch.float32)
        single = maps.ndim == 2
        out = resize_maps(maps[None] if single else maps, out_size or tuple(maps.shape[-2:]))
        return out[0].numpy() if single else out


@pytest.fixture(scope="module")
def refiner():
    torch.manual_seed(0)
    return Refiner(RefinementNetwork(TINY), device="cpu")


def ramp(height=96, width=144):
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return 1.0 + xs / width + 0.5 * ys / height


def image_of(depth):
    return np.repeat((depth / depth.max() * 255).astype(np.uint8)[..., None], 3, axis=2)


@pytest.mark.parametrize("height, width", [(100, 150), (97, 203), (1080, 1920), (64, 64)])
@pytest.mark.parametrize("step", [1, 2, 3])
def test_windows_cover_the_image_with_the_specified_overlap(height, width, step):
    windows = step_windows(height, width, step)
    assert len(windows) == (step + 1) ** 2
    assert len({(w.height, w.width) for w in windows}) == 1
    covered = np.zeros((height, width), int)
    for w in windows:
        assert w.top >= 0 and w.left >= 0
        assert w.top + w.height <= height and w.left + w.width <= width
        covered[w.top:w.top + w.height, w.left:w.left + w.width] += 1
    assert covered.min() >= 1
    size = windows[0]
    tops = sorted({w.top for w in windows})
    lefts = sorted({w.left for w in windows})
    for starts, length in ((tops, size.height), (lefts, size.width)):
        shared = [length - (b - a) for a, b in zip(starts, starts[1:], strict=False)]
        assert all(abs(s - OVERLAP * length) <= 1.5 for s in shared), shared


def test_pass_count_matches_the_paper():
    assert passes(3) == 30  # 1 + 4 + 9 + 16, Table 5's "× 30"
    assert passes(1) == 5


def test_blend_masks_are_positive_smooth_and_one_at_image_borders():
    height, width = 90, 130
    total = np.zeros((height, width))
    for w in step_windows(height, width, 2):
        mask = blend_mask(w, height, width)
        assert mask.shape == (w.height, w.width)
        assert mask.min() > 0 and mask.max() <= 1
        assert np.abs(np.diff(mask, axis=1)).max() < 0.15
        if w.left == 0:
            assert np.all(mask[w.height // 2, :2] == mask[w.height // 2, :2].max())
        total[w.top:w.top + w.height, w.left:w.left + w.width] += mask
    assert total.min() > 0.5  # every pixel carried by at least one strong weight


def test_adaptive_resolution_is_eq_11_clamped():
    """With a cap of 2 (at or above anything Eq. 11 asks here), Eq. 11 and its clamps."""
    assert adaptive_resolution(384, 1920, 1.0, cap=2.0) == 1152
    assert adaptive_resolution(384, 1000, 100.0, cap=2.0) == 1384  # detail clamped to 2
    assert adaptive_resolution(384, 1920, 0.0, cap=2.0) == 576  # and to 0.5
    assert adaptive_resolution(384, 3840, 1.0, cap=2.0) == 2048  # and the run to MAX_RESOLUTION
    assert adaptive_resolution(384, 300, 0.5, cap=2.0) == 384  # and not below r̂


def test_the_cap_bounds_a_run_by_its_region_and_wins_over_r_hat():
    assert adaptive_resolution(384, 1000, 100.0, cap=1.0) == 1000
    assert adaptive_resolution(384, 1000, 100.0, cap=1.25) == 1250
    assert adaptive_resolution(384, 1920, 1.0, cap=1.0) == 1152  # below the cap: Eq. 11
    assert adaptive_resolution(384, 300, 0.5, cap=1.0) == 300  # a window smaller than r̂
    assert adaptive_resolution(384, 300, 0.5, cap=0.001) == MIN_RESOLUTION


@pytest.mark.parametrize("cap", [0, -1.0, float("nan"), float("inf"), "1", True])
def test_a_bad_resolution_cap_is_refused_by_name(refiner, cap):
    with pytest.raises(InputError, match="resolution_cap"):
        DepthPipeline(refiner, lambda image, resolution: image[..., 0], resolution_cap=cap)


class DisagreeingRefiner:
    """Wraps a refiner so every window comes back with its own offset, as windows of a real
    image disagree a little: the merge must hide that, not show it as a step."""

    def __init__(self, refiner):
        self.inner, self.count = refiner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def refine(self, low, high, out_size=None):
        refined = self.inner.refine(low, high, out_size=out_size)
        if refined.ndim == 2:
            return refined
        offsets = 0.05 * (self.count + torch.arange(len(refined)) % 3)
        self.count += len(refined)
        return refined + offsets[:, None, None]


def _border_and_interior_jumps(refined, steps):
    jumps = np.abs(np.diff(refined, axis=1))
    borders = set()
    for step in range(1, steps + 1):
        for w in step_windows(*refined.shape, step):
            for edge in (w.left, w.left + round(OVERLAP * w.width), w.left + w.width):
                borders.update(range(edge - 2, edge + 2))
    borders &= set(range(refined.shape[1] - 1))
    interior = [c for c in range(refined.shape[1] - 1) if c not in borders]
    return jumps[:, sorted(borders)].max(), jumps[:, interior].max()


def test_two_stage_on_a_smooth_ramp_leaves_no_seam(refiner):
    depth = ramp()
    run = CoarseToFine(DisagreeingRefiner(PassThroughRefiner(refiner)), RecordingPredictor(depth))
    refined, _ = run.two_stage(image_of(depth), steps=2)
    assert refined.shape == depth.shape and np.isfinite(refined).all()
    at_borders, inside = _border_and_interior_jumps(refined, 2)
    assert at_borders <= 2 * inside


def test_two_stage_without_blending_would_show_seams(refiner, monkeypatch):
    """The seam test above can fail: flat masks (plain averaging) leave visible steps."""
    depth = ramp()
    monkeypatch.setattr(coarse_to_fine, "blend_mask",
                        lambda w, h, wd, overlap=OVERLAP: np.ones((w.height, w.width)))
    run = CoarseToFine(DisagreeingRefiner(PassThroughRefiner(refiner)), RecordingPredictor(depth))
    refined, _ = run.two_stage(image_of(depth), steps=2)
    at_borders, inside = _border_and_interior_jumps(refined, 2)
    assert at_borders > 2 * inside


def test_batching_gives_the_same_result_as_one_by_one(refiner, monkeypatch):
    depth = ramp() + (np.hypot(*np.mgrid[-48:48, -72:72]) < 30)
    image = image_of(depth)
    together = CoarseToFine(refiner, RecordingPredictor(depth)).two_stage(image, steps=2)
    monkeypatch.setattr(coarse_to_fine, "CPU_BATCH_PIXELS", 1)  # batch of one
    alone = CoarseToFine(refiner, RecordingPredictor(depth)).two_stage(image, steps=2)
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


class OutOfMemoryAbove:
    """Wraps a refiner so batches larger than `limit` raise torch.OutOfMemoryError."""

    def __init__(self, refiner, limit):
        self.inner, self.limit, self.batches = refiner, limit, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def refine(self, low, high, out_size=None):
        self.batches.append(low.shape[0] if low.ndim == 3 else 1)
        if self.batches[-1] > self.limit:
            raise torch.OutOfMemoryError("fake: out of memory")
        return self.inner.refine(low, high, out_size=out_size)


def test_out_of_memory_halves_the_batch_and_still_finishes(refiner):
    depth = ramp()
    image = image_of(depth)
    reference = CoarseToFine(refiner, RecordingPredictor(depth)).two_stage(image, steps=2)[0]
    limited = OutOfMemoryAbove(refiner, limit=2)
    result = CoarseToFine(limited, RecordingPredictor(depth)).two_stage(image, steps=2)[0]
    assert max(limited.batches) > 2 and 2 in limited.batches  # tried big, shrank
    np.testing.assert_allclose(result, reference, rtol=1e-4, atol=1e-5)


def test_out_of_memory_at_batch_one_is_raised(refiner):
    depth = ramp()
    with pytest.raises(torch.OutOfMemoryError):
        CoarseToFine(OutOfMemoryAbove(refiner, limit=0), RecordingPredictor(depth)).two_stage(
            image_of(depth), steps=1)


def test_progress_is_reported_per_window(refiner):
    depth = ramp()
    calls = []
    CoarseToFine(refiner, RecordingPredictor(depth), progress=lambda d, t: calls.append((d, t))) \
        .two_stage(image_of(depth), steps=3)
    assert calls == [(i, 30) for i in range(1, 31)]


@pytest.mark.parametrize("stop_after", [0, 2, 7])
def test_cancel_stops_between_windows_and_returns_nothing(refiner, stop_after):
    """`cancel` is polled before every window's prediction; once true, nothing more runs."""
    depth = ramp()
    predictor = RecordingPredictor(depth)
    run = CoarseToFine(refiner, predictor, cancel=lambda: len(predictor.calls) >= stop_after)
    with pytest.raises(Cancelled):
        run.two_stage(image_of(depth), steps=2)
    assert len(predictor.calls) == stop_after


def test_windows_ask_the_predictor_for_their_own_region(refiner):
    depth = ramp()
    predictor = RecordingPredictor(depth)
    CoarseToFine(refiner, predictor).two_stage(image_of(depth), steps=2)
    regions = [region for _, region in predictor.calls if region is not None]
    expected = [w.region for s in (1, 2) for w in step_windows(*depth.shape, s)]
    assert regions == expected
    assert predictor.calls[0] == (predictor.training_resolution, None)


def test_edges_peak_at_the_depth_step(refiner):
    depth = np.ones((96, 144), np.float32)
    depth[:, 70:] = 3.0
    run = CoarseToFine(PassThroughRefiner(refiner),
                       RecordingPredictor(depth, training_resolution=48))
    with pytest.warns(UserWarning, match="windows were flat"):  # those away from the step
        refined, edges = run.two_stage(image_of(depth), steps=2)
    assert edges.shape == depth.shape and np.isfinite(edges).all()
    column = edges[10:-10].mean(axis=0)
    assert abs(int(column.argmax()) - 69.5) <= 2
    assert column[66:74].mean() > 10 * np.median(column)
    pipeline = DepthPipeline(refiner, RecordingPredictor(depth))
    assert pipeline.edges(image_of(depth), steps=1).shape == depth.shape


def test_pipeline_modes_and_errors(refiner):
    depth = ramp()
    image = image_of(depth)
    pipeline = DepthPipeline(refiner, RecordingPredictor(depth))
    one = pipeline(image)
    two = pipeline(image, mode="two-stage", steps=1)
    assert one.shape == two.shape == depth.shape
    assert one.dtype == two.dtype == np.float32
    with pytest.raises(InputError, match="mode"):
        pipeline(image, mode="three-stage")
    with pytest.raises(InputError, match="steps"):
        pipeline(image, mode="two-stage", steps=0)
    with pytest.raises(InputError, match="return_edges"):
        pipeline(image, return_edges=True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_two_stage_on_cuda_matches_cpu(refiner):
    """The whole step batched on the GPU (fp32) gives the CPU's result."""
    depth = ramp() + (np.hypot(*np.mgrid[-48:48, -72:72]) < 30)
    image = image_of(depth)
    on_cpu = CoarseToFine(refiner, RecordingPredictor(depth)).two_stage(image, steps=2)[0]
    gpu = Refiner(copy.deepcopy(refiner.network), device="cuda", dtype="fp32")
    on_gpu = CoarseToFine(gpu, RecordingPredictor(depth)).two_stage(image, steps=2)[0]
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-3, atol=1e-3)


# ------------------------------------------------------------ sharpening, not blurring (§1)

class NativePredictor(RecordingPredictor):
    """Exact map at each window's native size whatever resolution is asked: with a
    pass-through N_r, any edge error is then the machinery's own."""

    def predict(self, image, resolution, region=None):
        height, width = (region or (0, 0, *self.depth_map.shape))[2:]
        return super().predict(image, max(8, height, width), region)


class RecordingRefiner(PassThroughRefiner):
    """Records each N_r call's (low, high, out_size); refines with the real network unless
    `pass_through`."""

    def __init__(self, refiner, pass_through=False):
        super().__init__(refiner)
        self.pass_through, self.calls = pass_through, []

    def refine(self, low, high, out_size=None):
        self.calls.append((torch.as_tensor(low).clone(), torch.as_tensor(high).clone(),
                           tuple(out_size)))
        if self.pass_through:
            return super().refine(low, high, out_size)
        return self.inner.refine(low, high, out_size)


@pytest.fixture(scope="module")
def scene():
    """(rgb, disparity, depth) of the procedural room at 240×360."""
    rgb, depth = sample_scene(240, 360)
    return rgb, (1.0 / depth).astype(np.float32), depth


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_pass_through_from_the_exact_depth_loses_nothing(refiner, scene, steps):
    """D0 exact, N_r returning its high input, windows predicted exactly: every step must
    give the exact map back (the landed code blurred it at every step)."""
    rgb, disparity, depth = scene
    run = CoarseToFine(PassThroughRefiner(refiner), NativePredictor(disparity))
    refined, _ = run.two_stage(rgb, steps, inputs=(disparity, disparity))
    assert edge_error(refined, depth) < 1e-3


def test_pass_through_two_stage_is_no_blurrier_than_one_stage(refiner, scene):
    """With the exact map predicted at Eq. 11's resolutions, two-stage's windows are finer
    than one-stage's whole-image high: its edge error cannot be worse. A cap of half the
    region's side keeps every run below the pixels it predicts (at a cap of 1 both would be
    exact, and the comparison one of rounding)."""
    rgb, disparity, depth = scene
    predictor = RecordingPredictor(disparity, training_resolution=72)  # r̂ = side / 5
    run = CoarseToFine(PassThroughRefiner(refiner), predictor, resolution_cap=0.5)
    one = edge_error(run.one_stage(rgb), depth)
    two = edge_error(run.two_stage(rgb, 3)[0], depth)
    assert two <= one


def test_windows_run_through_n_r_at_their_native_size(refiner, scene):
    rgb, disparity, _ = scene
    recording = RecordingRefiner(refiner, pass_through=True)
    CoarseToFine(recording, RecordingPredictor(disparity)).two_stage(rgb, 3)
    sizes = {(w.height, w.width) for s in (1, 2, 3) for w in step_windows(*rgb.shape[:2], s)}
    window_calls = [call for call in recording.calls if call[2] in sizes]
    assert len(window_calls) >= 3
    for low, high, out_size in window_calls:
        assert tuple(high.shape[-2:]) == refiner.working_size(*out_size) == out_size
        assert tuple(low.shape[-2:]) == out_size


@pytest.mark.parametrize("r_hat", [384, 518])
def test_window_resolutions_are_never_below_r_hat(r_hat):
    """`window_resolutions` itself, on a full-HD scene: each window's high run is at least r̂
    (the landed code asked 244–290 px for 591-px windows at r̂ 384)."""
    _, depth = sample_scene(1080, 1920)
    disparity = torch.from_numpy(1.0 / depth)
    for step in (1, 2, 3):
        windows = step_windows(1080, 1920, step)
        resolutions = window_resolutions(disparity, windows, r_hat, GRADIENT_PRIOR)
        assert len(resolutions) == len(windows) and min(resolutions) >= r_hat


def test_the_predictor_is_never_asked_below_r_hat(refiner, scene):
    rgb, disparity, _ = scene
    predictor = RecordingPredictor(disparity, training_resolution=64)
    CoarseToFine(PassThroughRefiner(refiner), predictor).two_stage(rgb, 3)
    assert min(resolution for resolution, _ in predictor.calls) >= 64


def test_a_window_low_input_is_its_crop_of_the_previous_estimate(refiner, scene):
    """Eq. 5: N_r refines a window against D_{s−1}'s crop, not a new low prediction."""
    rgb, disparity, _ = scene
    inputs = (resize_maps(torch.from_numpy(disparity)[None], (40, 60))[0].numpy(), disparity)
    previous = CoarseToFine(refiner, None).one_stage(rgb, inputs=inputs)
    recording = RecordingRefiner(refiner)
    CoarseToFine(recording, RecordingPredictor(disparity)).two_stage(rgb, 1, inputs=inputs)
    windows = step_windows(*rgb.shape[:2], 1)
    lows = torch.cat([low for low, _, size in recording.calls if size != rgb.shape[:2]])
    assert len(lows) == len(windows)
    for window, low in zip(windows, lows, strict=True):
        np.testing.assert_allclose(low.numpy(), window.crop(previous), rtol=1e-5, atol=1e-6)


def test_edge_labels_keep_g0_scale_through_eq_6(refiner, scene):
    """When the steps reproduce D0 exactly, Eq. 6 maps each window's gradient onto G_{s−1},
    so G_S stays on G0's scale; without it a window's own-range gradient would be larger."""
    rgb, disparity, _ = scene
    run = CoarseToFine(PassThroughRefiner(refiner), NativePredictor(disparity))
    _, edges = run.two_stage(rgb, 3, inputs=(disparity, disparity))
    first = initial_edges(torch.from_numpy(disparity)).numpy()
    assert edges.min() >= 0
    assert edges.mean() == pytest.approx(first.mean(), rel=0.1)
    assert np.corrcoef(edges.ravel(), first.ravel())[0, 1] > 0.9


def test_flat_windows_keep_the_previous_estimate_and_are_counted(refiner):
    """Sky at 0 over a third of the image: its windows are skipped with a note, never an
    error; the predictor is not asked for them."""
    depth = ramp()
    depth[:, :50] = 0.0
    predictor = RecordingPredictor(depth)
    run = CoarseToFine(PassThroughRefiner(refiner), predictor)
    with pytest.warns(UserWarning, match=r"two-stage: 4 of 29 windows were flat"):
        refined, edges = run.two_stage(image_of(depth), 3)
    assert len(predictor.calls) == 2 + 29 - 4
    assert np.all(refined[:, :40] == 0)
    with pytest.warns(UserWarning, match=r"two-stage: \d+ of 29 windows were flat"):
        refined, edges = CoarseToFine(refiner, predictor).two_stage(image_of(depth), 3)
    assert np.isfinite(refined).all() and np.isfinite(edges).all() and edges.min() >= 0


def test_a_constant_window_prediction_falls_back(refiner):
    depth = ramp()

    class ConstantForOneWindow(RecordingPredictor):
        def predict(self, image, resolution, region=None):
            result = super().predict(image, resolution, region)
            return np.zeros_like(result) if len(self.calls) == 3 else result

    run = CoarseToFine(refiner, ConstantForOneWindow(depth))
    with pytest.warns(UserWarning, match=r"1 of 4 windows"):
        refined, _ = run.two_stage(image_of(depth), 1)
    assert np.isfinite(refined).all()


@pytest.mark.parametrize("omega, follows", [(1.0, "high"), (-1.0, "low")])
def test_eq_8_omega_one_takes_the_high_features(omega, follows):
    """Eq. 8, F = (1 − Ω)·F_low + Ω·F_high: with every Ω head forced to 1 the output follows
    the high input, with Ω = 0 the low one (a swapped convention reverses this). Checked on
    the paper's direct output: a residual one adds the high input to D0 whatever Ω is."""
    torch.manual_seed(0)
    network = RefinementNetwork(dataclasses.replace(TINY, residual=False)).eval()
    with torch.no_grad():
        for head in network.decoder.omega_heads:
            head.conv.weight.zero_()
            head.conv.bias.fill_(30.0 * omega)  # sigmoid → 1 or 0
    generator = torch.Generator().manual_seed(1)
    low, high = (torch.rand(1, 1, 128, 128, generator=generator) for _ in range(2))
    bump = torch.zeros_like(low)
    bump[..., 48:80, 48:80] = 0.5
    with torch.no_grad():
        base = network(low, high).depth
        moved = {"low": (network(low + bump, high).depth - base).abs().mean(),
                 "high": (network(low, high + bump).depth - base).abs().mean()}
    other = "low" if follows == "high" else "high"
    assert moved[follows] > 20 * moved[other]


# ------------------------------------------------------------ predictor cost (decision 280)

def test_no_predictor_run_exceeds_the_cap_on_a_1024_photo(refiner):
    """Two-stage on a 1024² photo at r̂ 518 (Depth Anything V2) with a cap of 1: every run's
    long side is at most the long side of the photo or window it predicts (the low run at r̂
    aside); uncapped, the same photo asks above its own 1024 px (the issue measured up to
    1542 px). The map is grainy, as a random-weight model's is, so Eq. 11's detail factor is
    high."""
    rgb, depth = sample_scene(1024, 1024)
    grain = np.random.default_rng(0).random(depth.shape, dtype=np.float32)
    disparity = (1.0 / depth) * (1 + 0.2 * grain)
    calls = {}
    for cap in (1.0, None):
        predictor = RecordingPredictor(disparity, training_resolution=518)
        CoarseToFine(PassThroughRefiner(refiner), predictor, resolution_cap=cap).two_stage(rgb, 3)
        calls[cap] = predictor.calls
    assert calls[1.0][0] == (518, None)  # the low run
    assert len(calls[1.0]) == 2 + 4 + 9 + 16
    for resolution, region in calls[1.0][1:]:
        assert resolution <= (max(region[2:]) if region else 1024)
    assert max(resolution for resolution, _ in calls[None]) > 1024
    assert RESOLUTION_CAP is None  # decision 280: the default is uncapped


def test_batched_windows_give_what_one_at_a_time_gives(refiner, tmp_path, monkeypatch):
    """A step's windows through a transformers predictor in one batch, or one per forward
    pass (a batch budget of one pixel), give the same two-stage depth."""
    from sddr_core.predictors import load_predictor
    from tests.test_batch import tiny_predictor_folder

    predictor = load_predictor(str(tiny_predictor_folder(tmp_path / "da")), device="cpu")
    forwards = []
    predictor.model.register_forward_pre_hook(
        lambda module, args, kwargs: forwards.append(kwargs["pixel_values"].shape[0]),
        with_kwargs=True)
    rgb, _ = sample_scene(96, 144)
    pipeline = DepthPipeline(refiner, predictor)
    batched = pipeline(rgb, mode="two-stage", steps=2)
    batched_forwards, forwards[:] = list(forwards), []
    monkeypatch.setattr(coarse_to_fine, "PREDICT_BATCH_PIXELS", 1)
    single = pipeline(rgb, mode="two-stage", steps=2)
    assert sum(batched_forwards) == sum(forwards) == 2 + 4 + 9
    assert len(batched_forwards) < len(forwards) == 2 + 4 + 9
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-5 * np.abs(single).max())


class PatchRoundingPredictor(MapPredictor):
    """The exact map predictor with each side rounded to a multiple of 14, as the transformers
    adapter feeds a ViT: on a long thin photo the short side moves by up to 7 px."""

    def predict(self, image, resolution, region=None):
        top, left, height, width = region or (0, 0, *self.depth_map.shape)
        factor = resolution / max(height, width)
        size = tuple(max(14, round(side * factor / 14) * 14) for side in (height, width))
        crop = torch.from_numpy(self.depth_map[top:top + height, left:left + width])
        return resize_maps(crop[None], size)[0].numpy()


@pytest.mark.parametrize("shape", [(40, 600), (600, 40), (400, 1200)])
def test_a_long_thin_photo_refines_without_a_pair_warning_or_error(refiner, shape, recwarn):
    """Before, a 40×600 photo's own predictions (28×518 and 70×1120) were refused as depth of
    two pictures, and a 3:1 one warned that 'low' was resized: neither is the user's doing."""
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    depth = 1 + (xs / shape[1] + ys / shape[0] > 1).astype(np.float32)
    photo = np.zeros((*shape, 3), np.uint8)
    predictor = PatchRoundingPredictor(depth, training_resolution=518)
    low, high = coarse_to_fine.whole_image_inputs(predictor, photo)
    for prediction in (low, high):
        aspect = prediction.shape[1] / prediction.shape[0]
        assert abs(np.log(aspect / (shape[1] / shape[0]))) <= 0.02
    out = DepthPipeline(refiner, predictor)(photo, snap_edges=False)
    assert out.shape == shape and np.isfinite(out).all()
    assert not [w for w in recwarn if "aspect" in str(w.message)]


def test_predictions_already_in_the_photos_frame_are_passed_on_untouched():
    depth = ramp(96, 144)
    predictor = PatchRoundingPredictor(depth, training_resolution=518)
    low, high = coarse_to_fine.whole_image_inputs(predictor, np.zeros((96, 144, 3), np.uint8))
    assert np.array_equal(low, predictor.predict(None, 518))
    assert high.shape == predictor.predict(None, max(high.shape)).shape
