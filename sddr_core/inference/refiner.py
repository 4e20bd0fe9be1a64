"""The single-pass refiner: `Refiner.refine(low, high)` = N_r on two predictions, made usable.

Around the network it handles what real inputs need: any layout, size and aspect ratio,
NaNs, outlier pixels (a robust normalisation, `maps.normalise`), the working resolution (the
high input's size, capped at `max_side` on the long side, padded — not stretched — to the
network stride), precision, and putting the result back into the low input's units and
polarity by a least-squares affine fit over the low input's inlier pixels.

A `Refiner` can wrap a network that is being trained: it runs it in eval mode and puts every
module's mode back afterwards, and changes nothing else (`build_refiner` and `load_refiner`,
which own their networks, also switch them to channels-last memory for CPU speed).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, SddrError
from ..files.weights import load_network, save_network
from ..maps.alignment import align_to
from ..maps.inputs import (
    as_depth_batch,
    check_pair,
    first_constant_map,
    is_channels_last_map,
)
from ..maps.normalise import BORDER_MARGIN, inlier_mask, network_inputs, padded_size, padding
from ..maps.resample import resize_maps, scaled_size
from ..maps.thin_structures import keep_thin_structures, thin_width
from ..network.config import NetworkConfig
from ..network.config import preset as preset_config
from ..network.model import RefinementNetwork
from ..runtime import resolve_device, resolve_dtype
from .clip import ClipState

DepthArray = np.ndarray | torch.Tensor


MAX_SIDE = 2048
"""Default cap on the working resolution's long side (the code's one-stage 2048²)."""
MIN_MAX_SIDE = 8


class Refiner:
    """The refinement network N_r ready for inference on one device and precision."""

    def __init__(
        self,
        network: RefinementNetwork,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        compile: bool = False,
        max_side: int = MAX_SIDE,
        keep_thin: bool = True,
    ):
        if not (isinstance(max_side, int) and max_side >= MIN_MAX_SIDE):
            raise InputError(f"max_side must be an integer ≥ {MIN_MAX_SIDE}, got {max_side!r}")
        self.max_side = max_side
        """Longest side of the working resolution; larger inputs are resized down to it."""
        self.keep_thin = keep_thin
        """Restore the high input's contrast of structures too thin for the low input to see
        (`maps.thin_structures`), which N_r alone erases."""
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.network = network.to(self.device)
        self._forward = torch.compile(self.network, dynamic=True) if compile else self.network

    @property
    def config(self) -> NetworkConfig:
        return self.network.config

    def save(self, path: str | os.PathLike) -> Path:
        """Write the weights and architecture config as one safetensors file."""
        return save_network(self.network, path)

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """The size N_r runs at for a high input of height×width (before stride padding)."""
        return scaled_size(height, width, min(self.max_side, max(height, width)))

    def network_input_size(self, height: int, width: int) -> tuple[int, int]:
        """The working size with a mirrored margin, padded up to a multiple of the stride."""
        return padded_size(self.working_size(height, width), self.config.stride, BORDER_MARGIN)

    def refine(
        self, low: DepthArray, high: DepthArray, out_size: tuple[int, int] | None = None,
        *, clip: bool = False,
    ) -> DepthArray:
        """Fuse a low-res and a high-res depth prediction of the same image into one.

        `low`, `high`: numpy arrays or torch tensors, H×W or B×H×W (B×1×H×W accepted), of any
        sizes; depth or disparity, as long as both use the same. Returns float32 depth at
        `out_size` (height, width), by default the high input's size, in the low input's
        polarity and value range; numpy in → numpy out, a tensor in → a tensor on its device.
        `clip=True` refines the B maps as the frames of one clip, in order (`refine_clip`);
        the result is then in the first frame's low input's units, drifting slowly with the
        later frames'.
        """
        if not isinstance(clip, bool):
            raise InputError(f"clip {clip!r}: must be True or False")
        low_maps = as_depth_batch(low, "low", self.device)
        high_maps = as_depth_batch(high, "high", self.device)
        check_pair(low_maps, high_maps)
        size = _check_out_size(out_size) or tuple(high_maps.shape[-2:])
        if clip:
            frames = zip(low_maps, high_maps, strict=True)
            refined = torch.stack(list(self.refine_clip(frames, size)))
        else:
            refined = self._refine_maps(low_maps, high_maps, size)
        return _like(refined, high)

    def refine_clip(
        self, frames: Iterable[tuple[DepthArray, DepthArray]],
        out_size: tuple[int, int] | None = None, *, state: ClipState | None = None,
    ) -> Iterator[DepthArray]:
        """Refine a clip's (low, high) frames in order, yielding each refined frame.

        Each frame is as in `refine` (H×W maps in → an H×W map out, numpy or tensor as given).
        Memory holds one frame and the `state` (`inference.clip`), whatever the clip's length.
        Pass a `state` to continue a clip refined in pieces (it is updated in place); frames
        of another size than the previous one start a new clip. Each frame's result is what
        `refine(..., clip=True)` gives for it; stop iterating to stop.

        Examples
        --------
        >>> import numpy as np
        >>> refiner = build_refiner(max_side=64)
        >>> ramp = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
        >>> [d.shape for d in refiner.refine_clip([(ramp, ramp), (ramp, ramp + 0.1)])]
        [(64, 64), (64, 64)]
        """
        state = ClipState() if state is None else state
        for index, (low, high) in enumerate(frames):
            low_maps = as_depth_batch(low, f"low of frame {index}", self.device)
            high_maps = as_depth_batch(high, f"high of frame {index}", self.device)
            check_pair(low_maps, high_maps)
            if low_maps.shape[0] != 1:
                raise InputError(f"frame {index}: expected one H×W map per frame, got "
                                 f"{low_maps.shape[0]}")
            size = _check_out_size(out_size) or tuple(high_maps.shape[-2:])
            yield _like(self._refine_maps(low_maps, high_maps, size, state), high)

    def _refine_maps(self, low_maps: torch.Tensor, high_maps: torch.Tensor,
                     size: tuple[int, int], state: ClipState | None = None) -> torch.Tensor:
        """B×H×W refined maps at `size`; with a `state`, one frame of a clip (B = 1)."""
        depth = resize_maps(_checked(self._run_network(low_maps, high_maps), "N_r's output"),
                            size)
        low_resized = resize_maps(low_maps, size)
        mask = inlier_mask(low_resized, low_maps)
        if state is None:
            refined = align_to(depth, low_resized, mask)
        else:
            refined = state.align(depth, low_resized, mask)
        if self.keep_thin:
            high_resized = resize_maps(high_maps, size)
            refined = keep_thin_structures(refined, high_resized,
                                           thin_width(size, low_maps.shape[-2:]),
                                           inlier_mask(high_resized, high_maps))
        if state is not None:
            refined = state.blend(refined)
        return _checked(refined, "the refined depth")

    def _run_network(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """D0 at the working size of the high input, in the network's [0, 1] units."""
        size = self.working_size(*high.shape[-2:])
        low_input, high_input = network_inputs(low, high, size, self.config.stride, BORDER_MARGIN)
        top, _, left, _ = padding(size, self.config.stride, BORDER_MARGIN)
        autocast = torch.autocast(
            self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32
        )
        with torch.inference_mode(), autocast, _evaluating(self.network):
            depth = self._forward(low_input, high_input).depth
        return depth[:, 0, top : top + size[0], left : left + size[1]].float()


@contextlib.contextmanager
def _evaluating(network: torch.nn.Module) -> Iterator[None]:
    """Eval mode (no drop-path) for the duration, then every module's own mode back."""
    modes = [module.training for module in network.modules()]
    network.eval()
    try:
        yield
    finally:
        for module, training in zip(network.modules(), modes, strict=True):
            module.training = training


def _checked(depth: torch.Tensor, what: str) -> torch.Tensor:
    """Refuse a result that is no depth map, so a broken model never writes a file."""
    if not bool(torch.isfinite(depth).all()):
        raise SddrError(f"{what} holds NaN or infinite values: the weights are broken or do "
                        "not suit these inputs")
    constant = first_constant_map(depth)
    if constant is not None:
        raise SddrError(f"{what} is constant for depth map {constant}: the weights are "
                        "broken or do not suit these inputs")
    return depth


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
    max_side: int = MAX_SIDE,
) -> Refiner:
    """A randomly initialised refiner (for tests, training, benchmarks), reproducible per seed."""
    config = preset_config(preset)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = RefinementNetwork(config)
    return Refiner(_for_inference(network), device=device, dtype=dtype, compile=compile,
                   max_side=max_side)


def load_refiner(
    name_or_path: str | os.PathLike = "default",
    device: str = "auto",
    dtype: str = "auto",
    compile: bool = False,
    max_side: int = MAX_SIDE,
) -> Refiner:
    """Load trained weights: a bundled name, a local .safetensors path, or hf://…@revision."""
    return Refiner(_for_inference(load_network(name_or_path)), device=device, dtype=dtype,
                   compile=compile, max_side=max_side)


def _for_inference(network: RefinementNetwork) -> RefinementNetwork:
    """A network this module created: eval mode, channels-last weights (faster CPU convs)."""
    return network.eval().to(memory_format=torch.channels_last)


def parameter_count(network: torch.nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())



