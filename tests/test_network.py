"""The refinement network N_r: shapes, shared encoder, cross-attention, gradients, precision,
output up-sampling, configs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sddr_core import InputError, WeightsError
from sddr_core.maps import row_bands
from sddr_core.maps.gradients import gradient_magnitude
from sddr_core.network import PRESETS, NetworkConfig
from sddr_core.network.cross_attention import CrossResolutionAttention, sine_position_encoding
from sddr_core.network.decoder import SubPixelOutput
from sddr_core.network.model import RefinementNetwork
from tests.tiny import TINY


def _tiny_network(seed: int = 0, **changes) -> RefinementNetwork:
    torch.manual_seed(seed)
    return RefinementNetwork(dataclasses.replace(TINY, **changes))


def _parameter_count(network: torch.nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


@pytest.fixture(scope="module")
def network() -> RefinementNetwork:
    return _tiny_network().eval()


# ------------------------------------------------------------------------------------ shapes

@pytest.mark.parametrize("size", [(128, 384), (384, 128), (256, 256)])
@pytest.mark.parametrize("with_aux", [False, True])
def test_output_shapes(network, size, with_aux):
    height, width = size
    generator = torch.Generator().manual_seed(1)
    low = torch.rand(2, 1, height, width, generator=generator)
    high = torch.rand(2, 1, height, width, generator=generator)
    with torch.no_grad():
        out = network(low, high, with_aux=with_aux)

    assert out.depth.shape == (2, 1, height, width)
    assert out.depth.dtype == torch.float32
    assert torch.isfinite(out.depth).all()

    assert len(out.omegas) == 6  # 1/2, 1/4, ..., 1/64, finest first
    for level, omega in enumerate(out.omegas, start=1):
        assert omega.shape == (2, 1, height >> level, width >> level), level
        assert omega.min() >= 0 and omega.max() <= 1

    if with_aux:
        assert set(out.aux) == {"half", "quarter"}
        assert out.aux["half"].shape == (2, 1, height // 2, width // 2)
        assert out.aux["quarter"].shape == (2, 1, height // 4, width // 4)
        assert all(torch.isfinite(a).all() for a in out.aux.values())
    else:
        assert out.aux == {}


@pytest.mark.parametrize(
    ("low_shape", "high_shape"),
    [
        ((1, 1, 100, 128), (1, 1, 100, 128)),  # height not a multiple of 128
        ((1, 1, 128, 200), (1, 1, 128, 200)),  # width not a multiple of 128
        ((1, 1, 64, 64), (1, 1, 64, 64)),
        ((1, 1, 128, 128), (1, 1, 128, 256)),  # low and high differ
        ((1, 1, 128, 128), (2, 1, 128, 128)),  # batch sizes differ
        ((1, 2, 128, 128), (1, 2, 128, 128)),  # two channels
    ],
)
def test_network_refuses_bad_input_shapes(network, low_shape, high_shape):
    with pytest.raises(ValueError, match="128"):
        network(torch.rand(low_shape), torch.rand(high_shape))


# ---------------------------------------------------------------------------- shared encoder

def test_encoder_is_shared_and_called_once_on_both_inputs(network):
    calls = []
    handle = network.encoder.register_forward_hook(
        lambda module, args, output: calls.append((args[0], output))
    )
    try:
        x = torch.rand(2, 1, 128, 256, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            network(x, x.clone())
    finally:
        handle.remove()

    assert len(calls) == 1, "low and high must go through one encoder call (one batch)"
    encoder_input, features = calls[0]
    assert encoder_input.shape[0] == 4
    assert len(features) == 7
    for feature in features:  # same map as low and as high → the very same features
        assert torch.equal(feature[:2], feature[2:])
    # Only one encoder exists in the model: no separate low/high branches.
    encoders = [m for m in network.modules() if type(m) is type(network.encoder)]
    assert encoders == [network.encoder]


def test_encoder_features_are_per_sample(network):
    generator = torch.Generator().manual_seed(3)
    a = torch.rand(1, 1, 128, 128, generator=generator)
    b = torch.rand(1, 1, 128, 128, generator=generator)
    with torch.no_grad():
        alone = network.encoder(a)
        together = network.encoder(torch.cat([a, b]))
    strides = [2, 4, 8, 16, 32, 64, 128]
    for feature, joint, stride in zip(alone, together, strides, strict=True):
        assert feature.shape[-2:] == (128 // stride, 128 // stride)
        torch.testing.assert_close(feature, joint[:1], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- cross-attention

def test_cross_attention_preserves_shapes_and_mixes_information():
    torch.manual_seed(4)
    attention = CrossResolutionAttention(dim=32, heads=4, layers=2, level_embedding=True).eval()
    low = torch.randn(2, 32, 3, 5)
    high = torch.randn(2, 32, 3, 5)
    with torch.no_grad():
        new_low, new_high = attention(low, high)
        assert new_low.shape == low.shape and new_high.shape == high.shape

        # Change the high-res feature at one location only: the low branch changes, also at
        # other locations (tokens of both maps attend to each other across the whole grid).
        changed_high = high.clone()
        # (a random vector: a constant offset would be removed by the LayerNorms)
        changed_high[:, :, 0, 0] += 3 * torch.randn(2, 32)
        other_low, _ = attention(low, changed_high)
    difference = (other_low - new_low).abs()
    assert difference.max() > 1e-4
    assert difference[:, :, 2, 4].max() > 1e-6
    # Sample 0 does not see sample 1.
    changed_high_one = high.clone()
    changed_high_one[1] += 3 * torch.randn(32, 3, 5)
    with torch.no_grad():
        batch_low, _ = attention(low, changed_high_one)
    assert torch.allclose(batch_low[0], new_low[0], atol=1e-6)
    assert not torch.allclose(batch_low[1], new_low[1], atol=1e-4)


def test_network_low_branch_sees_high_input(network):
    """In the full network, the deepest low feature after cross-attention depends on high."""
    captured = []
    handle = network.cross_attention.register_forward_hook(
        lambda module, args, output: captured.append(output[0].clone())
    )
    generator = torch.Generator().manual_seed(5)
    low = torch.rand(1, 1, 256, 256, generator=generator)
    high = torch.rand(1, 1, 256, 256, generator=generator)
    try:
        with torch.no_grad():
            network(low, high)
            network(low, torch.rand(1, 1, 256, 256, generator=generator))
    finally:
        handle.remove()
    assert len(captured) == 2
    assert not torch.allclose(captured[0], captured[1], atol=1e-6)


def test_cross_attention_rejects_width_not_multiple_of_4():
    with pytest.raises(ValueError, match="multiple of 4"):
        CrossResolutionAttention(dim=30, heads=2, layers=1, level_embedding=True)


def test_sine_position_encoding_shape_dtype_and_distinct_codes():
    like = torch.zeros(1, dtype=torch.float64)
    code = sine_position_encoding(6, 9, 32, like)
    assert code.shape == (6 * 9, 32)
    assert code.dtype == torch.float64
    assert code.abs().max() <= 1.0 + 1e-12
    distances = torch.cdist(code, code)
    distances.fill_diagonal_(float("inf"))
    assert distances.min() > 1e-3, "two positions share a code"
    # First half of the channels varies with y only, second half with x only.
    grid = code.reshape(6, 9, 32)
    assert torch.allclose(grid[:, :1, :16].expand(6, 9, 16), grid[..., :16])
    assert torch.allclose(grid[:1, :, 16:].expand(6, 9, 16), grid[..., 16:])


# -------------------------------------------------------------------------------- gradients

def test_gradient_reaches_every_parameter():
    network = _tiny_network(seed=6, drop_path=0.0).train()
    generator = torch.Generator().manual_seed(6)
    low = torch.rand(2, 1, 128, 256, generator=generator)
    high = torch.rand(2, 1, 128, 256, generator=generator)
    out = network(low, high, with_aux=True)
    target = torch.rand(2, 1, 128, 256, generator=generator)
    loss = (out.depth - target).pow(2).mean()
    loss = loss + sum(a.pow(2).mean() for a in out.aux.values())
    loss = loss + sum(o.mean() for o in out.omegas)
    loss.backward()

    no_grad = [n for n, p in network.named_parameters() if p.grad is None]
    assert no_grad == []
    not_finite = [n for n, p in network.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not_finite == []
    zero = [n for n, p in network.named_parameters() if not p.grad.abs().sum() > 0]
    assert zero == []


def test_gradient_with_drop_path_in_training_mode():
    network = _tiny_network(seed=7).train()
    out = network(torch.rand(2, 1, 128, 128), torch.rand(2, 1, 128, 128), with_aux=True)
    (out.depth.mean() + out.aux["half"].mean() + out.aux["quarter"].mean()).backward()
    assert [n for n, p in network.named_parameters() if p.grad is None] == []


# ------------------------------------------------------------------------------- precision

def _ramp(height: int = 128, width: int = 2048) -> torch.Tensor:
    """A full-range horizontal ramp: one step of 1/width per pixel."""
    return torch.linspace(0, 1, width).expand(1, 1, height, width).contiguous()


def _autocast_depth(network, x: torch.Tensor, device: str, dtype: torch.dtype | None):
    with torch.inference_mode(), torch.autocast(device, dtype=dtype or torch.float32,
                                                enabled=dtype is not None):
        return network(x.to(device), x.to(device)).depth[0, 0].float().cpu().numpy()


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs CUDA")]),
])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_depth_keeps_full_precision_under_autocast(device, dtype):
    """The input layer and the output head run in fp32: a ramp that reaches D0 through the
    finest skip (the decoder's deeper path switched off) comes out as in fp32, and so does
    its gradient map, which half-precision layers would turn into a staircase."""
    if device == "cpu" and dtype == torch.float16:
        pytest.skip("CPU inference uses bf16, not fp16")
    network = _tiny_network(seed=8).eval().to(device)
    with torch.no_grad():  # r at 1/2 = 0: D0 = head(GN(F_1/2)), with F_low = F_high
        network.decoder.ups[1].conv.weight.zero_()
        network.decoder.ups[1].conv.bias.zero_()
    x = _ramp()
    full = _autocast_depth(network, x, device, None)
    half = _autocast_depth(network, x, device, dtype)
    assert len(np.unique(full[64])) > 2000
    assert len(np.unique(half[64])) >= 0.99 * len(np.unique(full[64]))
    value_range = float(full.max() - full.min())
    expected = gradient_magnitude(full, value_range)
    error = np.abs(gradient_magnitude(half, value_range) - expected)
    assert error.max() <= 1e-3 * expected.mean()


def test_half_precision_keeps_distinct_depth_values():
    """The whole tiny network under bf16: D0 of a 2048-px ramp keeps about one value per pixel
    (with the head in bf16 it kept 52–862 per row)."""
    network = _tiny_network(seed=2).eval()
    x = _ramp(256)
    full = _autocast_depth(network, x, "cpu", None)
    half = _autocast_depth(network, x, "cpu", torch.bfloat16)
    assert half.dtype == np.float32
    assert len(np.unique(full[128])) > 2000
    assert len(np.unique(half[128])) >= 0.95 * len(np.unique(full[128]))


# ------------------------------------------------------------------------- output up-sampling

@pytest.mark.parametrize("residual", [False, True])
def test_residual_output_adds_the_decoded_map_to_the_high_input(residual):
    """With the output head silenced, a residual network returns the high input (and its
    average-pooled copies as deep supervision); the paper's direct output returns zeros."""
    network = _tiny_network(residual=residual).eval()
    with torch.no_grad():
        network.decoder.ups[0].conv.weight.zero_()
        network.decoder.ups[0].conv.bias.zero_()
        for head in (network.decoder.aux_half, network.decoder.aux_quarter):
            head.conv.weight.zero_()
            head.conv.bias.zero_()
        low, high = torch.rand(2, 1, 128, 256), torch.rand(2, 1, 128, 256)
        output = network(low, high, with_aux=True)
    expected = high if residual else torch.zeros_like(high)
    torch.testing.assert_close(output.depth, expected)
    for name, factor in (("half", 2), ("quarter", 4)):
        pooled = F.avg_pool2d(high, factor)
        torch.testing.assert_close(output.aux[name], pooled if residual else pooled * 0)


def test_correction_filter_makes_the_correction_follow_the_high_input():
    """With the filter, the correction D0 − high is flat where the high input is flat (less
    variation between neighbours than the decoder's own correction), and the same weights
    without it keep their correction as decoded."""
    plain = _tiny_network(seed=3).eval()
    filtered = _tiny_network(seed=3, correction_filter_radius=8).eval()
    filtered.load_state_dict(plain.state_dict())
    low = torch.rand(1, 1, 128, 256)
    high = (torch.arange(256) >= 128).float().expand(1, 1, 128, 256).contiguous()
    with torch.no_grad():
        corrections = [network(low, high).depth - high for network in (plain, filtered)]
    flat = (slice(None), slice(None), slice(8, -8), slice(8, 120))
    roughness = [c[flat].diff(dim=-1).abs().mean() for c in corrections]
    assert roughness[1] < 0.5 * roughness[0]
    untouched = _tiny_network(seed=3).eval()
    with torch.no_grad():
        torch.testing.assert_close(untouched(low, high).depth, corrections[0] + high)


def test_full_resolution_head_starts_silent_and_sharpens_a_blurred_step_on_its_own():
    """The head's last conv starts at zero, so the output equals the same weights without it;
    trained alone (everything else frozen) on a step blurred over 7 px, it brings D0 to less
    than half of its starting L1 distance from the sharp step, at full resolution."""
    plain = _tiny_network(seed=4, residual=True).eval()
    headed = _tiny_network(seed=4, residual=True, full_resolution_head=8).eval()
    headed.load_state_dict(plain.state_dict(), strict=False)
    step = (torch.arange(128) >= 61).float().expand(1, 1, 128, 128).contiguous()
    blurred = F.avg_pool2d(F.pad(step, (3, 3, 0, 0), mode="replicate"), (1, 7), stride=1)
    with torch.no_grad():
        torch.testing.assert_close(headed(blurred, blurred).depth, plain(blurred, blurred).depth)
        start = float((headed(blurred, blurred).depth - step).abs().mean())
    optimiser = torch.optim.Adam(headed.full_resolution_head.parameters(), lr=1e-2)
    for _ in range(100):
        optimiser.zero_grad()
        loss = (headed(blurred, blurred).depth - step).abs().mean()
        loss.backward()
        optimiser.step()
    assert float(loss) < 0.5 * start


def test_correction_filter_keeps_an_affine_copy_of_the_high_input_exactly():
    """D0's scale is free, so D0 may be 3·high − 1 plus a correction; the filter must keep the
    affine part as it is even where the high input varies gently (well below √ε), where a
    guided filter alone would smooth it."""
    network = _tiny_network(correction_filter_radius=4).eval()
    smooth = F.avg_pool2d(torch.rand(1, 1, 160, 288), 33, stride=1)  # gentle, curved
    high = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    depth = 3 * high - 1
    torch.testing.assert_close(network._filtered(depth, high), depth, atol=1e-5, rtol=0)


def test_correction_filter_in_bands_of_rows_is_the_filter_in_one_piece(monkeypatch):
    """On the CPU the filter runs a band of rows at a time (`maps.row_bands`), each band with
    twice the filter's radius of rows around it: the result must not show the bands."""
    network = _tiny_network(correction_filter_radius=4).eval()
    generator = torch.Generator().manual_seed(7)
    high = torch.rand(2, 1, 75, 33, generator=generator)
    depth = 2 * high + 0.3 * torch.rand(2, 1, 75, 33, generator=generator)
    whole = network._filtered(depth, high)
    monkeypatch.setattr(row_bands, "BAND_PIXELS", 5 * 33)
    monkeypatch.setattr(row_bands, "MIN_BAND_ROWS", 5)  # 15 bands of 5 rows
    banded = network._filtered(depth, high)
    assert not torch.allclose(whole, depth, atol=1e-3)
    torch.testing.assert_close(banded, whole, rtol=0, atol=1e-6)


def test_output_head_starts_as_bilinear_up_sampling():
    """ICNR with bilinear phases: at initialisation the sub-pixel head equals a 1×1
    projection at 1/2 resolution followed by bilinear ×2 up-sampling."""
    torch.manual_seed(9)
    head = SubPixelOutput(8)
    x = torch.randn(2, 8, 24, 32)
    with torch.no_grad():
        out = head(x)
        weight = head.conv.weight  # 4 × 8 × 3 × 3
        projection = weight.sum(dim=(2, 3))[0]  # each phase's taps sum to 1
        expected = F.interpolate(
            F.conv2d(head.norm(x), projection[None, :, None, None], head.conv.bias[:1]),
            scale_factor=2, mode="bilinear", align_corners=False,
        )
    assert torch.allclose(weight.sum(dim=(2, 3)), projection.expand(4, 8))
    inner = (..., slice(2, -2), slice(2, -2))  # the borders pad differently (zeros, clamp)
    torch.testing.assert_close(out[inner], expected[inner], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_no_checkerboard_in_depth_gradient_at_initialisation(seed):
    """The four 2×2 phases of ∇D0 on a smooth input have equal means (within 10 %; with
    independently initialised sub-pixel kernels they differed by 18–142 %)."""
    network = _tiny_network(seed=seed).eval()
    y, x = torch.meshgrid(torch.linspace(0, 1, 256), torch.linspace(0, 1, 384), indexing="ij")
    smooth = (x + 0.5 * y + 0.2 * torch.sin(3 * x + 2 * y))[None, None].contiguous()
    gradient = gradient_magnitude(_autocast_depth(network, smooth, "cpu", None))[8:-8, 8:-8]
    phases = [gradient[a::2, b::2].mean() for a in (0, 1) for b in (0, 1)]
    assert max(phases) / min(phases) - 1 < 0.1


# ---------------------------------------------------------------------------------- configs

def test_preset_parameter_counts():
    base = _parameter_count(RefinementNetwork(PRESETS["base"]))
    small = _parameter_count(RefinementNetwork(PRESETS["small"]))
    assert 7_000_000 <= base <= 10_000_000
    assert 0 < small < base / 3


def test_small_preset_costs_at_most_a_third_of_base():
    """The CPU default is the cheap one: FLOPs counted by torch, not timed. At 512² to keep
    the test fast; the ratio is the same at 1024² and 2048² (0.307, docs/architecture.md)."""
    with torch.random.fork_rng(devices=[]):
        base = RefinementNetwork(PRESETS["base"]).eval().flops(512, 512)
        small = RefinementNetwork(PRESETS["small"]).eval().flops(512, 512)
    assert 0 < small <= base / 3


def test_network_runs_on_the_meta_device():
    """Shapes without data (for memory planning): the fp32 islands skip autocast there."""
    network = _tiny_network().eval().to("meta")
    x = torch.zeros(1, 1, 128, 256, device="meta")
    with torch.inference_mode():
        assert network(x, x).depth.shape == (1, 1, 128, 256)


@pytest.mark.parametrize("config", [TINY, PRESETS["base"], PRESETS["small"]])
def test_config_json_round_trip(config):
    text = config.to_json()
    back = NetworkConfig.from_json(text)
    assert back == config
    assert back.to_json() == text
    assert isinstance(back.stem_channels, tuple) and isinstance(back.embed_dims, tuple)
    # The rebuilt config builds the same architecture.
    rebuilt = {k: v.shape for k, v in RefinementNetwork(back).state_dict().items()}
    original = {k: v.shape for k, v in RefinementNetwork(config).state_dict().items()}
    assert rebuilt == original


def test_config_from_json_refuses_unknown_field():
    fields = json.loads(TINY.to_json())
    fields["attention_window"] = 7
    with pytest.raises(WeightsError, match="attention_window"):
        NetworkConfig.from_json(json.dumps(fields))


def test_config_from_json_refuses_invalid_json():
    with pytest.raises(WeightsError, match="JSON"):
        NetworkConfig.from_json("{not json")


def test_config_from_json_gives_missing_fields_their_defaults():
    """A file written before a field existed reads with the field's default."""
    config = dataclasses.replace(TINY, level_embedding=True, upsample_mode="bilinear",
                                 residual=False)
    fields = json.loads(config.to_json())
    del fields["level_embedding"], fields["upsample_mode"], fields["residual"]
    assert NetworkConfig.from_json(json.dumps(fields)) == config


def test_config_from_json_drops_the_legacy_max_side():
    """Version-1 files carry `max_side`, now a Refiner setting: read, then ignored."""
    fields = json.loads(TINY.to_json())
    fields["max_side"] = 0
    assert NetworkConfig.from_json(json.dumps(fields)) == TINY
    assert "max_side" not in json.loads(TINY.to_json())


INVALID_CONFIGS = [
    ("num_heads", {"num_heads": (1, 1, 1, 5)}),  # 5 heads do not divide the width 32
    ("num_heads", {"num_heads": (0, 1, 1, 2)}),
    ("upsample_mode", {"upsample_mode": "nearest-exact"}),
    ("stem_channels", {"stem_channels": (4, 0, 8)}),
    ("stem_channels", {"stem_channels": (4, 8)}),
    ("embed_dims", {"embed_dims": (8, 16, 16, 30), "num_heads": (1, 1, 1, 1)}),
    ("depths", {"depths": (1, -1, 1, 1)}),
    ("sr_ratios", {"sr_ratios": (8, 4, 2, 0)}),
    ("mlp_ratio", {"mlp_ratio": 2.5}),
    ("drop_path", {"drop_path": 1.0}),
    ("cross_attention_layers", {"cross_attention_layers": -1}),
    ("cross_attention_heads", {"cross_attention_heads": 3}),
    ("level_embedding", {"level_embedding": "yes"}),
    ("residual", {"residual": 1}),
    ("correction_filter_radius", {"correction_filter_radius": -1}),
    ("correction_filter_radius", {"correction_filter_radius": 4, "residual": False}),
    ("correction_filter_eps", {"correction_filter_eps": 0}),
    ("full_resolution_head", {"full_resolution_head": -1}),
    ("full_resolution_head", {"full_resolution_head": 8, "residual": False}),
]


@pytest.mark.parametrize(("field", "changes"), INVALID_CONFIGS)
def test_invalid_config_is_refused_naming_the_field(field, changes):
    with pytest.raises(InputError, match=f"'{field}'"):
        dataclasses.replace(TINY, **changes)
    fields = json.loads(TINY.to_json())
    fields.update(changes)
    with pytest.raises(WeightsError, match=f"'{field}'"):
        NetworkConfig.from_json(json.dumps(fields))


def test_any_width_builds_its_group_norms():
    """A width that 8 does not divide into whole groups (44 → 5) still builds and runs."""
    network = _tiny_network(stem_channels=(4, 8, 44)).eval()
    with torch.no_grad():
        out = network(torch.rand(1, 1, 128, 128), torch.rand(1, 1, 128, 128))
    assert torch.isfinite(out.depth).all()


def test_config_from_json_refuses_non_object():
    with pytest.raises(WeightsError):
        NetworkConfig.from_json("[]")
