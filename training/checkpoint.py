"""Training checkpoints that survive kills and full disks, stored as safetensors only.

A checkpoint is one `step-000123.safetensors` file in the run folder. Every tensor (model
weights, optimizer state, EMA weights, RNG states) is a safetensors tensor; everything else
(step, architecture config, optimizer param groups, Python and NumPy RNG states, the caller's
`extra`) is JSON in the file's metadata. Nested state (an optimizer's `state_dict()`, an RNG
state) is stored by `_encode`: each tensor under its path, the rest as tagged JSON that keeps
int keys and tuples, so `load_state_dict` gets back exactly what `state_dict` gave.

Writes go to a temporary file that is fsynced, renamed onto the final name and the folder
fsynced; older checkpoints are deleted only then. A kill or a full disk at any point therefore
leaves the previous checkpoint whole, and `latest_checkpoint` skips anything partial.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as serialize
from torch import nn

from sddr_core.errors import WeightsError
from sddr_core.files.atomic import atomic_output
from sddr_core.files.weights import load_network, load_state
from sddr_core.network import NetworkConfig, RefinementNetwork

log = logging.getLogger("training")

FORMAT = "sddr-training-checkpoint"
FORMAT_VERSION = "1"
NAME = re.compile(r"step-(\d+)\.safetensors")
"""Checkpoint file names; temporary files (`.step-….tmp-….safetensors`) do not match."""
TEMPORARY = ".step-*.tmp-*.safetensors"
"""`atomic_output`'s temporary files for checkpoints: one left in the folder is from a killed
save (only one process, rank 0, saves into a run folder)."""

Generators = Mapping[str, torch.Generator | np.random.Generator]
"""Named generators the training loop draws from (data order, augmentation), beside the
global torch, NumPy and Python RNGs, which are always saved."""


@dataclass(frozen=True)
class Resumed:
    """What `load_checkpoint` returns besides the state it loaded in place."""

    step: int
    """The `step` given to `save_checkpoint` (its meaning, e.g. steps done, is the caller's)."""
    extra: dict[str, Any]
    """The caller's `extra` JSON (phase, training config, its hash, ...)."""
    path: Path


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / f"step-{step:06d}.safetensors"


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    model: RefinementNetwork,
    optimizer: torch.optim.Optimizer,
    *,
    ema: nn.Module | None = None,
    generators: Generators | None = None,
    extra: Mapping[str, Any] | None = None,
    keep: int = 3,
) -> Path:
    """Write a checkpoint of the training state at `step` atomically; keep the newest `keep`.

    Saves `model` (unwrapped: not DDP, not compiled), `optimizer`, `ema`, the global torch
    (CPU and CUDA), NumPy and Python RNG states, the named `generators` and `extra` (JSON-able).
    Once the new file is complete on disk, checkpoints beyond the newest `keep` are deleted, and
    so are any of later steps than `step` (left by an abandoned run resumed from earlier).
    A failed write (full disk, kill) raises and leaves every existing checkpoint as it was.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    tensors: dict[str, torch.Tensor] = {}
    structure = {
        "model": _encode(model.state_dict(), "model", tensors),
        "optimizer": _encode(optimizer.state_dict(), "optimizer", tensors),
        "ema": None if ema is None else _encode(ema.state_dict(), "ema", tensors),
        "rng": _encode(capture_rng(generators), "rng", tensors),
    }
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "step": str(step),
        "config": model.config.to_json(),
        "structure": json.dumps(structure),
        "extra": json.dumps(dict(extra or {})),
    }
    data = serialize(tensors, metadata)
    path = checkpoint_path(run_dir, step)
    with atomic_output(path) as tmp:
        _write_bytes(tmp, data)
    _fsync_folder(path.parent)
    _prune(path.parent, step, keep)
    return path


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint of the highest step in `run_dir` that is complete, or None.

    Temporary files are ignored; a truncated or corrupt file (its safetensors header does not
    match its size, or its metadata is not a checkpoint's) is skipped for the one before it,
    with a warning that names it and says why.
    """
    for _, path in sorted(_checkpoints(Path(run_dir)), reverse=True):
        try:
            _read_metadata(path)
        except WeightsError as error:
            log.warning("skipping checkpoint %s", error)
            continue
        return path
    return None


def load_checkpoint(
    path: str | os.PathLike,
    model: RefinementNetwork,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    ema: nn.Module | None = None,
    generators: Generators | None = None,
) -> Resumed:
    """Load a checkpoint into `model`, `optimizer`, `ema` and every RNG, in place.

    Restores the global torch, NumPy and Python RNGs and the named `generators` (each name must
    be in the checkpoint), so that continuing from here repeats an uninterrupted run exactly.
    Raises `WeightsError` for a file that is not a complete checkpoint, or one saved for
    another architecture than `model.config` (naming the fields that differ).
    """
    path = Path(path)
    saved = _read_metadata(path)
    if saved.config != model.config:
        raise WeightsError(f"'{path}' was saved for another architecture: "
                           + config_difference(saved.config, model.config))
    with safe_open(str(path), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open is not a dict)
    not_finite = [key for key, tensor in tensors.items()
                  if tensor.is_floating_point() and not tensor.isfinite().all()]
    if not_finite:
        raise WeightsError(f"'{path}' has {len(not_finite)} tensor(s) holding NaN or infinity, "
                           f"e.g. {not_finite[0]!r}: the run had diverged when it was saved; "
                           "resume from an earlier checkpoint (move this one out of the folder)")
    structure = saved.structure
    if ema is not None and structure["ema"] is None:
        raise WeightsError(f"'{path}' holds no EMA weights, but an EMA model was given")
    try:
        model.load_state_dict(_decode(structure["model"], tensors))
        if optimizer is not None:
            optimizer.load_state_dict(_decode(structure["optimizer"], tensors))
        if ema is not None:
            ema.load_state_dict(_decode(structure["ema"], tensors))
        restore_rng(_decode(structure["rng"], tensors), generators)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as error:
        raise WeightsError(f"'{path}': its metadata does not describe its tensors ({error})"
                           ) from None
    return Resumed(saved.step, saved.extra, path)


def load_weights(path: str | os.PathLike, which: Literal["model", "ema"] = "model"
                 ) -> RefinementNetwork:
    """The network a checkpoint holds, built from its architecture config, in eval mode.

    For export and evaluation: reads only the `which` tensors ("model": the trained weights,
    "ema": their moving average), needs no optimizer and leaves every RNG alone. The EMA may
    have been an `AveragedModel` of the network (`torch.optim.swa_utils`) or a plain copy.
    Raises `WeightsError` for a file that is not a checkpoint, EMA weights the run did not
    keep, or weights that are not finite.
    """
    path = Path(path)
    saved = _read_metadata(path)
    structure = saved.structure
    if structure[which] is None:
        raise WeightsError(f"'{path}' holds no EMA weights (its run kept none, optim.ema = 0); "
                           "take its model weights instead")
    with safe_open(str(path), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()  # noqa: SIM118 (safe_open is not a dict)
                   if key.startswith(f"{which}.")}
    try:
        state = _decode(structure[which], tensors)
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise WeightsError(f"'{path}': its metadata does not describe its tensors ({error})"
                           ) from None
    network = RefinementNetwork(saved.config)
    load_state(network, {key.removeprefix("module."): value for key, value in state.items()
                         if key != "n_averaged"}, path)
    return network.eval()


def load_trained(reference: str | os.PathLike) -> RefinementNetwork:
    """A training checkpoint's model weights, or else any weights reference `load_refiner`
    takes (a weights file, "default", hf://…); `WeightsError` (the weights reader's) when it
    is neither."""
    try:
        return load_weights(reference, "model")
    except WeightsError:  # not a training checkpoint
        return load_network(reference)


def holds_ema(path: str | os.PathLike) -> bool:
    """Whether a checkpoint holds EMA weights (`WeightsError` if it is not a checkpoint)."""
    path = Path(path)
    return _read_metadata(path).structure["ema"] is not None


def capture_rng(generators: Generators | None = None) -> dict[str, Any]:
    """The states of the global torch (CPU, every initialised CUDA device), NumPy and Python
    RNGs and of the named `generators`, as plain data for `restore_rng`."""
    named = {}
    for name, generator in (generators or {}).items():
        if isinstance(generator, torch.Generator):
            named[name] = generator.get_state()
        else:
            named[name] = generator.bit_generator.state
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": np.random.get_state(legacy=False),
        "python": random.getstate(),
        "generators": named,
    }


def restore_rng(state: Mapping[str, Any], generators: Generators | None = None) -> None:
    """Set every RNG `capture_rng` saved, and the named `generators`, back to `state`.

    CUDA states are restored to as many devices as both the saved run and this process have.
    """
    torch.set_rng_state(state["torch"])
    for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
        torch.cuda.set_rng_state(cuda_state, device)
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    for name, generator in (generators or {}).items():
        if name not in state["generators"]:
            raise WeightsError(f"the checkpoint holds no state for generator {name!r}; it has "
                               f"{sorted(state['generators'])}")
        if isinstance(generator, torch.Generator):
            generator.set_state(state["generators"][name])
        else:
            generator.bit_generator.state = state["generators"][name]


def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Tagged JSON for `value`; its tensors go into `tensors` under their path in `value`."""
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().to("cpu").contiguous()
        return {"tensor": path}
    if isinstance(value, np.ndarray):
        return {"ndarray": [str(value.dtype), value.tolist()]}
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return {"value": value}
    if isinstance(value, Mapping):
        if not all(isinstance(key, str | int) for key in value):
            raise TypeError(f"cannot store a dict with keys other than str or int at {path!r}")
        return {"dict": [[key, _encode(item, f"{path}.{key}", tensors)]
                         for key, item in value.items()]}
    if isinstance(value, list | tuple):
        items = [_encode(item, f"{path}.{i}", tensors) for i, item in enumerate(value)]
        return {"tuple" if isinstance(value, tuple) else "list": items}
    raise TypeError(f"cannot store a {type(value).__name__} at {path!r} in a checkpoint")


def _decode(node: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """The inverse of `_encode`."""
    ((tag, body),) = node.items()
    if tag == "tensor":
        return tensors[body]
    if tag == "ndarray":
        dtype, values = body
        return np.asarray(values, dtype=dtype)
    if tag == "value":
        return body
    if tag == "dict":
        return {key: _decode(item, tensors) for key, item in body}
    items = [_decode(item, tensors) for item in body]
    return tuple(items) if tag == "tuple" else items


def _write_bytes(path: Path, data: bytes) -> None:
    """Write and fsync, so the rename that follows never publishes a file still in the cache."""
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; folders cannot be opened on Windows)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_steps(run_dir: str | os.PathLike) -> list[int]:
    """The steps of the checkpoint files in `run_dir`, ascending (temporary files aside)."""
    return sorted(step for step, _ in _checkpoints(Path(run_dir)))


def _checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    if not run_dir.is_dir():
        return []
    found = ((NAME.fullmatch(p.name), p) for p in run_dir.iterdir())
    return [(int(match[1]), p) for match, p in found if match]


def _prune(run_dir: Path, step: int, keep: int) -> None:
    """Delete checkpoints of later steps than `step`, all but the newest `keep` up to it, and
    temporary files left by killed saves."""
    found = sorted(_checkpoints(run_dir))
    later = [p for s, p in found if s > step]
    doomed = later + [p for s, p in found if s <= step][:-keep] + list(run_dir.glob(TEMPORARY))
    for path in doomed:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class _Metadata:
    """A checkpoint's metadata, checked and parsed."""

    step: int
    config: NetworkConfig
    structure: dict[str, Any]
    extra: dict[str, Any]


def _read_metadata(path: Path) -> _Metadata:
    """The metadata of a complete checkpoint file; `WeightsError` for anything else (a FIFO
    named like a checkpoint is refused before it is opened: reading it would block)."""
    if not path.is_file():
        raise WeightsError(f"'{path}' is not a regular file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as err:  # safetensors raises several types for bad files
        raise WeightsError(f"'{path}' is not a readable safetensors file: {err}") from None
    if metadata.get("format") != FORMAT:
        raise WeightsError(f"'{path}' is not an sddr training checkpoint (its metadata has no "
                           f"format {FORMAT!r}; a weights file is loaded with load_network)")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise WeightsError(f"'{path}' has checkpoint format version "
                           f"{metadata.get('format_version')!r}; this version reads "
                           f"{FORMAT_VERSION!r}")
    step = metadata.get("step", "")
    if not (step.isascii() and step.isdigit()):
        raise WeightsError(f"'{path}': its metadata's step {step[:40]!r} is not a whole number")
    try:
        config = NetworkConfig.from_json(metadata.get("config", ""))
    except WeightsError as error:
        raise WeightsError(f"'{path}': {error}") from None
    parsed = {}
    for name in ("structure", "extra"):
        try:
            parsed[name] = json.loads(metadata.get(name, ""))
        except json.JSONDecodeError as error:
            raise WeightsError(f"'{path}': its metadata's {name} is not JSON ({error})"
                               ) from None
        if not isinstance(parsed[name], dict):
            raise WeightsError(f"'{path}': its metadata's {name} is not a JSON object")
    missing = {"model", "optimizer", "ema", "rng"} - set(parsed["structure"])
    if missing:
        raise WeightsError(f"'{path}': its metadata's structure lacks {sorted(missing)}")
    return _Metadata(int(step), config, parsed["structure"], parsed["extra"])


def config_difference(saved: NetworkConfig, current: NetworkConfig) -> str:
    """Each architecture field that differs, as "name is A in the checkpoint but B in the
    model"."""
    fields = [f.name for f in dataclasses.fields(NetworkConfig)
              if getattr(saved, f.name) != getattr(current, f.name)]
    return "; ".join(f"{name} is {getattr(saved, name)!r} in the checkpoint but "
                     f"{getattr(current, name)!r} in the model" for name in fields)
