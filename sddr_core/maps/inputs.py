"""Turning user depth maps (numpy or torch, any layout) into clean B×H×W float tensors.

Every problem is reported against the argument's name (`low`, `high`), so a user of
the CLI, ComfyUI or Blender sees which input was wrong and why.
"""

from __future__ import annotations

import math
import warnings

import cv2
import numpy as np
import torch

from ..errors import InputError

MIN_SIDE = 8
ASPECT_TOLERANCE = 0.02
"""Relative aspect-ratio difference between low and high above which we warn."""
ASPECT_LIMIT = 0.1
"""Relative aspect-ratio difference between low and high above which the pair is refused:
predictors round sides to their patch size, a few percent at most."""


def as_depth_batch(depth, name: str, device: torch.device) -> torch.Tensor:
    """B×H×W float32 on `device` from H×W, B×H×W, B×1×H×W, H×W×1 or H×W×3/4 (channel 0, warned).

    Non-finite values are filled from the nearest finite pixel (warned); a map with no
    finite value, a constant map or one smaller than 8×8 is refused.
    """
    if isinstance(depth, np.ndarray):
        if not (np.issubdtype(depth.dtype, np.number) or depth.dtype == np.bool_):
            raise InputError(f"{name}: expected a numeric array, got dtype {depth.dtype}")
        native = depth.astype(depth.dtype.newbyteorder("="), copy=False)  # torch: native only
        tensor = torch.from_numpy(np.ascontiguousarray(native))
    elif isinstance(depth, torch.Tensor):
        tensor = depth.detach()
    else:
        raise InputError(f"{name}: expected a numpy array or torch tensor, got {type(depth)}")
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise InputError(f"{name}: expected real depth values, got dtype {tensor.dtype}")
    tensor = _to_batch_layout(tensor, name).to(device=device, dtype=torch.float32)
    height, width = tensor.shape[-2:]
    if min(height, width) < MIN_SIDE:
        raise InputError(
            f"{name}: depth map is {height}×{width}; at least {MIN_SIDE}×{MIN_SIDE} is needed"
        )
    tensor = _fill_non_finite(tensor, name)
    constant = first_constant_map(tensor)
    if constant is not None:
        value = tensor[constant].flatten()[0].item()
        raise InputError(
            f"{name}: depth map {constant} is constant (every value is {value:g}); "
            "a depth map needs at least two distinct values"
        )
    return tensor


def first_constant_map(maps: torch.Tensor) -> int | None:
    """Index of the first map of a B×H×W stack whose values are all equal, or None."""
    flat = maps.reshape(maps.shape[0], -1)
    constant = (flat.amax(dim=1) == flat.amin(dim=1)).nonzero().flatten().tolist()
    return constant[0] if constant else None


def is_channels_last_map(shape: tuple[int, ...]) -> bool:
    """H×W×C with C in (1, 3, 4): one map with channels, not a batch of C-wide maps.

    A batch whose maps are 1, 3 or 4 pixels wide would be refused as too small anyway.
    """
    return len(shape) == 3 and shape[-1] in (1, 3, 4) and min(shape[:2]) >= MIN_SIDE


def _to_batch_layout(tensor: torch.Tensor, name: str) -> torch.Tensor:
    shape = tuple(tensor.shape)
    if tensor.ndim == 2:
        return tensor[None]
    if is_channels_last_map(shape):
        if shape[-1] > 1:
            warnings.warn(
                f"{name}: got a {shape[-1]}-channel image as depth; using channel 0",
                stacklevel=4,
            )
        return tensor[..., 0][None]
    if tensor.ndim == 3:
        return tensor
    if tensor.ndim == 4 and shape[1] == 1:
        return tensor[:, 0]
    raise InputError(
        f"{name}: expected depth shaped H×W, B×H×W or B×1×H×W, got shape {shape}"
    )


def _fill_non_finite(tensor: torch.Tensor, name: str) -> torch.Tensor:
    finite = torch.isfinite(tensor)
    if bool(finite.all()):
        return tensor
    filled = []
    for index, (sample, valid) in enumerate(zip(tensor, finite, strict=True)):
        invalid = int((~valid).sum())
        if invalid == 0:
            filled.append(sample)
            continue
        if invalid == valid.numel():
            raise InputError(f"{name}: depth map {index} has no finite values (all NaN/inf)")
        warnings.warn(
            f"{name}: {invalid} NaN/inf values in depth map {index} "
            f"({100 * invalid / valid.numel():.2g}%); filled from the nearest valid pixel",
            stacklevel=4,
        )
        filled.append(nearest_fill(sample, valid))
    return torch.stack(filled)


def nearest_fill(sample: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Each invalid pixel takes the value of its nearest valid pixel.

    Distances are OpenCV's 5×5-mask approximation of Euclidean (within about 2%); exact
    labels are not available from `distanceTransformWithLabels`.
    """
    values = sample.cpu().numpy()
    invalid = (~valid).cpu().numpy().astype(np.uint8)
    _, labels = cv2.distanceTransformWithLabels(
        invalid, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    # Labels number the valid (zero) pixels in row-major order, starting at 1.
    valid_values = values[invalid == 0]
    filled = valid_values[labels - 1]
    return torch.from_numpy(filled.astype(np.float32)).to(sample.device)


def aspect_difference(shape: tuple[int, ...], other: tuple[int, ...]) -> float:
    """|log| of the ratio of the aspect ratios (width over height) of two …×H×W shapes: what
    ASPECT_TOLERANCE and ASPECT_LIMIT bound."""
    return abs(math.log((shape[-1] / shape[-2]) / (other[-1] / other[-2])))


def check_pair(low: torch.Tensor, high: torch.Tensor,
               names: tuple[str, str] = ("low", "high")) -> None:
    """The one rule for a low/high pair, used by `Refiner.refine`, the CLI and the ComfyUI
    nodes alike (`names` are the caller's names for the two inputs).

    B×H×W `low` and `high` must hold as many maps. Aspect ratios within ASPECT_TOLERANCE
    pass silently (predictors round sides to their patch size); up to ASPECT_LIMIT, `low` is
    resized to `high`'s aspect ratio with a warning; beyond it they cannot be depth of one
    picture (a crop, a rotated frame, another picture) and the pair is refused.

    Raises
    ------
    InputError
        If the batch sizes differ or the aspect ratios differ by more than ASPECT_LIMIT.
    """
    if low.shape[0] != high.shape[0]:
        raise InputError(
            f"{names[0]} has {low.shape[0]} depth map(s) but {names[1]} has {high.shape[0]}: "
            "both must be depth of the same frames"
        )
    low_aspect = low.shape[-1] / low.shape[-2]
    high_aspect = high.shape[-1] / high.shape[-2]
    difference = aspect_difference(low.shape, high.shape)
    shapes = (f"{names[0]} is {low.shape[-2]}×{low.shape[-1]} and {names[1]} is "
              f"{high.shape[-2]}×{high.shape[-1]}: their aspect ratios differ "
              f"({low_aspect:.3f} vs {high_aspect:.3f})")
    if difference > ASPECT_LIMIT:
        raise InputError(f"{shapes} by more than {ASPECT_LIMIT:.0%}, too much to be depth of "
                         "the same picture; give both inputs the same framing")
    if difference > ASPECT_TOLERANCE:
        warnings.warn(f"{shapes}; {names[0]} is resized to {names[1]}'s aspect ratio",
                      stacklevel=3)
