"""ComfyUI IMAGE tensors ↔ depth maps, without ComfyUI: what the nodes do around the core.

A depth map travels through a ComfyUI graph as an IMAGE, B×H×W×3 float in [0, 1], the gray
value repeated in the three channels, near = bright. The nodes take such IMAGEs from any depth
node (either polarity), hand B×H×W maps to `sddr_core`, and turn the result back into one.
Every problem is an `InputError` naming the node input, since ComfyUI shows the message as-is.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from sddr_core import InputError
from sddr_core.maps.inputs import MIN_SIDE, first_constant_map
from sddr_core.maps.normalise import normalise_maps, robust_range
from sddr_core.maps.resample import resize_maps

POLARITIES = ("auto", "near-bright", "far-bright")
NORMALISATIONS = ("per frame", "whole batch", "raw")
LOAD_VALUES = ("0..1", "raw")
SAVE_SCALINGS = ("as is", "per frame", "whole batch")
COLOUR_TOLERANCE = 0.02
"""Mean absolute difference between channels above which a 3-channel IMAGE is a colour
picture, not a gray depth map (an 8-bit gray PNG through JPEG stays far below it)."""
EDGE_CLIP = 0.005
"""Fraction of an edge map's pixels clipped at each end when it is scaled for display."""
POLARITY_BAND = 0.2
"""Fraction of rows at the top and at the bottom that `auto` polarity compares."""


def check_image(image: torch.Tensor, name: str) -> None:
    """Refuse what is no B×H×W×C IMAGE, or one with no frames (an empty batch from a
    filtering or batch node), naming the input."""
    if not isinstance(image, torch.Tensor):
        raise InputError(f"{name}: expected an IMAGE tensor, got {type(image).__name__}")
    if image.ndim != 4:
        raise InputError(f"{name}: expected an IMAGE shaped batch×height×width×channels, "
                         f"got shape {tuple(image.shape)}")
    if image.shape[0] == 0:
        raise InputError(f"{name}: the IMAGE batch is empty (0 frames); connect a node that "
                         "gives at least one frame")


def image_to_maps(image: torch.Tensor, name: str) -> torch.Tensor:
    """B×H×W float32 maps (on the CPU), a copy of channel 0 of a depth IMAGE (`gray_view`)."""
    return gray_view(image, name).clone()


def gray_view(image: torch.Tensor, name: str) -> torch.Tensor:
    """Channel 0 of a B×H×W×C depth IMAGE with 1 or 3 gray channels, as B×H×W float32 on the
    CPU: a view of the IMAGE where it already is one (clip mode reads it frame by frame, so
    no copy of the batch is made).

    Any value range is accepted (0..1, 16-bit counts, metres): channels are compared relative
    to the values' magnitude, so large gray values are not taken for colour.
    """
    check_image(image, name)
    channels = image.shape[-1]
    if channels == 4:
        raise InputError(f"{name}: the depth IMAGE has 4 channels (colour + alpha); a depth map "
                         "has 1 or 3 equal gray channels. Connect the depth node's IMAGE "
                         "output directly, without an alpha channel")
    if channels not in (1, 3):
        raise InputError(f"{name}: the depth IMAGE has {channels} channels; expected 1 or 3")
    height, width = image.shape[1:3]
    if min(height, width) < MIN_SIDE:
        raise InputError(f"{name}: the depth IMAGE is {height}×{width}; at least "
                         f"{MIN_SIDE}×{MIN_SIDE} is needed")
    pixels = image.detach().to("cpu", torch.float32)
    if channels == 3 and _channel_spread(pixels) > COLOUR_TOLERANCE:
        raise InputError(f"{name}: this IMAGE is in colour, not a gray depth map (its "
                         "channels differ). Is the photo connected here instead of a "
                         "depth node's output?")
    return pixels[..., 0]


def _channel_spread(pixels: torch.Tensor) -> float:
    """Mean difference of channels 1, 2 from channel 0 over the finite pixels, relative to
    their largest magnitude (at least 1, the range of a 0..1 IMAGE): 0 for any gray map.
    Summed frame by frame, so a long batch is never copied whole."""
    total, count, scale = 0.0, 0, 1.0
    for frame in pixels:
        values = frame[torch.isfinite(frame).all(dim=-1)]
        if values.numel():
            total += (values - values[:, :1]).abs().sum().item()
            count += values.numel()
            scale = max(scale, values.abs().max().item())
    return total / count / scale if count else 0.0  # no value: check_maps names the frame


def check_maps(maps: torch.Tensor, name: str) -> None:
    """Refuse a batch holding a map with no finite value or a constant map, naming the frame
    (checked frame by frame: no copy of the batch)."""
    for index, frame in enumerate(maps):
        if not bool(torch.isfinite(frame).any()):
            raise InputError(f"{name}: frame {index} has no finite depth values (all NaN/inf)")
        filled = frame.nan_to_num(0.0, 0.0, 0.0)
        if first_constant_map(filled[None]) is not None:
            raise InputError(f"{name}: frame {index} is constant (every pixel "
                             f"{filled.flatten()[0].item():g}): a depth map needs "
                             "structure. Check the depth node that feeds it")


def is_near_bright(maps: torch.Tensor, polarity: str) -> bool:
    """Whether larger values are nearer, as told or, for `auto`, decided once for the batch.

    `auto` uses the ground-plane prior: in most pictures the bottom rows are nearer than the
    top rows, so near-bright maps are brighter at the bottom. One decision for the whole batch
    keeps a video from flipping frame to frame; a tie counts as near-bright, the convention
    of every ComfyUI depth node.
    """
    if polarity not in POLARITIES:
        raise InputError(f"input_polarity {polarity!r}: choose from {', '.join(POLARITIES)}")
    if polarity != "auto":
        return polarity == "near-bright"
    band = max(1, round(POLARITY_BAND * maps.shape[-2]))
    difference = 0.0
    for frame in maps:  # the frames' mean difference, without a scaled copy of the batch
        scaled = normalise_maps(torch.nan_to_num(frame)[None])[0]
        difference += (scaled[-band:].mean() - scaled[:band].mean()).item()
    return difference >= 0


def to_image(maps: torch.Tensor, near_bright: bool, normalisation: str) -> torch.Tensor:
    """A B×H×W×3 float32 depth IMAGE in [0, 1], near = bright, from B×H×W maps; or, for
    `raw`, the maps' own values (their units and polarity). See `normalise_image`."""
    return normalise_image(gray_image(maps, len(maps), tuple(maps.shape[-2:])), near_bright,
                           normalisation)


def gray_image(frames: Iterable, count: int, size: tuple[int, int]) -> torch.Tensor:
    """A B×H×W×3 float32 IMAGE of `count` H×W maps (numpy or torch) taken from `frames` one
    at a time, each written into its three channels as it comes: the output is the only
    buffer the batch needs, so clip mode can fill it from a lazy sequence of refined frames."""
    image = torch.empty(count, *size, 3)
    for index, frame in zip(range(count), frames, strict=True):
        image[index] = torch.as_tensor(frame).to("cpu", torch.float32)[..., None]
    return image


def normalise_image(image: torch.Tensor, near_bright: bool, normalisation: str
                    ) -> torch.Tensor:
    """`image` (a B×H×W×3 gray IMAGE of depth) scaled in place to [0, 1], near = bright, and
    returned; for `raw` left as it is.

    Each frame is scaled between its robust range (the core's rule: 0.1 %/99.9 % values), or
    the whole batch between the batch's, which keeps a video's brightness from flickering.
    The range is taken from a sample and the scaling done frame by frame, so no copy of the
    batch is made.
    """
    if normalisation not in NORMALISATIONS:
        raise InputError(f"normalisation {normalisation!r}: choose from "
                         f"{', '.join(NORMALISATIONS)}")
    if normalisation == "raw":
        return image
    gray = image[..., 0]
    whole = normalisation == "whole batch"
    lows, highs = robust_range(gray.reshape(1, -1, gray.shape[-1]) if whole else gray)
    for index, frame in enumerate(image):
        low, high = (lows[0], highs[0]) if whole else (lows[index], highs[index])
        scaled = ((frame[..., 0].double().clamp(low, high) - low) / (high - low)).float()
        frame.copy_((scaled if near_bright else 1.0 - scaled)[..., None].expand_as(frame))
    return image


def valid_mask(low: torch.Tensor, high: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B×H×W MASK at `size`: 1 where both inputs had a finite value, 0 where it was filled in."""
    mask = torch.empty(len(low), *size)
    for index in range(len(low)):  # frame by frame: no copy of the batch
        finite = [resize_maps(torch.isfinite(maps[index:index + 1]).float(), size)
                  for maps in (low, high)]
        mask[index] = ((finite[0] >= 1.0) & (finite[1] >= 1.0)).float()[0]
    return mask


def edges_to_image(edges: torch.Tensor) -> torch.Tensor:
    """G_S (B×H×W, ≥ 0) as a B×H×W×3 IMAGE, white lines on black: each frame scaled to
    [0, 1] between its EDGE_CLIP quantiles, so a few strong edges do not leave the rest black
    (a frame with no edges stays black)."""
    scaled = normalise_maps(edges.to("cpu", torch.float32), EDGE_CLIP).nan_to_num(0.0)
    return scaled[..., None].expand(-1, -1, -1, 3).contiguous()


def image_to_rgb(image: torch.Tensor, index: int, name: str = "image"):
    """Frame `index` of a B×H×W×3 IMAGE as the H×W×3 uint8 array the core's predictors read."""
    check_image(image, name)
    if image.shape[-1] not in (1, 3, 4):
        raise InputError(f"{name}: expected an IMAGE shaped batch×height×width×3, got "
                         f"{tuple(image.shape)}")
    frame = image[index, ..., :3].detach().to("cpu", torch.float32)
    if frame.shape[-1] == 1:
        frame = frame.expand(-1, -1, 3)
    return (frame.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


def file_to_image(depth: np.ndarray, values: str, name: str
                  ) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """(1×H×W×3 IMAGE, 1×H×W valid MASK, min, max) from a depth file's H×W values.

    `0..1` maps the file's finite range linearly onto [0, 1], keeping its polarity (the range
    ControlNet, previews and the SDDR nodes expect); `raw` keeps the values as read (16-bit
    PNG 0..65535, EXR/NPY in their units). Non-finite pixels become 0, and 0 in the mask.
    """
    if values not in LOAD_VALUES:
        raise InputError(f"values {values!r}: choose from {', '.join(LOAD_VALUES)}")
    maps = torch.from_numpy(np.asarray(depth, np.float32))[None]
    finite = torch.isfinite(maps)
    if not bool(finite.any()):
        raise InputError(f"{name}: the file has no finite depth values (all NaN/inf)")
    low, high = maps[finite].min().item(), maps[finite].max().item()
    if values == "0..1":
        span = (high - low) or 1.0  # a constant map stays 0: the refine node names it
        maps = ((maps.double() - low) / span).float()
    image = torch.where(finite, maps, torch.zeros(()))
    return image[..., None].expand(-1, -1, -1, 3).contiguous(), finite.float(), low, high


def scaled_for_saving(maps: torch.Tensor, scaling: str) -> torch.Tensor:
    """B×H×W maps as SDDR Save Depth writes them: `as is`, or min-max scaled onto [0, 1] per
    frame or by one range for the whole batch (a sequence then keeps its brightness)."""
    if scaling not in SAVE_SCALINGS:
        raise InputError(f"scaling {scaling!r}: choose from {', '.join(SAVE_SCALINGS)}")
    if scaling == "as is":
        return maps
    finite = torch.isfinite(maps)
    dims = (1, 2) if scaling == "per frame" else (0, 1, 2)
    low = torch.where(finite, maps, torch.inf).double().amin(dim=dims, keepdim=True)
    high = torch.where(finite, maps, -torch.inf).double().amax(dim=dims, keepdim=True)
    span = torch.where(high > low, high - low, torch.ones(()))
    return ((maps.double() - low) / span).float()
