"""Training checkpoints: a killed and resumed run equals an uninterrupted one bit for bit; a
full disk or a truncated file never costs the previous checkpoint; wrong files are refused."""

import dataclasses
import errno
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from sddr_core.errors import InputError, WeightsError
from sddr_core.files.weights import save_network
from sddr_core.network import RefinementNetwork
from tests.tiny import TINY
from training import checkpoint
from training.checkpoint import (
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)


def _fresh_run(seed: int):
    """Model, AdamW, EMA and a data generator, all from `seed`."""
    torch.manual_seed(seed)
    model = RefinementNetwork(TINY).train()  # drop_path draws from the global torch RNG
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    ema = AveragedModel(model)
    generators = {"data": torch.Generator().manual_seed(seed), "crops": np.random.default_rng(seed)}
    return model, optimizer, ema, generators


def _train_step(model, optimizer, ema, generators) -> None:
    """One step whose data depends on every RNG a checkpoint must carry."""
    low = torch.rand(1, 1, 128, 128, generator=generators["data"])
    scale = float(generators["crops"].uniform(0.5, 2.0)) * (1 + np.random.rand()) * (
        1 + random.random())
    high = low + 0.05 * torch.randn(low.shape)
    loss = (model(low, high).depth - scale * low).abs().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    ema.update_parameters(model)


def _seed_globals(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def test_killed_and_resumed_run_is_bit_identical(tmp_path):
    _seed_globals(0)
    model, optimizer, ema, generators = _fresh_run(0)
    for step in range(1, 5):
        _train_step(model, optimizer, ema, generators)
        if step == 2:
            save_checkpoint(tmp_path, step, model, optimizer, ema=ema, generators=generators,
                            extra={"phase": "warm-up"})
    uninterrupted = (model.state_dict(), optimizer.state_dict(), ema.state_dict())

    _seed_globals(7)  # a new process: other initial weights, other RNG states
    model, optimizer, ema, generators = _fresh_run(7)
    resumed = load_checkpoint(latest_checkpoint(tmp_path), model, optimizer, ema=ema,
                              generators=generators)
    assert (resumed.step, resumed.extra) == (2, {"phase": "warm-up"})
    for _ in range(3, 5):
        _train_step(model, optimizer, ema, generators)

    weights, moments, averaged = uninterrupted
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(averaged[k], v) for k, v in ema.state_dict().items())
    state = optimizer.state_dict()
    assert state["param_groups"] == moments["param_groups"]
    for index, entry in state["state"].items():
        assert all(torch.equal(moments["state"][index][k], v) for k, v in entry.items())


def test_rng_states_round_trip():
    generators = {"torch": torch.Generator().manual_seed(3), "numpy": np.random.default_rng(3)}

    def draw():
        return (torch.rand(4).tolist(), np.random.rand(4).tolist(), np.random.randn(),
                random.random(), torch.rand(4, generator=generators["torch"]).tolist(),
                generators["numpy"].random(4).tolist())

    np.random.randn()  # leaves a cached Gaussian in NumPy's state
    state = capture_rng(generators)
    first = draw()
    restore_rng(state, generators)
    assert draw() == first


def test_keeps_the_newest_k_and_drops_an_abandoned_future(tmp_path):
    model, optimizer, _, _ = _fresh_run(0)
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, model, optimizer, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-000004.safetensors", "step-000005.safetensors"]

    save_checkpoint(tmp_path, 3, model, optimizer, keep=2)  # resumed from an earlier step
    assert [p.name for p in tmp_path.iterdir()] == ["step-000003.safetensors"]


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer, _, _ = _fresh_run(0)
    previous = save_checkpoint(tmp_path, 1, model, optimizer, keep=1)
    before = previous.read_bytes()

    def half_then_full(path, data):
        path.write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "_write_bytes", half_then_full)
    with pytest.raises(InputError, match="No space left"):
        save_checkpoint(tmp_path, 2, model, optimizer, keep=1)

    assert list(tmp_path.iterdir()) == [previous]  # no temporary file left either
    assert previous.read_bytes() == before
    assert latest_checkpoint(tmp_path) == previous


KILLED_MID_SAVE = """
import os, signal, sys
import torch
from sddr_core.network import RefinementNetwork
from tests.tiny import TINY
from training import checkpoint

model = RefinementNetwork(TINY)
optimizer = torch.optim.AdamW(model.parameters())
checkpoint.save_checkpoint(sys.argv[1], 1, model, optimizer)

def half_then_killed(path, data):
    path.write_bytes(data[: len(data) // 2])
    os.kill(os.getpid(), signal.SIGKILL)

checkpoint._write_bytes = half_then_killed
checkpoint.save_checkpoint(sys.argv[1], 2, model, optimizer)
"""


def test_a_save_killed_half_way_leaves_the_previous_checkpoint(tmp_path):
    run = subprocess.run([sys.executable, "-c", KILLED_MID_SAVE, str(tmp_path)],
                         cwd=Path(__file__).parents[1], capture_output=True, text=True)
    assert run.returncode == -signal.SIGKILL, run.stderr
    (stale,) = tmp_path.glob(".step-000002.tmp-*.safetensors")  # SIGKILL leaves it behind
    first = tmp_path / "step-000001.safetensors"
    assert latest_checkpoint(tmp_path) == first

    model, optimizer, _, _ = _fresh_run(0)
    assert load_checkpoint(first, model, optimizer).step == 1
    save_checkpoint(tmp_path, 2, model, optimizer)  # the next save removes the stale file
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-000001.safetensors", "step-000002.safetensors"]


def test_latest_skips_truncated_and_temporary_files(tmp_path):
    model, optimizer, _, _ = _fresh_run(0)
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    first = save_checkpoint(tmp_path, 1, model, optimizer)
    second = save_checkpoint(tmp_path, 2, model, optimizer)
    (tmp_path / ".step-000003.tmp-1a2b3c4d.safetensors").write_bytes(second.read_bytes())
    assert latest_checkpoint(tmp_path) == second

    second.write_bytes(second.read_bytes()[:-1])
    assert latest_checkpoint(tmp_path) == first
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        load_checkpoint(second, model, optimizer)


def test_another_architecture_is_refused_naming_the_field(tmp_path):
    model, optimizer, _, _ = _fresh_run(0)
    path = save_checkpoint(tmp_path, 1, model, optimizer)
    other = RefinementNetwork(dataclasses.replace(TINY, embed_dims=(8, 16, 16, 16),
                                                  num_heads=(1, 1, 1, 1)))
    with pytest.raises(WeightsError, match=r"embed_dims is \(8, 16, 16, 32\) in the checkpoint "
                                           r"but \(8, 16, 16, 16\) in the model"):
        load_checkpoint(path, other)


def test_a_weights_file_or_other_file_is_not_a_checkpoint(tmp_path):
    model, _, _, _ = _fresh_run(0)
    weights = save_network(model, tmp_path / "step-000001.safetensors")
    (tmp_path / "step-000002.safetensors").write_text("not a checkpoint")
    with pytest.raises(WeightsError, match="not an sddr training checkpoint"):
        load_checkpoint(weights, model)
    assert latest_checkpoint(tmp_path) is None
