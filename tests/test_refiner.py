"""`Refiner.refine`: layouts, sizes, units and polarity, bad inputs, warnings, devices."""

from __future__ import annotations

import copy
import dataclasses
import warnings

import numpy as np
import pytest
import torch

import sddr_core
from sddr_core import InputError, Refiner, build_refiner, load_refiner
from sddr_core.maps.gradients import gradient_magnitude
from sddr_core.maps.inputs import nearest_fill
from sddr_core.maps.normalise import (
    BORDER_MARGIN,
    SAMPLE_PIXELS,
    mirror_pad,
    network_inputs,
    normalise_maps,
    padded_size,
    padding,
    robust_range,
)
from sddr_core.maps.resample import resize_maps
from sddr_core.network.model import NetworkOutput, RefinementNetwork
from tests.tiny import TINY, TINY_MAX_SIDE

LOW_SIZE, HIGH_SIZE = (61, 83), (187, 251)  # odd sizes, same aspect ratio within 2 %


def _tiny_network(seed: int = 0) -> RefinementNetwork:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RefinementNetwork(TINY)


@pytest.fixture(scope="module")
def refiner() -> Refiner:
    return Refiner(_tiny_network(), device="cpu", max_side=TINY_MAX_SIDE)


def _scene(size: tuple[int, int], disparity: bool = False, detail: float = 0.0) -> np.ndarray:
    """A ramp plus a raised (closer) square, as depth or as disparity (1/depth)."""
    height, width = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = 2.0 + 3.0 * x / width + 0.5 * y / height
    square = (np.abs(y - height / 2) < height / 5) & (np.abs(x - width / 2) < width / 5)
    depth[square] -= 1.0
    if detail:
        depth += detail * np.sin(x / 3.0) * np.cos(y / 5.0)
    return (1.0 / depth if disparity else depth).astype(np.float32)


def _pair(low_size=LOW_SIZE, high_size=HIGH_SIZE, disparity=False):
    return _scene(low_size, disparity), _scene(high_size, disparity, detail=0.05)


def _random_maps(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32) + 1.0


def _pearson(a, b) -> float:
    return float(np.corrcoef(np.asarray(a).ravel(), np.asarray(b).ravel())[0, 1])


def _low_at(low: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return resize_maps(torch.from_numpy(low)[None], size)[0].numpy()


# --------------------------------------------------------------------------- sizes and layouts

@pytest.mark.parametrize(
    ("low_size", "high_size"),
    [(LOW_SIZE, HIGH_SIZE), ((83, 41), (251, 123)), ((40, 40), (129, 130)), ((9, 300), (9, 300))],
)
def test_refine_returns_float32_at_high_size(refiner, low_size, high_size):
    low, high = _pair(low_size, high_size)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # clean inputs: no warning
        out = refiner.refine(low, high)
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.float32
    assert out.shape == high_size
    assert np.isfinite(out).all()


@pytest.mark.parametrize("out_size", [(100, 134), (400, 537), (50, 20)])
def test_refine_out_size(refiner, out_size):
    low, high = _pair()
    out = refiner.refine(low, high, out_size=out_size)
    assert out.shape == out_size and out.dtype == np.float32
    assert np.isfinite(out).all()
    # Same units as at the default size: the means agree (both match low's mean).
    default = refiner.refine(low, high)
    assert out.mean() == pytest.approx(default.mean(), rel=2e-2)


def test_torch_in_torch_out(refiner):
    low, high = _pair()
    low_t = torch.from_numpy(low).double().requires_grad_()
    out = refiner.refine(low_t, torch.from_numpy(high))
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    assert out.shape == HIGH_SIZE
    assert not out.requires_grad
    np.testing.assert_allclose(out.numpy(), refiner.refine(low, high), rtol=1e-5, atol=1e-6)


def test_layouts(refiner):
    rng = np.random.default_rng(1)
    lows = np.stack([_scene(LOW_SIZE) * s for s in (1.0, 2.0, 0.5)])
    highs = np.stack([_scene(HIGH_SIZE, detail=0.05) + rng.random(HIGH_SIZE, dtype=np.float32)
                      * 0.1 for _ in range(3)])

    batch = refiner.refine(lows, highs)
    assert batch.shape == (3, *HIGH_SIZE)
    for i in range(3):
        alone = refiner.refine(lows[i], highs[i])
        assert alone.shape == HIGH_SIZE
        assert np.abs(alone - batch[i]).max() <= 1e-5 * np.abs(alone).max()

    with_channel = refiner.refine(lows[:, None], highs[:, None])
    assert with_channel.shape == (3, *HIGH_SIZE)
    np.testing.assert_allclose(with_channel, batch, rtol=1e-5, atol=1e-6)

    one = refiner.refine(lows[:1], highs[:1])
    assert one.shape == (1, *HIGH_SIZE)

    torch_batch = refiner.refine(torch.from_numpy(lows), torch.from_numpy(highs))
    assert isinstance(torch_batch, torch.Tensor) and torch_batch.shape == (3, *HIGH_SIZE)


def test_working_size(refiner):
    assert refiner.working_size(3000, 1000) == (256, 85)
    height, width = refiner.working_size(1000, 3000)
    assert max(height, width) == 256 == width
    assert abs(height - 1000 * 256 / 3000) <= 0.5
    assert refiner.working_size(100, 50) == (100, 50)  # not upscaled
    assert refiner.working_size(256, 17) == (256, 17)

    small = build_refiner("small")
    height, width = small.working_size(3000, 1000)
    assert height == small.max_side == 2048
    assert abs(width - 1000 * 2048 / 3000) <= 0.5


@pytest.mark.parametrize(
    ("high_size", "network_size"),
    # working size (capped at 256) + 8 px each side, up to multiples of 128
    [((300, 200), (384, 256)), (HIGH_SIZE, (256, 384)), ((61, 83), (128, 128)),
     ((130, 520), (128, 384))],
)
def test_network_runs_at_padded_working_size(refiner, high_size, network_size):
    seen = []
    handle = refiner.network.register_forward_pre_hook(
        lambda module, args: seen.append(tuple(args[0].shape))
    )
    try:
        low, high = _pair((round(high_size[0] / 3), round(high_size[1] / 3)), high_size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # aspect ratio rounding of the small low
            out = refiner.refine(low, high)
    finally:
        handle.remove()
    assert seen == [(1, 1, *network_size)]
    assert out.shape == high_size


# ---------------------------------------------------------------------- units and polarity

@pytest.mark.parametrize("disparity", [False, True])
@pytest.mark.parametrize("out_size", [None, (120, 160)])
def test_output_is_aligned_to_low(refiner, disparity, out_size):
    low, high = _pair(disparity=disparity)
    out = refiner.refine(low, high, out_size=out_size)
    reference = _low_at(low, out.shape)
    assert _pearson(out, reference) > 0
    assert out.mean() == pytest.approx(reference.mean(), rel=1e-3)
    # Output is in low's range, not the normalised [0, 1] of the network.
    assert reference.min() - 1 < out.mean() < reference.max() + 1
    if not disparity:
        assert out.mean() > 2


def test_affine_equivariance_in_low(refiner):
    low, high = _pair()
    base = refiner.refine(low, high)
    scaled = refiner.refine(low * 1000 + 250, high)
    spread = base.max() - base.min()
    assert spread > 0
    assert np.abs(scaled - (1000 * base + 250)).max() <= 1e-3 * 1000 * spread
    shifted = refiner.refine(low - 2.0, high)
    assert np.abs(shifted - (base - 2.0)).max() <= 1e-3 * spread


def test_invariance_to_high_units(refiner):
    low, high = _pair()
    base = refiner.refine(low, high)
    other = refiner.refine(low, high * 37.0 + 5.0)
    assert np.abs(other - base).max() <= 1e-3 * (base.max() - base.min())


def test_output_depends_on_high_detail(refiner):
    low, high = _pair()
    a = refiner.refine(low, high)
    b = refiner.refine(low, _scene(HIGH_SIZE, detail=0.5))
    assert not np.allclose(a, b, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- build_refiner

def test_build_refiner_is_reproducible_and_leaves_rng_alone():
    torch.manual_seed(1234)
    expected = torch.rand(5)
    torch.manual_seed(1234)
    first = build_refiner("small", seed=3)
    after = torch.rand(5)
    assert torch.equal(expected, after), "build_refiner changed the global RNG state"

    again = build_refiner("small", seed=3)
    other = build_refiner("small", seed=4)
    a, b, c = (r.network.state_dict() for r in (first, again, other))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert first.device.type == "cpu" and first.dtype == torch.float32


def test_build_refiner_unknown_preset():
    with pytest.raises(InputError, match="huge"):
        build_refiner("huge")


# ------------------------------------------------------------------------------ bad inputs

GOOD = {"low": _scene(LOW_SIZE), "high": _scene(HIGH_SIZE)}


def _all_nan():
    return np.full((30, 40), np.nan, np.float32)


BAD_INPUTS = {
    "all-nan": (_all_nan, "finite"),
    "all-inf": (lambda: np.full((30, 40), np.inf), "finite"),
    "constant": (lambda: np.full((30, 40), 3.5, np.float32), "constant"),
    "constant-int": (lambda: np.zeros((30, 40), np.uint16), "constant"),
    "too-small": (lambda: _random_maps(5, 40), "8×8"),
    "too-small-2": (lambda: _random_maps(40, 7), "8×8"),
    "1-d": (lambda: _random_maps(100), "shape"),
    "5-d": (lambda: _random_maps(1, 1, 1, 20, 20), "shape"),
    "4-d-2ch": (lambda: _random_maps(1, 2, 20, 20), "shape"),
    "object": (lambda: np.full((20, 20), None, dtype=object), "numeric"),
    "str": (lambda: np.full((20, 20), "1.0"), "numeric"),
    "bool": (lambda: np.ones((20, 20), bool), "bool"),
    "torch-bool": (lambda: torch.ones(20, 20, dtype=torch.bool), "bool"),
    "complex": (lambda: torch.ones(20, 20, dtype=torch.complex64), "complex"),
    "list": (lambda: [[float(i + j) for j in range(20)] for i in range(20)], "numpy"),
    "none": (lambda: None, "numpy"),
}


@pytest.mark.parametrize("name", ["low", "high"])
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_naming_the_argument(refiner, name, case):
    make, problem = BAD_INPUTS[case]
    args = dict(GOOD)
    args[name] = make()
    with pytest.raises(InputError) as info:
        refiner.refine(args["low"], args["high"])
    message = str(info.value)
    assert name in message
    assert ({"low", "high"} - {name}).pop() not in message
    assert problem in message


def test_constant_map_in_a_batch_is_named(refiner):
    low = np.stack([_scene(LOW_SIZE), np.ones(LOW_SIZE, np.float32)])
    with pytest.raises(InputError, match=r"low: depth map 1 is constant"):
        refiner.refine(low, np.stack([_scene(HIGH_SIZE)] * 2))


def test_mismatched_batch_sizes(refiner):
    with pytest.raises(InputError) as info:
        refiner.refine(np.stack([_scene(LOW_SIZE)] * 2), np.stack([_scene(HIGH_SIZE)] * 3))
    message = str(info.value)
    assert "low" in message and "high" in message and "2" in message and "3" in message


@pytest.mark.parametrize("out_size", [(0, 10), (10, -3), (10,), (1, 2, 3), "ab", 5, (None, 4)])
def test_invalid_out_size(refiner, out_size):
    with pytest.raises(InputError, match="out_size"):
        refiner.refine(*_pair(), out_size=out_size)


def test_big_endian_input_is_accepted(refiner):
    low, high = _pair()
    try:
        out = refiner.refine(low.astype(">f4"), high)
    except InputError as err:  # refusing it clearly would be acceptable too
        assert "low" in str(err)
    else:
        np.testing.assert_allclose(out, refiner.refine(low, high), rtol=1e-6)


def test_single_channel_last_axis_is_accepted(refiner):
    low, high = _pair()
    out = refiner.refine(low[..., None], high)
    assert out.shape == HIGH_SIZE


# -------------------------------------------------------------------------------- warnings

@pytest.mark.parametrize("name", ["low", "high"])
def test_partial_nan_and_inf_are_filled_with_a_warning(refiner, name):
    args = dict(zip(("low", "high"), _pair(), strict=True))
    bad = args[name].copy()
    bad[2:6, 3:9] = np.nan
    bad[-1, -1] = np.inf
    bad[0, -1] = -np.inf
    args[name] = bad
    with pytest.warns(UserWarning, match=rf"{name}: 26 NaN/inf values") as record:
        out = refiner.refine(args["low"], args["high"])
    assert record[0].filename == __file__  # the warning points at the caller
    assert out.shape == HIGH_SIZE and np.isfinite(out).all()


def test_nan_warning_names_the_map_in_a_batch(refiner):
    lows = np.stack([_scene(LOW_SIZE)] * 2)
    lows[1, 0, 0] = np.nan
    with pytest.warns(UserWarning, match=r"depth map 1"):
        out = refiner.refine(lows, np.stack([_scene(HIGH_SIZE)] * 2))
    assert np.isfinite(out).all()


def test_nearest_fill():
    nan = np.nan
    sample = torch.tensor(
        [
            [1.0, nan, nan, nan, nan, nan],
            [nan, nan, nan, nan, nan, nan],
            [nan, nan, nan, nan, nan, 2.0],
            [nan, nan, nan, nan, nan, nan],
            [3.0, nan, nan, nan, nan, nan],
        ]
    )
    valid = torch.isfinite(sample)
    filled = nearest_fill(sample, valid)
    assert filled.dtype == torch.float32 and filled.shape == sample.shape
    assert torch.equal(filled[valid], sample[valid])
    points = valid.nonzero().tolist()
    for y in range(sample.shape[0]):
        for x in range(sample.shape[1]):
            distances = [np.hypot(y - py, x - px) for py, px in points]
            nearest = min(distances)
            candidates = {
                sample[py, px].item()
                for (py, px), d in zip(points, distances, strict=True)
                if d <= nearest + 1e-9
            }
            assert filled[y, x].item() in candidates, (y, x)


def test_nearest_fill_labels_follow_the_valid_pixels():
    """Many valid pixels with distinct values: each pixel takes a value from a valid pixel
    at (approximately) the smallest distance."""
    rng = np.random.default_rng(7)
    valid = rng.random((23, 31)) < 0.1
    values = rng.permutation(23 * 31).reshape(23, 31).astype(np.float32)
    sample = torch.from_numpy(np.where(valid, values, np.nan).astype(np.float32))
    filled = nearest_fill(sample, torch.from_numpy(valid)).numpy()
    where = {values[p]: p for p in zip(*np.nonzero(valid), strict=True)}
    ys, xs = np.nonzero(valid)
    for y in range(23):
        for x in range(31):
            source = where[filled[y, x]]  # the value comes from a valid pixel
            chosen = np.hypot(source[0] - y, source[1] - x)
            assert chosen <= np.hypot(ys - y, xs - x).min() * 1.03 + 1e-9, (y, x)


@pytest.mark.parametrize("channels", [3, 4])
def test_multichannel_depth_uses_channel_0(refiner, channels):
    low, high = _pair()
    rgb = np.stack([high] + [np.random.default_rng(c).random(HIGH_SIZE, dtype=np.float32)
                             for c in range(channels - 1)], axis=-1)
    with pytest.warns(UserWarning, match=rf"high: got a {channels}-channel image") as record:
        out = refiner.refine(low, rgb)
    assert record[0].filename == __file__
    assert out.shape == HIGH_SIZE
    np.testing.assert_allclose(out, refiner.refine(low, high), rtol=1e-5, atol=1e-6)


def test_aspect_ratio_a_few_percent_apart_warns_and_resizes(refiner):
    """40×56 vs 80×120 (1.400 vs 1.500): the pair the CLI and the ComfyUI node tests use."""
    low, high = _scene((40, 56)), _scene((80, 120))
    with pytest.warns(UserWarning, match="low is 40×56 and high is 80×120: their aspect "
                      r"ratios differ \(1.400 vs 1.500\); low is resized") as record:
        out = refiner.refine(low, high)
    assert record[0].filename == __file__
    assert out.shape == (80, 120) and np.isfinite(out).all()


def test_aspect_ratio_far_apart_is_refused(refiner):
    """40×56 vs 80×160 (1.400 vs 2.000): no predictor's rounding, another framing."""
    with pytest.raises(InputError, match="low is 40×56 and high is 80×160: their aspect "
                       r"ratios differ \(1.400 vs 2.000\) by more than 10%"):
        refiner.refine(_scene((40, 56)), _scene((80, 160)))


# ------------------------------------------------------------------------- device and dtype

def test_fp16_on_cpu_is_refused():
    with pytest.raises(InputError, match="fp16"):
        Refiner(_tiny_network(), device="cpu", dtype="fp16")


@pytest.mark.parametrize("dtype", ["int8", "fp8", torch.float64])
def test_unknown_dtype_is_refused(dtype):
    with pytest.raises(InputError, match="dtype"):
        Refiner(_tiny_network(), device="cpu", dtype=dtype)


@pytest.mark.parametrize("device", ["banana", "mps"])
def test_unknown_device_is_refused(device):
    with pytest.raises(InputError, match=device):
        Refiner(_tiny_network(), device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_refused():
    with pytest.raises(InputError, match="CUDA is not available"):
        Refiner(_tiny_network(), device="cuda")
    with pytest.raises(InputError, match="CUDA"):
        build_refiner("small", device="cuda:0")


def test_auto_device_and_dtype_on_cpu():
    refiner = Refiner(_tiny_network(), device="cpu", dtype="auto")
    assert refiner.dtype == torch.float32
    if not torch.cuda.is_available():
        assert Refiner(_tiny_network()).device.type == "cpu"


def test_bf16_on_cpu_is_close_to_fp32():
    network = _tiny_network()
    fp32 = Refiner(copy.deepcopy(network), device="cpu", dtype="fp32")
    bf16 = Refiner(copy.deepcopy(network), device="cpu", dtype="bf16")
    low, high = _pair()
    a, b = fp32.refine(low, high), bf16.refine(low, high)
    assert b.dtype == np.float32
    # Gradient maps, as G_S and Eq. 11 read them. A random network's deep layers differ by a
    # few percent in bf16 (measured 5–9 % over seeds 0–3); the tight check that fine depth
    # steps reach D0 unquantised is test_network's test_depth_keeps_full_precision….
    value_range = float(a.max() - a.min())
    expected = gradient_magnitude(a, value_range)
    assert np.abs(gradient_magnitude(b, value_range) - expected).mean() < 0.15 * expected.mean()


def test_built_and_loaded_networks_are_channels_last(tmp_path):
    for refiner in (build_refiner("small"),
                    load_refiner(Refiner(_tiny_network()).save(tmp_path / "t.safetensors"))):
        conv = refiner.network.encoder.stem[0][0]
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        assert not refiner.network.training


def test_a_callers_network_is_left_as_it_was():
    """A trainer may wrap its live model: refining must not switch off its training mode
    (drop-path) or change its weights or their memory format."""
    network = _tiny_network().train()
    network.decoder.eval()  # a mixed state must come back as it was, module by module
    modes = [m.training for m in network.modules()]
    state = copy.deepcopy(network.state_dict())
    formats = [p.is_contiguous() for p in network.parameters()]
    refined = Refiner(network, device="cpu").refine(*_pair())
    assert np.isfinite(refined).all()
    assert [m.training for m in network.modules()] == modes
    assert [p.is_contiguous() for p in network.parameters()] == formats
    assert all(torch.equal(state[k], v) for k, v in network.state_dict().items())


def test_refining_runs_the_network_in_eval_mode():
    """Drop-path would make a train-mode forward random; refine must be deterministic."""
    config = dataclasses.replace(TINY, drop_path=0.9)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        network = RefinementNetwork(config).train()
    refiner = Refiner(network, device="cpu")
    low, high = _pair()
    np.testing.assert_array_equal(refiner.refine(low, high), refiner.refine(low, high))


# ---------------------------------------------------------------------------- robustness

def _outlier_change(refiner, which: str, value: float) -> float:
    """Largest change of the refined map away from one extreme pixel, as a fraction of the
    output's range."""
    low, high = _pair(LOW_SIZE, HIGH_SIZE)
    clean = refiner.refine(low, high)
    spoiled = {"low": low.copy(), "high": high.copy()}
    target = spoiled[which]
    target[target.shape[0] // 3, target.shape[1] // 3] = value
    result = refiner.refine(spoiled["low"], spoiled["high"])
    away = np.ones(clean.shape, bool)
    row, col = (np.array(clean.shape) // 3).tolist()
    away[max(0, row - 8):row + 9, max(0, col - 8):col + 9] = False
    return float(np.abs(result - clean)[away].max() / np.ptp(clean))


class _Blend(torch.nn.Module):
    """A stand-in N_r whose D0 is the mean of its two inputs: it isolates what the Refiner
    does around the network (normalisation, sizing, alignment) from a random network's
    arbitrary sensitivity."""

    def __init__(self):
        super().__init__()
        self.config = TINY

    def forward(self, low, high):
        return NetworkOutput((low + high) / 2, [])


@pytest.mark.parametrize("which", ["low", "high"])
@pytest.mark.parametrize("value", [1e6, -1e6])
def test_one_extreme_pixel_barely_changes_the_output_elsewhere(which, value):
    """Real predictors leave holes and reflections with extreme values; min-max
    normalisation (or a least-squares fit that counts them) would let one such pixel squash
    the whole map (min-max and a plain fit: changes of 0.4 to 960× the range)."""
    assert _outlier_change(Refiner(_Blend(), device="cpu"), which, value) < 0.005


def test_one_extreme_pixel_and_a_random_network(refiner):
    """The same through a (random) N_r, whose attention sees the clipped pixel everywhere:
    bounded, not zero (measured 0.045 for low, 0.018 for high; min-max: up to 273×)."""
    assert max(_outlier_change(refiner, which, 1e6) for which in ("low", "high")) < 0.1


def test_extreme_finite_range_gives_a_finite_map(refiner):
    """Values near ±3e38 are finite float32; the normalisation must not overflow."""
    low, high = _pair()
    low, high = low - low.mean(), high - high.mean()  # both signs: max − min is 6e38
    huge_low, huge_high = (3e38 / np.abs(m).max() * m for m in (low, high))
    with np.errstate(over="ignore"):
        assert np.isfinite(huge_low).all() and np.isinf(np.ptp(huge_low.astype(np.float32)))
    refined = refiner.refine(huge_low, huge_high)
    assert np.isfinite(refined).all()
    reference = refiner.refine(low, high)
    assert _pearson(refined, reference) > 0.999


def test_normalise_maps_uses_robust_quantiles():
    maps = torch.linspace(0, 1, 10_000).reshape(1, 100, 100)
    maps[0, 0, 0] = 1e30
    normalised = normalise_maps(maps)
    assert normalised.dtype == torch.float32
    assert float(normalised.min()) == 0.0 and float(normalised.max()) == 1.0
    # the outlier is clipped instead of defining the range: the ramp keeps its spread
    assert float(normalised[0, 50, 50]) == pytest.approx(0.5, abs=0.01)
    low, high = robust_range(maps)
    assert float(high) < 1.0


def test_robust_range_of_a_large_map_comes_from_a_subsample():
    """Past SAMPLE_PIXELS the quantiles come from an even subsample: still the ramp's range
    (within the clipped 0.1% tails), and an outlier still cannot set it."""
    side = 1024
    assert side * side > 4 * SAMPLE_PIXELS
    maps = torch.linspace(-5, 5, side * side).reshape(1, side, side)
    maps[0, side // 2, side // 2 + 1] = 1e30
    low, high = robust_range(maps)
    assert float(low) == pytest.approx(-5, abs=0.02) and float(high) == pytest.approx(5, abs=0.02)


def test_network_inputs_size_pad_and_layout():
    low, high = torch.rand(2, 30, 40) + 1, torch.rand(2, 90, 120) + 1
    a, b = network_inputs(low, high, (90, 120), stride=32, margin=8)
    assert a.shape == b.shape == (2, 1, 128, 160)  # 90 + 16 → 128, 120 + 16 → 160
    assert a.is_contiguous(memory_format=torch.channels_last)
    top, bottom, left, right = padding((90, 120), 32, 8)
    assert (top, bottom, left, right) == (19, 19, 20, 20)
    normalised = normalise_maps(high)[:, None]
    torch.testing.assert_close(b[:, :, top : top + 90, left : left + 120], normalised)
    # mirrored about the edge pixel, which is not repeated
    torch.testing.assert_close(b[:, :, top - 3, left:-right], normalised[:, :, 3])
    torch.testing.assert_close(b[:, :, -bottom + 2, left:-right], normalised[:, :, -4])


@pytest.mark.parametrize("side", [1, 5, 120, 127, 128, 200])
@pytest.mark.parametrize("margin", [0, 8])
def test_padding_keeps_the_margin_and_reaches_the_stride(side, margin):
    top, bottom, left, right = padding((side, side + 3), 128, margin)
    assert min(top, bottom, left, right) >= margin
    assert (side + top + bottom) % 128 == 0 and (side + 3 + left + right) % 128 == 0
    assert (side + top + bottom, side + 3 + left + right) == padded_size((side, side + 3), 128,
                                                                         margin)
    assert 0 <= bottom - top <= 1 and 0 <= right - left <= 1


def test_training_crops_are_not_padded():
    """A crop that is a multiple of the stride, with no margin, reaches N_r as it is."""
    assert padding((384, 256), 128) == (0, 0, 0, 0)


def test_mirror_pad_replicates_what_a_small_map_cannot_reflect():
    maps = torch.tensor([[[[1.0, 2.0, 3.0]]]])
    padded = mirror_pad(maps, 0, 0, 4, 1)
    assert padded[0, 0, 0].tolist() == [3.0, 3.0, 3.0, 2.0, 1.0, 2.0, 3.0, 2.0]


class _EchoHigh(torch.nn.Module):
    """A stand-in N_r whose D0 is its high input: the refiner must hand back exactly it."""

    def __init__(self):
        super().__init__()
        self.config = TINY

    def forward(self, low, high):
        return NetworkOutput(high, [])


@pytest.mark.parametrize("size", [(96, 160), (128, 256), (203, 77)])
def test_refiner_crops_the_margin_off_where_it_put_it(size):
    """The output is read back from the padded frame at the offsets the padding used: a
    network that echoes its high input gives the high input back, pixel for pixel."""
    # ten levels: the robust range is the full range, so normalising clips nothing
    depth = torch.randint(1, 11, size, generator=torch.Generator().manual_seed(3)).float()
    refiner = Refiner(_EchoHigh(), device="cpu", dtype="float32")
    assert BORDER_MARGIN > 0
    working = refiner.network_input_size(*size)
    assert working[0] - size[0] >= 2 * BORDER_MARGIN and working[1] - size[1] >= 2 * BORDER_MARGIN
    torch.testing.assert_close(refiner.refine(depth, depth), depth, rtol=0, atol=1e-5)


def test_broken_weights_raise_instead_of_writing_nan():
    network = _tiny_network()
    with torch.no_grad():
        next(network.parameters()).fill_(float("nan"))
    with pytest.raises(sddr_core.SddrError, match="NaN"):
        Refiner(network, device="cpu").refine(*_pair())


def test_constant_network_output_is_an_error():
    network = RefinementNetwork(dataclasses.replace(TINY, residual=False))
    with torch.no_grad():
        for parameter in network.decoder.ups[0].parameters():
            parameter.zero_()
    with pytest.raises(sddr_core.SddrError, match="constant"):
        Refiner(network, device="cpu").refine(*_pair())


def test_public_api():
    assert callable(sddr_core.load_refiner) and callable(sddr_core.build_refiner)
    assert issubclass(sddr_core.InputError, sddr_core.SddrError)
    assert issubclass(sddr_core.WeightsError, sddr_core.SddrError)


# ------------------------------------------------------------------------------------ CUDA

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
class TestCuda:
    @staticmethod
    def _relative_error(result, reference) -> float:
        result = np.asarray(result, dtype=np.float64)
        reference = np.asarray(reference, dtype=np.float64)
        spread = np.linalg.norm(reference - reference.mean())
        return float(np.linalg.norm(result - reference) / spread)

    @pytest.mark.parametrize("dtype", ["fp16", "bf16", "fp32"])
    def test_matches_cpu_fp32(self, dtype):
        network = _tiny_network(seed=11)
        cpu = Refiner(copy.deepcopy(network), device="cpu", dtype="fp32")
        gpu = Refiner(copy.deepcopy(network), device="cuda", dtype=dtype)
        low, high = _pair()
        reference = cpu.refine(low, high)
        result = gpu.refine(low, high)
        assert isinstance(result, np.ndarray) and result.dtype == np.float32
        assert result.shape == HIGH_SIZE
        assert self._relative_error(result, reference) < 5e-2

        # A tensor on the GPU comes back on the GPU.
        tensor = gpu.refine(torch.from_numpy(low).cuda(), torch.from_numpy(high).cuda())
        assert tensor.device.type == "cuda" and tensor.dtype == torch.float32
        assert self._relative_error(tensor.cpu().numpy(), reference) < 5e-2

    def test_auto_dtype_is_fp16_and_channels_last(self, tmp_path):
        path = Refiner(_tiny_network()).save(tmp_path / "tiny.safetensors")
        gpu = load_refiner(path, device="cuda")
        assert gpu.dtype == torch.float16
        conv = gpu.network.encoder.stem[0][0]
        assert conv.weight.device.type == "cuda"
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        low, high = _pair()
        contiguous = gpu.refine(torch.from_numpy(low).cuda(), torch.from_numpy(high).cuda())
        strided = torch.from_numpy(np.ascontiguousarray(high.T)).cuda().T  # non-contiguous
        other = gpu.refine(torch.from_numpy(low).cuda(), strided)
        torch.testing.assert_close(other, contiguous, rtol=1e-3, atol=1e-3)

    def test_compiled_refiner(self, tmp_path):
        path = Refiner(_tiny_network(seed=12), device="cpu").save(tmp_path / "tiny.safetensors")
        eager = load_refiner(path, device="cuda", dtype="fp32")
        compiled = load_refiner(path, device="cuda", dtype="fp32", compile=True)
        low, high = _pair()
        reference = eager.refine(low, high)
        result = compiled.refine(low, high)
        assert result.shape == HIGH_SIZE
        assert self._relative_error(result, reference) < 1e-2
        # A second size reuses the dynamic-shape graph.
        low2, high2 = _pair((40, 60), (130, 190))
        assert compiled.refine(low2, high2).shape == (130, 190)
