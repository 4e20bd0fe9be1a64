"""The single-pass refiner: `Refiner.refine(low, high)` = N_r on two predictions, made usable.

Around the network it handles what real inputs need: any layout, size and aspect ratio,
NaNs, the working resolution (the high input's size, capped at `config.max_side` on the
long side, padded — not stretched — to the network stride), precision, and putting the
result back into the low input's units and polarity by a least-squares affine fit.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..files.weights import load_network, save_network
from ..maps.alignment import align_to
from ..maps.inputs import as_depth_batch, check_pair, is_channels_last_map
from ..maps.resample import resize_maps, scaled_size
from ..network.config import NetworkConfig
from ..network.config import preset as preset_config
from ..network.model import RefinementNetwork
from ..runtime import resolve_device, resolve_dtype

DepthArray = np.ndarray | torch.Tensor


class Refiner:
    """The refinement network N_r ready for inference on one device and precision."""

    def __init__(
        self,
        network: RefinementNetwork,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        compile: bool = False,
    ):
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.network = network.to(self.device).eval().to(memory_format=torch.channels_last)
        self._forward = torch.compile(self.network, dynamic=True) if compile else self.network

    @property
    def config(self) -> NetworkConfig:
        return self.network.config

    def save(self, path: str | os.PathLike) -> Path:
        """Write the weights and architecture config as one safetensors file."""
        return save_network(self.network, path)

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """The size N_r runs at for a high input of height×width (before stride padding)."""
        return scaled_size(height, width, min(self.config.max_side, max(height, width)))

    def network_input_size(self, height: int, width: int) -> tuple[int, int]:
        """The working size padded up to a multiple of the network stride."""
        stride = self.config.stride
        h, w = self.working_size(height, width)
        return -(-h // stride) * stride, -(-w // stride) * stride

    def refine(
        self, low: DepthArray, high: DepthArray, out_size: tuple[int, int] | None = None
    ) -> DepthArray:
        """Fuse a low-res and a high-res depth prediction of the same image into one.

        `low`, `high`: numpy arrays or torch tensors, H×W or B×H×W (B×1×H×W accepted), of any
        sizes; depth or disparity, as long as both use the same. Returns float32 depth at
        `out_size` (height, width), by default the high input's size, in the low input's
        polarity and value range; numpy in → numpy out, a tensor in → a tensor on its device.
        """
        low_maps = as_depth_batch(low, "low", self.device)
        high_maps = as_depth_batch(high, "high", self.device)
        check_pair(low_maps, high_maps)
        size = _check_out_size(out_size) or tuple(high_maps.shape[-2:])
        depth = self._run_network(
            _normalise(low_maps), _normalise(high_maps), *high_maps.shape[-2:]
        )
        refined = align_to(resize_maps(depth, size), resize_maps(low_maps, size))
        return _like(refined, high)

    def _run_network(
        self, low: torch.Tensor, high: torch.Tensor, height: int, width: int
    ) -> torch.Tensor:
        """D0 at the working size for a height×width high input."""
        size = self.working_size(height, width)
        padded = self.network_input_size(height, width)
        padding = (0, padded[1] - size[1], 0, padded[0] - size[0])

        def prepare(maps: torch.Tensor) -> torch.Tensor:
            padded = F.pad(resize_maps(maps, size)[:, None], padding, mode="replicate")
            return padded.contiguous(memory_format=torch.channels_last)

        autocast = torch.autocast(
            self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32
        )
        with torch.inference_mode(), autocast:
            depth = self._forward(prepare(low), prepare(high)).depth
        return depth[:, 0, : size[0], : size[1]].float()


def _normalise(maps: torch.Tensor) -> torch.Tensor:
    """Per-map min-max to [0, 1], the range N_r is trained on."""
    flat = maps.reshape(maps.shape[0], -1)
    low, high = flat.amin(dim=1), flat.amax(dim=1)
    return (maps - low[:, None, None]) / (high - low)[:, None, None]


def _check_out_size(out_size) -> tuple[int, int] | None:
    if out_size is None:
        return None
    try:
        height, width = (int(v) for v in out_size)
    except (TypeError, ValueError):
        raise InputError(f"out_size must be (height, width), got {out_size!r}") from None
    if height < 1 or width < 1:
        raise InputError(f"out_size must be positive, got {out_size!r}")
    return height, width


def _like(refined: torch.Tensor, reference: DepthArray) -> DepthArray:
    """Match the caller's container and layout: one map in → H×W out, else B×H×W."""
    single = reference.ndim == 2 or is_channels_last_map(tuple(reference.shape))
    result = refined[0] if single else refined
    if isinstance(reference, np.ndarray):
        return result.cpu().numpy()
    return result.to(reference.device)


def build_refiner(
    preset: str = "small",
    seed: int = 0,
    device: str = "cpu",
    dtype: str = "auto",
    compile: bool = False,
) -> Refiner:
    """A randomly initialised refiner (for tests, training, benchmarks), reproducible per seed."""
    config = preset_config(preset)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = RefinementNetwork(config)
    return Refiner(network, device=device, dtype=dtype, compile=compile)


def load_refiner(
    name_or_path: str | os.PathLike = "default",
    device: str = "auto",
    dtype: str = "auto",
    compile: bool = False,
) -> Refiner:
    """Load trained weights: a bundled name, a local .safetensors path, or hf://…@revision."""
    return Refiner(load_network(name_or_path), device=device, dtype=dtype, compile=compile)


def parameter_count(network: torch.nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())



