"""The refinement network N_r: shapes, shared encoder, cross-attention, gradients, configs."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from sddr_core import WeightsError
from sddr_core.network import PRESETS, NetworkConfig
from sddr_core.network.cross_attention import CrossResolutionAttention, sine_position_encoding
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


# ---------------------------------------------------------------------------------- configs

def test_preset_parameter_counts():
    base = _parameter_count(RefinementNetwork(PRESETS["base"]))
    small = _parameter_count(RefinementNetwork(PRESETS["small"]))
    assert 7_000_000 <= base <= 10_000_000
    assert 0 < small < base / 3


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


def test_config_from_json_refuses_missing_field():
    fields = json.loads(TINY.to_json())
    del fields["max_side"]
    with pytest.raises(WeightsError, match="max_side"):
        NetworkConfig.from_json(json.dumps(fields))


def test_config_from_json_refuses_non_object():
    with pytest.raises(WeightsError):
        NetworkConfig.from_json("[]")
