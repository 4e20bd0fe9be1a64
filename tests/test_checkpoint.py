"""Training checkpoints: a killed and resumed run equals an uninterrupted one bit for bit; a
full disk or a truncated file never costs the previous checkpoint; wrong files are refused."""

import dataclasses
import errno
import os
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


def _rewritten(path: Path, metadata=None, tensors=None) -> None:
    """Write `path` again with some of its metadata or tensors replaced."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as handle:
        saved = handle.metadata()
        stored = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    save_file({**stored, **(tensors or {})}, str(path), metadata={**saved, **(metadata or {})})


@pytest.mark.parametrize("metadata, message", [
    ({"structure": "{not json"}, "metadata's structure is not JSON"),
    ({"structure": "[]"}, "metadata's structure is not a JSON object"),
    ({"structure": '{"model": {"tensor": "model.nowhere"}}'}, "structure lacks"),
    ({"step": "six"}, "metadata's step 'six' is not a whole number"),
    ({"extra": "{"}, "metadata's extra is not JSON"),
    ({"config": "{"}, "architecture config is not valid JSON"),
])
def test_bad_metadata_is_a_weights_error_naming_the_file(tmp_path, metadata, message):
    """These once ended in a JSONDecodeError or ValueError traceback (resume and export)."""
    model, optimizer, _, _ = _fresh_run(0)
    first = save_checkpoint(tmp_path, 1, model, optimizer)
    second = save_checkpoint(tmp_path, 2, model, optimizer)
    _rewritten(second, metadata=metadata)
    for load in (lambda: load_checkpoint(second, model, optimizer),
                 lambda: checkpoint.load_weights(second)):
        with pytest.raises(WeightsError, match=f"^'{second}': .*{message}"):
            load()
    assert latest_checkpoint(tmp_path) == first  # skipped, with a warning


def test_metadata_that_does_not_describe_the_tensors_is_a_weights_error(tmp_path):
    model, optimizer, _, _ = _fresh_run(0)
    path = save_checkpoint(tmp_path, 1, model, optimizer)
    _rewritten(path, metadata={"structure": '{"model": {"tensor": "model.nowhere"}, '
                                            '"optimizer": {"value": null}, "ema": null, '
                                            '"rng": {"value": null}}'})
    with pytest.raises(WeightsError, match="does not describe its tensors"):
        load_checkpoint(path, model, optimizer)


def test_resuming_from_non_finite_weights_is_refused_naming_a_tensor(tmp_path):
    model, optimizer, _, _ = _fresh_run(0)
    path = save_checkpoint(tmp_path, 1, model, optimizer)
    name = next(key for key in model.state_dict() if model.state_dict()[key].is_floating_point())
    poisoned = model.state_dict()[name].clone().fill_(float("nan"))
    _rewritten(path, tensors={f"model.{name}": poisoned})
    fresh, fresh_optimizer, _, _ = _fresh_run(1)
    before = {key: value.clone() for key, value in fresh.state_dict().items()}
    with pytest.raises(WeightsError, match=f"1 tensor\\(s\\) holding NaN or infinity, e.g. "
                                           f"'model.{name}'.*earlier checkpoint"):
        load_checkpoint(path, fresh, fresh_optimizer)
    assert all(torch.equal(before[key], value) for key, value in fresh.state_dict().items())


def test_latest_skips_a_fifo_named_like_a_checkpoint_without_blocking(tmp_path, caplog):
    """`safe_open` on a FIFO blocks until something writes into it: forever."""
    model, optimizer, _, _ = _fresh_run(0)
    first = save_checkpoint(tmp_path, 1, model, optimizer)
    os.mkfifo(tmp_path / "step-000002.safetensors")
    assert latest_checkpoint(tmp_path) == first
    assert "step-000002.safetensors' is not a regular file" in caplog.text
    for read in (checkpoint.load_weights, checkpoint.holds_ema, checkpoint.load_trained):
        with pytest.raises(WeightsError, match="not a regular file"):  # export, --init
            read(tmp_path / "step-000002.safetensors")
