"""Export: a checkpoint becomes a weights file `load_refiner` reads, fp16 only where the
measured change of the output stays within tolerance; wrong inputs are refused."""

import argparse
import copy
import dataclasses

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch.optim.swa_utils import AveragedModel

import sddr_core
from sddr_core.errors import InputError, WeightsError
from sddr_core.files.weights import load_network, save_network
from sddr_core.inference.refiner import Refiner
from sddr_core.network import RefinementNetwork
from tests.tiny import TINY, TINY_MAX_SIDE
from training.checkpoint import load_weights, save_checkpoint
from training.export import TOLERANCE, add_arguments, export_checkpoint


def _train_step(model: RefinementNetwork, optimizer: torch.optim.Optimizer) -> None:
    low = torch.rand(1, 1, 128, 128)
    loss = (model(low, low + 0.05 * torch.randn(low.shape)).depth - low).abs().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint after one AdamW step, with an EMA (the mean of the weights before and
    after it, so it differs from the model): (path, model, EMA network)."""
    torch.manual_seed(0)
    model = RefinementNetwork(TINY)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ema = AveragedModel(model)
    ema.update_parameters(model)
    _train_step(model, optimizer)
    ema.update_parameters(model)
    assert not torch.equal(model.decoder.ups[0].conv.weight, ema.module.decoder.ups[0].conv.weight)
    path = save_checkpoint(tmp_path_factory.mktemp("run"), 1, model, optimizer, ema=ema)
    return path, model, ema.module


def _checkpoint(folder, spoil=None, residual=TINY.residual):
    """A checkpoint of a fresh tiny model without EMA, `spoil`ed first when given:
    (path, model)."""
    torch.manual_seed(0)
    model = RefinementNetwork(dataclasses.replace(TINY, residual=residual))
    if spoil is not None:
        with torch.no_grad():
            spoil(model)
    return save_checkpoint(folder, 0, model, torch.optim.AdamW(model.parameters())), model


def _rounded(network: RefinementNetwork) -> dict[str, torch.Tensor]:
    return {k: v.half().float() for k, v in network.state_dict().items()}


def _assert_weights(file, expected: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    """The file holds `dtype` tensors and `load_network` turns them into exactly `expected`,
    in an fp32 network."""
    with safe_open(str(file), framework="pt") as handle:
        stored = {handle.get_slice(key).get_dtype() for key in handle.keys()}  # noqa: SIM118
    assert stored == {{torch.float16: "F16", torch.float32: "F32"}[dtype]}
    loaded = load_network(file)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in expected.items())


def test_auto_export_is_fp16_and_refines_like_the_checkpoint(trained, tmp_path):
    path, model, ema = trained
    result = export_checkpoint(path, tmp_path / "out" / "sddr.safetensors")
    assert (result.precision, result.weights) == ("fp16", "ema")  # EMA is the default
    assert 0 < result.max_difference <= TOLERANCE
    assert result.size_bytes == result.path.stat().st_size
    _assert_weights(result.path, _rounded(ema), torch.float16)

    rng = np.random.default_rng(0)
    high = np.cumsum(rng.normal(size=(96, 128)), axis=1).astype(np.float32)
    low = high[::4, ::4] + 0.1
    exported = sddr_core.load_refiner(result.path, device="cpu", dtype="fp32",
                                      max_side=TINY_MAX_SIDE)
    original = Refiner(copy.deepcopy(ema), device="cpu", dtype="fp32", max_side=TINY_MAX_SIDE)
    span = low.max() - low.min()
    difference = np.abs(exported.refine(low, high) - original.refine(low, high)).max() / span
    assert difference <= TOLERANCE


def test_fp32_export_keeps_the_weights_exactly_at_two_more_bytes_each(trained, tmp_path):
    path, model, ema = trained
    half = export_checkpoint(path, tmp_path / "half.safetensors", precision="fp16")
    full = export_checkpoint(path, tmp_path / "full.safetensors", precision="fp32",
                             weights="model")
    assert (full.precision, full.weights) == ("fp32", "model")
    assert full.max_difference > 0  # what fp16 would have cost, reported for fp32 too
    _assert_weights(full.path, model.state_dict(), torch.float32)
    elements = sum(v.numel() for v in model.state_dict().values())
    assert full.size_bytes - half.size_bytes == pytest.approx(2 * elements, rel=0.01)


def _underflowing(model: RefinementNetwork) -> None:
    """Output conv scaled by 1e-6: D0 shrinks by as much and the Refiner's fit onto the low
    input undoes it, but fp16 keeps only a few bits of weights near 1e-7. (With a residual
    output D0 would be the high input plus almost nothing, which fp16 rounds harmlessly, so
    this spoils a direct-output model.)"""
    conv = model.decoder.ups[0].conv
    conv.weight.mul_(1e-6)
    conv.bias.mul_(1e-6)


def _overflowing(model: RefinementNetwork) -> None:
    model.encoder.stem[0][0].weight[0, 0, 0, 0] = 1e5  # beyond fp16's 65504


@pytest.mark.parametrize(("spoil", "residual"), [(_underflowing, False), (_overflowing, True)])
def test_auto_export_is_fp32_for_weights_fp16_cannot_hold(spoil, residual, tmp_path):
    path, model = _checkpoint(tmp_path / "run", spoil, residual)
    result = export_checkpoint(path, tmp_path / "sddr.safetensors")
    assert (result.precision, result.weights) == ("fp32", "model")
    assert result.max_difference > TOLERANCE
    _assert_weights(result.path, model.state_dict(), torch.float32)


def test_forced_fp16_is_refused_for_weights_beyond_its_range(tmp_path):
    path, _ = _checkpoint(tmp_path / "run", _overflowing)
    with pytest.raises(WeightsError, match="do not fit in fp16"):
        export_checkpoint(path, tmp_path / "sddr.safetensors", precision="fp16")
    assert not (tmp_path / "sddr.safetensors").exists()


def test_without_ema_the_model_weights_are_taken_and_ema_is_refused(tmp_path):
    path, model = _checkpoint(tmp_path / "run")
    result = export_checkpoint(path, tmp_path / "sddr.safetensors")
    assert result.weights == "model"
    _assert_weights(result.path, _rounded(model), torch.float16)
    with pytest.raises(WeightsError, match="holds no EMA weights"):
        export_checkpoint(path, tmp_path / "ema.safetensors", weights="ema")


def test_load_weights_reads_a_plain_copy_as_ema(tmp_path):
    torch.manual_seed(0)
    model = RefinementNetwork(TINY)
    ema = copy.deepcopy(model)
    with torch.no_grad():
        next(ema.parameters()).add_(1.0)
    path = save_checkpoint(tmp_path, 1, model, torch.optim.AdamW(model.parameters()), ema=ema)
    loaded = load_weights(path, "ema")
    assert not loaded.training
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in ema.state_dict().items())


def test_refusals(trained, tmp_path):
    path, model, _ = trained
    weights_file = save_network(model, tmp_path / "weights.safetensors")
    with pytest.raises(WeightsError, match="not an sddr training checkpoint"):
        export_checkpoint(weights_file, tmp_path / "out.safetensors")
    with pytest.raises(InputError, match="is a folder"):
        export_checkpoint(path, tmp_path)
    before = path.read_bytes()
    with pytest.raises(InputError, match="the checkpoint itself"):
        export_checkpoint(path, path)
    assert path.read_bytes() == before
    with pytest.raises(InputError, match="precision"):
        export_checkpoint(path, tmp_path / "out.safetensors", precision="bf16")
    assert not (tmp_path / "out.safetensors").exists()


def _export_command(*arguments: str) -> int:
    """`python -m training export ARGUMENTS…`, in this process."""
    parser = argparse.ArgumentParser(prog="training")
    add_arguments(parser.add_subparsers(required=True))
    args = parser.parse_args(["export", *arguments])
    return args.run(args)


def test_command_line(trained, tmp_path, capsys):
    path, model, _ = trained
    output = tmp_path / "sddr.safetensors"
    assert _export_command(str(path), "-o", str(output), "--precision", "fp32",
                           "--weights", "model") == 0
    assert f"wrote {output}: model weights, fp32" in capsys.readouterr().out
    _assert_weights(output, model.state_dict(), torch.float32)


def test_correction_filter_is_written_into_the_file_with_the_weights_unchanged(trained, tmp_path):
    path, _, ema = trained
    output = tmp_path / "filtered.safetensors"
    assert _export_command(str(path), "-o", str(output), "--correction-filter", "3",
                           "--correction-filter-eps", "1e-3") == 0
    loaded = load_network(output)
    config = loaded.config
    assert (config.correction_filter_radius, config.correction_filter_eps) == (3, 1e-3)
    _assert_weights(output, _rounded(ema), torch.float16)
    plain = export_checkpoint(path, tmp_path / "plain.safetensors")
    assert load_network(plain.path).config.correction_filter_radius == 0
    low, high = torch.rand(1, 1, 128, 128), torch.rand(1, 1, 128, 128)
    with torch.no_grad():
        outputs = [network(low, high).depth for network in (loaded, load_network(plain.path))]
    assert not torch.allclose(*outputs)


def test_an_invalid_correction_filter_is_refused_naming_it(trained, tmp_path):
    path, _, _ = trained
    with pytest.raises(InputError, match="correction_filter_radius"):
        export_checkpoint(path, tmp_path / "out.safetensors", correction_filter=(-2, 1e-4))
    with pytest.raises(InputError, match="correction_filter_eps"):
        export_checkpoint(path, tmp_path / "out.safetensors", correction_filter=(4, 0.0))
    assert not (tmp_path / "out.safetensors").exists()
