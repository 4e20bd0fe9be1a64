"""Weights files: safetensors only, with the architecture config in the file's metadata.

A weights reference is one of
- a bundled name (`default`), shipped inside the package;
- a local path to a `.safetensors` file;
- `hf://owner/repo/path/file.safetensors@revision`, fetched with huggingface-hub at that
  pinned revision and read from the local cache when offline.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import WeightsError
from ..network.config import NetworkConfig
from ..network.model import RefinementNetwork
from .atomic import atomic_output
from .hub import cache_first

FORMAT = "sddr-refiner"
FORMAT_VERSION = "2"
"""Written into every file. 2: the config no longer holds `max_side`. Files of a version not
in READABLE_VERSIONS (a newer sddr's) are refused; files without one are version 1."""
READABLE_VERSIONS = ("1", "2")
BUNDLED_DIR = Path(__file__).parent.parent / "weights"
BUNDLED = {"default": "sddr-small.safetensors"}
"""Bundled names → files in BUNDLED_DIR."""


def save_network(
    network: RefinementNetwork, path: str | os.PathLike, dtype: torch.dtype = torch.float32
) -> Path:
    """Write the network's weights and config to `path` atomically, its floating-point tensors
    stored as `dtype` (fp16 halves the file; `load_network` casts them back to fp32)."""
    state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
             for k, v in network.state_dict().items()}
    metadata = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "config": network.config.to_json()
    }
    path = Path(path)
    with atomic_output(path) as tmp:
        try:
            save_file(state, str(tmp), metadata=metadata)
        except SafetensorError as err:  # its word for a failed write (a full disk), not an
            raise OSError(f"safetensors: {err}") from err  # OSError: atomic_output names path
    return path


def load_network(reference: str | os.PathLike) -> RefinementNetwork:
    """Rebuild a network from a weights reference (see module doc)."""
    path = resolve_weights(reference)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except Exception as err:  # safetensors raises several types for bad files
        raise WeightsError(f"'{path}' is not a readable safetensors file: {err}") from None
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise WeightsError(
            f"'{path}' is a safetensors file but not an sddr refiner: its metadata has no "
            f"'{FORMAT}' architecture config"
        )
    version = metadata.get("format_version", "1")
    if version not in READABLE_VERSIONS:
        raise WeightsError(
            f"'{path}' has format version {version!r}; this version of sddr reads "
            f"{', '.join(READABLE_VERSIONS)} (written by a newer sddr?)"
        )
    try:
        config = NetworkConfig.from_json(metadata["config"])
    except WeightsError as err:
        raise WeightsError(f"'{path}': {err}") from None
    try:
        network = RefinementNetwork(config)
    except (RuntimeError, MemoryError) as err:  # the allocator's refusal
        raise WeightsError(f"'{path}': its architecture config asks for more memory than "
                           f"there is ({str(err)[:200]})") from None
    load_state(network, state, path)
    return network


def load_state(network: RefinementNetwork, state: dict, path: Path) -> None:
    """Copy `state` into `network` after checking names, shapes and finiteness; tensors of
    another floating dtype (an fp16 file) are cast to the network's own on the copy. `path`
    names the source in errors."""
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        details = []
        for label, keys in (("missing", missing), ("unexpected", unexpected),
                            ("wrong shape", mismatched)):
            if keys:
                details.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        raise WeightsError(
            f"'{path}' holds weights for another architecture than its config: "
            + ", ".join(details)
        )
    not_finite = [k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
    if not_finite:
        raise WeightsError(
            f"'{path}' has {len(not_finite)} tensor(s) holding NaN or infinity, e.g. "
            f"{not_finite[0]!r}: the file is corrupt or from a diverged training run"
        )
    network.load_state_dict(state)


def resolve_weights(reference: str | os.PathLike) -> Path:
    """The local file a weights reference points to (downloading hf:// ones if needed)."""
    text = str(reference)
    if text.startswith("hf://"):
        return _download(text)
    if text in BUNDLED:
        path = BUNDLED_DIR / BUNDLED[text]
        if not path.is_file():
            raise WeightsError(
                f"the bundled weights '{text}' are missing from this installation ({path}): "
                "reinstall sddr, or pass your own weights: --weights FILE on the command "
                "line, load_refiner(FILE) in Python, with FILE a .safetensors path or "
                "hf://owner/repo/file.safetensors@revision"
            )
        return path
    path = Path(text).expanduser()
    if not path.exists():
        known = ", ".join(sorted(BUNDLED))
        raise WeightsError(
            f"weights '{text}': no such file (and not a bundled name: {known}; "
            "nor an hf:// reference)"
        )
    if path.is_dir():
        raise WeightsError(f"weights '{text}' is a folder, not a .safetensors file")
    if not path.is_file():  # a FIFO would block safe_open forever
        raise WeightsError(f"weights '{text}' is not a regular file (a FIFO, socket or device)")
    return path


def _download(reference: str) -> Path:
    """hf://owner/repo/path@revision → a cached local file; the cache is tried first."""
    from huggingface_hub import hf_hub_download

    body, _, revision = reference[len("hf://"):].partition("@")
    parts = body.split("/")
    if not revision or len(parts) < 3 or not all(parts):
        raise WeightsError(
            f"weights '{reference}': expected hf://owner/repo/file.safetensors@revision "
            "with a pinned revision (a commit hash or tag)"
        )
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        return cache_first(partial(hf_hub_download, repo_id, filename, revision=revision))
    except Exception as err:
        raise WeightsError(
            f"weights '{reference}' are not in the local Hugging Face cache and could not be "
            f"downloaded ({type(err).__name__}: {err}). Download them once while online, "
            "or copy the file and pass its local path"
        ) from None
