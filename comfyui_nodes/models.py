"""Refiner and predictor loading for the nodes: ComfyUI's model folders, devices, memory.

Refiner weights are `.safetensors` files in ComfyUI's `models/sddr` folder (and any folder that
`extra_model_paths.yaml` adds under `sddr`), or the bundled default. Depth Anything V2 weights
are downloaded once, at the core's pinned revision, into `models/sddr_predictors`, and read from
there offline afterwards (offline without them, the node says in two lines what to fetch). The
devices are ComfyUI's, and every model runs through ComfyUI's model management, so it shares
the GPU with the rest of the graph.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from sddr_core import InputError, Refiner, WeightsError, load_refiner
from sddr_core.predictors import DepthPredictor, MissingWeightsError, load_predictor

from . import host

WEIGHTS_FOLDER = "sddr"
PREDICTORS_FOLDER = "sddr_predictors"
DEFAULT_WEIGHTS = "default"
DEVICES = ("auto", "cpu")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
PREDICTOR_NAMES = ("depth-anything-v2-small", "depth-anything-v2-base",
                   "depth-anything-v2-large")
BYTES_PER_PIXEL = 450
"""Peak memory of one N_r pass per working pixel: a 4K pair (2048×1152 working) peaks under
1 GB on CPU (docs/performance.md). Tells ComfyUI how much to free before a run."""

_predictors: dict[tuple[str, str], tuple[DepthPredictor, list]] = {}
"""Loaded predictors and their patchers by (name, device): node classes are cloned per call
and keep no state, and ComfyUI tracks a loaded model by its patcher, so both are kept."""


@dataclass
class LoadedRefiner:
    """The SDDR_REFINER value: a refiner and the ComfyUI handle that places its network."""

    refiner: Refiner
    patcher: object
    name: str


def register_folders() -> None:
    """Add `models/sddr` (safetensors only) and `models/sddr_predictors` to ComfyUI's folders.

    Set directly rather than through `add_model_folder_path`, which gives a new name an empty
    extension set and so would list every file in the folder.
    """
    folder_paths = host.folder_paths()
    for name in (WEIGHTS_FOLDER, PREDICTORS_FOLDER):
        if name not in folder_paths.folder_names_and_paths:
            folder_paths.folder_names_and_paths[name] = (
                [os.path.join(folder_paths.models_dir, name)], {".safetensors"})


def weight_options() -> list[str]:
    """The loader's combo: the bundled default, then every file in the sddr models folders."""
    register_folders()
    return [DEFAULT_WEIGHTS, *host.folder_paths().get_filename_list(WEIGHTS_FOLDER)]


def compute_device(device: str) -> torch.device:
    """`auto`: the device ComfyUI runs models on; `cpu`: the CPU. sddr runs on CUDA or CPU."""
    if device not in DEVICES:
        raise InputError(f"device {device!r}: choose from {', '.join(DEVICES)}")
    if device == "cpu":
        return torch.device("cpu")
    chosen = host.model_management().get_torch_device()
    if chosen.type not in ("cpu", "cuda"):
        raise InputError(f"device auto: ComfyUI runs on {chosen.type}, which sddr does not "
                         "support; choose device cpu")
    return chosen


def load(weights: str, device: str, precision: str, max_side: int) -> LoadedRefiner:
    """The refiner named in the loader's combo, on `device` in `precision`."""
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r}: choose from {', '.join(PRECISIONS)}")
    target = compute_device(device)
    if precision == "fp16" and target.type == "cpu":
        raise InputError("precision fp16 needs a CUDA device; on the CPU use fp32 or bf16")
    refiner = load_refiner(weights_path(weights), device=target, dtype=precision,
                           max_side=max_side)
    return LoadedRefiner(refiner, host.model_patcher(refiner.network, refiner.device), weights)


def weights_path(weights: str) -> str:
    """The file behind a combo entry (the bundled name is passed on to the core as it is)."""
    if weights == DEFAULT_WEIGHTS:
        return weights
    register_folders()
    path = host.folder_paths().get_full_path(WEIGHTS_FOLDER, weights)
    if path is None:
        folders = host.folder_paths().get_folder_paths(WEIGHTS_FOLDER)
        raise WeightsError(f"weights {weights!r}: no such file in the sddr models folder "
                           f"({', '.join(folders)})")
    return path


def depth_predictor(name: str, device: torch.device) -> tuple[DepthPredictor, list]:
    """Depth Anything V2 `name` on `device` (downloaded on first use into
    models/sddr_predictors) and the patchers that place it."""
    if name not in PREDICTOR_NAMES:
        raise InputError(f"predictor {name!r}: choose from {', '.join(PREDICTOR_NAMES)}")
    key = (name, str(device))
    if key not in _predictors:
        register_folders()
        cache = host.folder_paths().get_folder_paths(PREDICTORS_FOLDER)[0]
        try:
            predictor = load_predictor(name, device=device, cache_dir=cache)
        except MissingWeightsError as err:
            raise InputError(
                f"predictor {name}: {err.repo} (revision {err.revision}) is not in "
                f"models/{PREDICTORS_FOLDER} and cannot be downloaded: {err.reason}.\n"
                f"Fetch it once, then run again: {err.command}") from None
        _predictors[key] = predictor, _patchers(predictor, device)
    return _predictors[key]


def place(models: list, pixels: int) -> None:
    """Have ComfyUI put these models' patchers on their device, freeing room for `pixels`
    working pixels of N_r (other models of the graph may be offloaded for it)."""
    host.model_management().load_models_gpu(models, memory_required=pixels * BYTES_PER_PIXEL)


def _patchers(predictor: DepthPredictor, device: torch.device) -> list:
    """A patcher for a predictor that holds a torch network (`model`), else none.

    The network goes in a plain container: ComfyUI's patcher records where it put a model by
    setting `model.device`, which transformers models make a read-only property.
    """
    model = getattr(predictor, "model", None)
    if not isinstance(model, torch.nn.Module):
        return []
    return [host.model_patcher(torch.nn.ModuleDict({"predictor": model}), device)]
