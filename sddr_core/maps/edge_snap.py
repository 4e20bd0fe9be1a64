"""Edge snapping: depth ramps put onto one side or the other of the step, guided by the photo.

A refined depth discontinuity is a ramp a few pixels wide (N_r never sees the photo, and its
output is up-sampled), and every pixel on it floats between foreground and background: a
rubber sheet or a hole in a mesh. Where the photo is known, each ramp pixel can be given to
the side it looks like.

A pixel steeper than `min_step` of the map's robust value range spread over 2r + 1 px is
looked at along its gradient: the profile of the 2r + 1 pixels through it, uphill and
downhill. It is on a ramp when

- the profile spans at least `min_step` of the map's range (a fraction of the range, so the
  rule is the same for depth and disparity, metric or relative, and both polarities);
- its own value lies more than `SIDE_BAND` of that span from both ends;
- the profile is no straight line: it leaves the chord between its ends by more than
  `STRAIGHT` of its range, and so do its reciprocals where it is positive (a slanted plane is
  straight in disparity, and in depth nearly so; a ramp bends where it meets its sides).

Its two sides are the profile's pixels within `SIDE_BAND` of the uphill maximum and of the
downhill minimum, and their nearest pixels lie at most r apart (a wider bend is a smooth
surface, not a ramp). The nearest pixel of each side gives that side's value and, with the next
one, its colour. The ramp pixel takes the value of the side more alike in colour (a Gaussian
of the RGB distance, `colour_sigma`), each side's likeness weighted by how close the pixel's
value already is to it, so an edge with one colour on both sides splits at its middle. Values
are copied, never mixed: every output value is the input's at a pixel within r, and a slanted
side stays slanted. Gentle surfaces are not steep enough to be looked at, steep ones are
straight, and a colour edge with no depth step has no ramp to snap.

Torch, batched, on the depth's device. Only the steep pixels are gathered, so beyond a few
whole-map passes the cost follows the length of the edges, not the area.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .normalise import robust_range
from .resample import resize_maps

RADIUS = 8
"""Profile half-length r in pixels: ramps up to r px wide are snapped, seen from both sides."""
MIN_STEP = 0.05
"""Smallest step snapped, as a fraction of the map's robust value range."""
COLOUR_SIGMA = 0.1
"""Colour distance (RGB in [0, 1]) at which a pixel's likeness to a side falls to e^−½."""
SIDE_BAND = 0.1
"""Values within this fraction of a step from its end belong to that side: the flying-pixel
rule's 10 % (issue 24), so a pixel already there is left alone."""
STRAIGHT = SIDE_BAND
"""A profile that stays within this fraction of its span of the straight line between its
ends is a surface (a slanted plane, a gradient), not a ramp between two sides."""
SIDE_PIXELS = 2
"""Side pixels (nearest first) whose mean colour is the side's colour: less photo noise than
one."""

CHUNK_ELEMENTS = 1 << 23
"""Profile entries (steep pixels × (2r + 1)) handled at once: bounds memory to a few hundred
MB whatever the map's size."""

DIRECTIONS = torch.tensor([(0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1)])
"""(dy, dx) of the eight gradient directions, by angle atan2(dy, dx) in steps of 45°."""

DepthArray = np.ndarray | torch.Tensor


def snap_edges(depth: DepthArray, image: DepthArray, *, radius: int = RADIUS,
               min_step: float = MIN_STEP, colour_sigma: float = COLOUR_SIGMA) -> DepthArray:
    """Depth with the pixels of its ramps moved onto the step's nearer or farther side.

    Parameters
    ----------
    depth : numpy.ndarray or torch.Tensor
        (H, W) or (B, H, W) finite depth or disparity (either polarity: the rule is symmetric).
    image : numpy.ndarray or torch.Tensor
        The photo the depth is of, (H', W', 3) or (B, H', W', 3), uint8, uint16 or float in
        [0, 1]. Another size than the depth's is resized to it (bilinear, anti-aliased when
        shrinking): the photo must show the same view, but may be at a different resolution.
    radius, min_step, colour_sigma : keyword-only
        The profile half-length r (px), the smallest step snapped (a fraction of the map's
        value range) and the colour distance scale; see the module docstring. The defaults
        were picked on procedural scenes (docs/decisions.md).

    Returns
    -------
    numpy.ndarray or torch.Tensor
        float32, `depth`'s container, shape and device. Every value is the input's value at
        a pixel at most r away (so within the [min, max] of the (2r + 1)² window around it);
        pixels off ramps are unchanged.

    Raises
    ------
    InputError
        A bad `depth`, `image` or setting, named, with the reason.

    Examples
    --------
    >>> depth = np.repeat(np.interp(np.arange(32), [12, 20], [1.0, 2.0])[None], 16, axis=0)
    >>> image = np.zeros((16, 32, 3), np.uint8); image[:, 15:] = 255
    >>> snapped = snap_edges(depth, image)
    >>> bool(np.all(snapped[:, :15] < 1.1) and np.all(snapped[:, 15:] > 1.9))
    True
    """
    _check_settings(radius, min_step, colour_sigma)
    maps = _depth_batch(depth)
    guide = _guide_batch(image, maps)
    snapped = _snap(maps, guide, radius, min_step, colour_sigma)
    result = snapped if maps.ndim == _as_tensor(depth, "depth").ndim else snapped[0]
    if isinstance(depth, np.ndarray):
        return result.cpu().numpy()
    return result


def _snap(depth: torch.Tensor, guide: torch.Tensor, radius: int, min_step: float,
          colour_sigma: float) -> torch.Tensor:
    """B×H×W depth snapped with the B×3×H×W guide (float, [0, 1], depth's size)."""
    map_low, map_high = robust_range(depth)
    edge = (min_step * (map_high - map_low)).float()  # [B]
    # 1. Steep pixels: central differences, borders replicated  # [B,H,W]
    padded = F.pad(depth[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    slope_x = (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]) / 2
    slope_y = (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]) / 2
    slope = torch.maximum(slope_x.abs(), slope_y.abs())
    steep = (slope >= (edge / (2 * radius + 1))[:, None, None]) & (slope > 0)
    where = steep.nonzero()  # [K,3]: b, y, x
    snapped = depth.clone()
    for chunk in where.split(max(1, CHUNK_ELEMENTS // (2 * radius + 1))):
        b, y, x = chunk.unbind(1)
        targets, values = _snap_steep(depth, guide, b, y, x, slope_x[b, y, x],
                                      slope_y[b, y, x], edge[b], radius, colour_sigma)
        snapped.view(-1)[targets] = values
    return snapped


def _snap_steep(depth: torch.Tensor, guide: torch.Tensor, b: torch.Tensor, y: torch.Tensor,
                x: torch.Tensor, slope_x: torch.Tensor, slope_y: torch.Tensor,
                edge: torch.Tensor, radius: int, colour_sigma: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat indices, snapped values) of the ramp pixels among steep pixels (b, y, x)."""
    height, width = depth.shape[-2:]
    # 2. The profile along the uphill direction  # [K,2r+1], k = −r..r
    sector = torch.round(torch.atan2(slope_y, slope_x) / (torch.pi / 4)).long() % 8
    direction = DIRECTIONS.to(depth.device)[sector]  # [K,2]
    k = torch.arange(-radius, radius + 1, device=depth.device)
    ys, xs = y[:, None] + k * direction[:, :1], x[:, None] + k * direction[:, 1:]
    inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)  # a run of k around 0
    index = (b[:, None] * height + ys.clamp(0, height - 1)) * width + xs.clamp(0, width - 1)
    profile = depth.reshape(-1)[index]
    centre = profile[:, radius]
    uphill, downhill = inside & (k >= 0), inside & (k <= 0)
    top = profile.masked_fill(~uphill, -torch.inf).amax(1)
    bottom = profile.masked_fill(~downhill, torch.inf).amin(1)
    span = top - bottom
    keep = ((span >= edge) & (centre > bottom + SIDE_BAND * span)
            & (centre < top - SIDE_BAND * span)).nonzero()[:, 0]
    profile, inside, index, uphill, downhill = (t[keep] for t in (profile, inside, index,
                                                                   uphill, downhill))
    centre, top, bottom, span = centre[keep], top[keep], bottom[keep], span[keep]
    # straight in the map's values or, for positive maps, in their reciprocals: a plane is
    # straight in disparity and nearly so in depth, unless seen at a grazing angle
    bend = _bend(profile, inside)
    positive = (profile > 0).all(1)
    bend[positive] = torch.minimum(bend[positive], _bend(1 / profile[positive], inside[positive]))
    ramp = (bend > STRAIGHT).nonzero()[:, 0]
    # 3. Each side's nearest pixels, on the ramps: their values and colours  # [R,2r+1]
    profile, index, uphill, downhill = profile[ramp], index[ramp], uphill[ramp], downhill[ramp]
    centre, top, bottom, span = centre[ramp], top[ramp], bottom[ramp], span[ramp]
    near = uphill & (profile >= (top - SIDE_BAND * span)[:, None])
    far = downhill & (profile <= (bottom + SIDE_BAND * span)[:, None])
    width = torch.where(near, k, 2 * radius).amin(1) - torch.where(far, k, -2 * radius).amax(1)
    narrow = (width <= radius).nonzero()[:, 0]  # wider: a smooth bend, not a ramp
    profile, index, near, far = profile[narrow], index[narrow], near[narrow], far[narrow]
    centre, bottom, span = centre[narrow], bottom[narrow], span[narrow]
    colour = guide.permute(0, 2, 3, 1).reshape(-1, 3)
    centre_colour = colour[index[:, radius]]
    near_value, near_likeness = _side(profile, index, near, k, colour, centre_colour,
                                      colour_sigma)
    far_value, far_likeness = _side(profile, index, far, -k, colour, centre_colour,
                                    colour_sigma)
    # 4. The side more alike, weighted by closeness in value
    position = (centre - bottom) / span  # in (SIDE_BAND, 1 − SIDE_BAND): 1 = near
    to_near = near_likeness * position > far_likeness * (1 - position)
    return index[:, radius], torch.where(to_near, near_value, far_value)


def _bend(profile: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """How far each profile (K×(2r + 1), `inside` the map on a run of entries) strays from the
    straight line between its ends inside the map, as a fraction of its range."""
    first = inside.int().argmax(1, keepdim=True)
    last = inside.shape[1] - 1 - inside.flip(1).int().argmax(1, keepdim=True)
    along = (torch.arange(inside.shape[1], device=profile.device) - first) / (last - first)
    chord = torch.lerp(profile.gather(1, first), profile.gather(1, last), along)
    stray = (profile - chord).abs().masked_fill(~inside, 0).amax(1)
    span = profile.masked_fill(~inside, -torch.inf).amax(1) - \
        profile.masked_fill(~inside, torch.inf).amin(1)
    return stray / span.clamp_min(torch.finfo(span.dtype).tiny)


def _side(profile: torch.Tensor, index: torch.Tensor, side: torch.Tensor, distance: torch.Tensor,
          colour: torch.Tensor, centre_colour: torch.Tensor, colour_sigma: float
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(value, colour likeness to the centre) of one side of each ramp: the value of its pixel
    nearest the centre along the profile (`distance` ≥ 1 on this side's half), and the
    likeness of the mean colour of its SIDE_PIXELS nearest pixels (fewer where the side has
    fewer; it has at least one, the end of the ramp's span)."""
    order = torch.where(side, distance, torch.iinfo(torch.long).max)
    nearest = []
    for _ in range(SIDE_PIXELS):  # argmin per pixel: cheaper than sorting the profile
        nearest.append(order.argmin(1, keepdim=True))
        order = order.scatter(1, nearest[-1], torch.iinfo(torch.long).max)
    nearest = torch.cat(nearest, 1)  # [K,SIDE_PIXELS]
    chosen = side.gather(1, nearest)
    value = profile.gather(1, nearest[:, :1])[:, 0]
    pixels = colour[index.gather(1, nearest)]  # [K,SIDE_PIXELS,3]
    mean = (pixels * chosen[..., None]).sum(1) / chosen.sum(1, keepdim=True).clamp_min(1)
    likeness = torch.exp(-(mean - centre_colour).square().sum(1) / (2 * colour_sigma**2))
    return value, likeness


# ----------------------------------------------------------------------------------- checks

def _check_settings(radius, min_step, colour_sigma) -> None:
    if not isinstance(radius, numbers.Integral) or isinstance(radius, bool) or radius < 1:
        raise InputError(f"radius {radius!r}: must be a whole number ≥ 1 (pixels)")
    for name, value in (("min_step", min_step), ("colour_sigma", colour_sigma)):
        if (not isinstance(value, numbers.Real) or isinstance(value, bool)
                or not (0 < value < float("inf"))):
            raise InputError(f"{name} {value!r}: must be a positive number")


def _as_tensor(array, name: str) -> torch.Tensor:
    if isinstance(array, np.ndarray):
        if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
            raise InputError(f"{name}: expected a real numeric array, got dtype {array.dtype}")
        return torch.from_numpy(np.ascontiguousarray(array.astype(array.dtype.newbyteorder("="),
                                                                  copy=False)))
    if isinstance(array, torch.Tensor):
        if array.is_complex() or array.dtype == torch.bool:
            raise InputError(f"{name}: expected real values, got dtype {array.dtype}")
        return array.detach()
    raise InputError(f"{name}: expected a numpy array or torch tensor, got "
                     f"{type(array).__name__}")


def _depth_batch(depth) -> torch.Tensor:
    """B×H×W float32 (a single H×W map gets B = 1); finite values only."""
    maps = _as_tensor(depth, "depth")
    if maps.ndim not in (2, 3) or 0 in maps.shape:
        raise InputError(f"depth: expected shape H×W or B×H×W, got {tuple(maps.shape)}")
    maps = maps.float()
    if not bool(torch.isfinite(maps).all()):
        bad = int((~torch.isfinite(maps)).sum())
        raise InputError(f"depth: holds {bad} NaN/inf values; edge snapping needs finite depth")
    return maps if maps.ndim == 3 else maps[None]


def _guide_batch(image, depth: torch.Tensor) -> torch.Tensor:
    """B×3×H×W float in [0, 1] on the depth's device and at its size."""
    pixels = _as_tensor(image, "image")
    if pixels.ndim == 3:
        pixels = pixels[None]
    if pixels.ndim != 4 or pixels.shape[-1] != 3 or 0 in pixels.shape:
        raise InputError(f"image: expected an RGB image shaped H×W×3 or B×H×W×3, got "
                         f"{tuple(image.shape)}")
    if pixels.shape[0] != depth.shape[0]:
        raise InputError(f"image holds {pixels.shape[0]} picture(s) but depth "
                         f"{depth.shape[0]} map(s); give one picture per map")
    if pixels.dtype == torch.uint8:
        colour = pixels.float() / 255
    elif pixels.dtype == torch.uint16:
        colour = pixels.to(torch.int32).float() / 65535
    elif pixels.is_floating_point():
        colour = pixels.float()
        low, high = float(colour.min()), float(colour.max())
        if not (low >= 0 and high <= 1):  # also catches NaN
            raise InputError(f"image: a float image must hold values in [0, 1], found "
                             f"[{low:g}, {high:g}]")
    else:
        raise InputError(f"image: expected uint8, uint16 or float [0, 1] pixels, got dtype "
                         f"{pixels.dtype}")
    colour = colour.to(depth.device).permute(0, 3, 1, 2)  # [B,3,h,w]
    size = tuple(depth.shape[-2:])
    return resize_maps(colour.reshape(-1, *colour.shape[-2:]), size).reshape(-1, 3, *size)
