"""A stand-in for a monocular depth predictor, built from ground truth with the paper's noise model.

SDDR models a predictor's output at inference resolution r as D ≈ D* + ε_cons + ε_edge
(method.md §8, Eq. 1): ε_cons is local inconsistency (each region bounded by edges, inside each
64×64 patch, gets its own scale and shift) and ε_edge is edge blur (down-sampling to r, then
Gaussians along D*'s edges). `SimulatedPredictor` applies exactly that to a ground-truth map, so
everything downstream can be judged against a predictor whose errors are known and repeatable.
A window of the scene (two-stage refinement's) is predicted as a real predictor run on the crop
would predict it: from the crop alone, in its own range, with its own noise.
`evaluation.diagnostics` measures the two properties it must have: edges sharpen and local
consistency degrades as r rises. docs/simulator.md explains every parameter value.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..errors import InputError
from ..maps.inputs import nearest_fill
from ..maps.resample import scaled_size
from .base import GRADIENT_PRIOR, check_resolution

MIN_REGION = 8
"""Smallest side of a `region`, in image pixels: below it a crop holds no scene structure."""


@dataclass(frozen=True)
class NoiseParameters:
    """The noise model's constants, fixed a priori (docs/simulator.md gives the reasons).

    Lengths are in predictor pixels (the inference resolution), depth values in units of the
    ground truth's normalised disparity range [0, 1]; r̂ is the predictor's training resolution.
    """

    patch_size: int = 64
    """ε_cons patch side (paper: 64×64)."""
    patch_overlap: float = 0.5
    """Fraction by which neighbouring ε_cons patches overlap (paper: 50 %)."""
    scale_sigma: float = 0.02
    """Std of a region's relative scale change a_c at r = r̂; grows ∝ r / r̂."""
    shift_sigma: float = 0.02
    """Std of a region's shift b_c at r = r̂, as a fraction of the map's range; ∝ r / r̂."""
    edge_threshold: float = 0.025
    """Per-pixel disparity change above which a pixel is a depth edge: any step above 5 % of the
    range counts (it reads Δ/2), a slope needing over 40 px to cross the whole range does not."""
    edge_blur: float = 4.0
    """σ of the Gaussian blur placed along edges: ±2σ spans 16 px, one token of a DPT-style
    predictor (was 2.0 until issue 8; docs/simulator.md gives the source)."""
    edge_band: float = 2.0
    """σ of the blur's weight fall-off with distance from an edge, in units of `edge_blur`."""


class SimulatedPredictor:
    """Predicts disparity of a known scene at any inference resolution, with realistic noise.

    Low resolutions give consistent structure and blurred edges; high resolutions give sharp
    edges and local inconsistency, as MiDaS or Depth Anything do. Same `seed` and resolution,
    same output, bit for bit.
    """

    name = "simulated"
    polarity = "disparity"
    gradient_prior = GRADIENT_PRIOR

    def __init__(
        self,
        depth: np.ndarray,
        valid: np.ndarray | None = None,
        seed: int = 0,
        training_resolution: int = 384,
        noise: NoiseParameters = NoiseParameters(),
    ) -> None:
        if not isinstance(seed, numbers.Integral) or seed < 0:
            raise InputError(f"seed: expected a non-negative integer, got {seed!r}")
        if not isinstance(training_resolution, numbers.Integral) or training_resolution < 1:
            raise InputError(
                f"training_resolution: expected a positive integer, got {training_resolution!r}"
            )
        self.disparity, _ = normalised_disparity(depth, valid)
        self.seed = int(seed)
        self.training_resolution = int(training_resolution)
        self.noise = noise

    @property
    def shape(self) -> tuple[int, int]:
        """Ground-truth (and image) size H×W."""
        return self.disparity.shape

    def inference_size(
        self, resolution: int, region: tuple[int, int, int, int] | None = None
    ) -> tuple[int, int]:
        """(h, w) for a long side of `resolution`, keeping the aspect ratio of the image (or of
        `region`, (top, left, height, width), when given)."""
        height, width = self.shape if region is None else region[2:]
        return scaled_size(height, width, resolution)

    def predict(
        self,
        image: np.ndarray | None,
        resolution: int,
        region: tuple[int, int, int, int] | None = None,
    ) -> np.ndarray:
        """Disparity-like prediction at the inference size (h×w float32, about [0, 1]).

        `image` is the RGB the predictor would see; only its size is checked, since the noise
        depends on the scene's depth alone. The caller up-samples, as with a real predictor.
        With `region` = (top, left, height, width), it predicts that crop of the scene as a
        predictor run on the crop alone would (`image` is then the crop): the crop's disparity
        normalised to its own [0, 1], so the edge threshold and ε_cons are relative to the range
        the crop spans and nothing outside it shows; the noise model at the crop's own inference
        size, so the blur's σ is in the predictor's pixels (wider on the image when the crop is
        predicted below its native size); draws seeded by the region too.
        """
        if region is not None:
            region = self._check_region(region)
        size = self.shape if region is None else region[2:]
        if image is not None:
            shape = np.shape(image)
            if len(shape) != 3 or shape[2] != 3 or shape[:2] != size:
                what = "the ground truth" if region is None else "the region"
                raise InputError(
                    f"image: expected an RGB array shaped {size[0]}×{size[1]}×3 "
                    f"like {what}, got shape {shape}"
                )
        resolution = check_resolution(resolution)
        if region is None:
            truth, entropy = self.disparity, [self.seed, int(resolution)]
        else:
            top, left, height, width = region
            truth = _own_range(self.disparity[top: top + height, left: left + width])
            entropy = [self.seed, int(resolution), *region]
        height, width = self.inference_size(resolution, region)
        shrinking = height * width < truth.size
        seen = cv2.resize(truth, (width, height),
                          interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        edges = depth_edges(seen, self.noise.edge_threshold)
        rng = np.random.default_rng(np.random.SeedSequence(entropy))
        strength = resolution / self.training_resolution
        inconsistent = seen + _inconsistency(seen, edges, self.noise, strength, rng)
        return _blur_edges(inconsistent, edges, self.noise).astype(np.float32)

    def _check_region(self, region) -> tuple[int, int, int, int]:
        """(top, left, height, width) as ints, inside the image, each side ≥ MIN_REGION."""
        values = tuple(region) if isinstance(region, (tuple, list)) else ()
        integers = len(values) == 4 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values
        )
        if integers:
            top, left, height, width = (int(v) for v in values)
            inside = (top >= 0 and left >= 0 and top + height <= self.shape[0]
                      and left + width <= self.shape[1])
            if inside and min(height, width) >= MIN_REGION:
                return top, left, height, width
        raise InputError(
            f"region: expected (top, left, height, width) integers for a crop of at least "
            f"{MIN_REGION}×{MIN_REGION} px inside the {self.shape[0]}×{self.shape[1]} image, "
            f"got {region!r}"
        )


def _own_range(crop: np.ndarray) -> np.ndarray:
    """`crop` min-max normalised to [0, 1] (a constant crop: 0): what a relative-depth predictor
    shown only the crop can know of its values (the rest of the image's range is unseen)."""
    low, high = float(crop.min()), float(crop.max())
    if high == low:
        return np.zeros_like(crop)
    return ((crop - low) / (high - low)).astype(np.float32)


# --------------------------------------------------------------------------------- noise model

def _inconsistency(
    seen: np.ndarray, edges: np.ndarray, noise: NoiseParameters, strength: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """ε_cons: per patch, each edge-bounded region gets its own random scale and shift.

    The patches' perturbations are blended with sin² windows, so a flat surface drifts smoothly
    across patches while the perturbation can still jump across an edge inside a patch.
    """
    height, width = seen.shape
    total = np.zeros((height, width), np.float64)
    weights = np.zeros((height, width), np.float64)
    rows = _patch_starts(height, noise.patch_size, noise.patch_overlap)
    cols = _patch_starts(width, noise.patch_size, noise.patch_overlap)
    window_y = _window(min(noise.patch_size, height))
    window_x = _window(min(noise.patch_size, width))
    window = window_y[:, None] * window_x[None, :]
    scale_sigma = noise.scale_sigma * strength
    shift_sigma = noise.shift_sigma * strength
    for top in rows:
        for left in cols:
            area = (slice(top, top + len(window_y)), slice(left, left + len(window_x)))
            values = seen[area]
            labels = _regions(edges[area])
            counts = np.bincount(labels)
            means = np.bincount(labels, weights=values.ravel()) / np.maximum(counts, 1)
            scale, shift = rng.standard_normal((2, len(counts)))
            change = scale_sigma * scale[labels] * (values.ravel() - means[labels])
            change += shift_sigma * shift[labels]
            total[area] += window * change.reshape(values.shape)
            weights[area] += window
    return total / weights


def _patch_starts(length: int, patch: int, overlap: float) -> list[int]:
    """Patch origins at stride patch·(1 − overlap), the last one flush with the border."""
    if length <= patch:
        return [0]
    stride = max(1, round(patch * (1 - overlap)))
    starts = list(range(0, length - patch + 1, stride))
    if starts[-1] + patch < length:
        starts.append(length - patch)
    return starts


def _window(length: int) -> np.ndarray:
    """sin² taper, positive everywhere so border pixels keep a (small) weight."""
    return np.sin(np.pi * (np.arange(length) + 0.5) / length) ** 2


def _regions(edges: np.ndarray) -> np.ndarray:
    """Component index (from 0) of the non-edge pixels; edge pixels join the nearest component."""
    count, labels = cv2.connectedComponents((~edges).astype(np.uint8), connectivity=4)
    if count <= 2:  # one region (or only edge pixels): the whole patch moves together
        return np.zeros(edges.size, np.int64)
    labels = nearest_fill(torch.from_numpy(labels.astype(np.float32)), torch.from_numpy(~edges))
    return labels.numpy().astype(np.int64).ravel() - 1


def _blur_edges(values: np.ndarray, edges: np.ndarray, noise: NoiseParameters) -> np.ndarray:
    """ε_edge: Gaussian blur faded in around edges (weight exp(−dist² / 2(band·σ)²))."""
    if not edges.any():
        return values
    blurred = cv2.GaussianBlur(values, (0, 0), noise.edge_blur, borderType=cv2.BORDER_REFLECT)
    distance = edge_distance(edges)
    weight = np.exp(-(distance**2) / (2 * (noise.edge_band * noise.edge_blur) ** 2))
    return weight * blurred + (1 - weight) * values


# ------------------------------------------- ground truth and edges (also evaluation.diagnostics)

def normalised_disparity(
    depth: np.ndarray, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(1/depth min-max normalised to [0, 1] over valid pixels, holes filled; the valid mask).

    Valid = finite, positive and (if given) `valid`. Holes take the nearest valid pixel's value,
    so a predictor built on it predicts everywhere, as a real one does.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
        raise InputError(f"depth: expected a numeric H×W array, got shape {depth.shape} "
                         f"and dtype {depth.dtype}")
    depth = depth.astype(np.float64)
    mask = np.isfinite(depth) & (depth > 0)
    if valid is not None:
        if np.shape(valid) != depth.shape:
            raise InputError(f"valid: expected a mask shaped like depth {depth.shape}, "
                             f"got shape {np.shape(valid)}")
        mask &= np.asarray(valid, dtype=bool)
    if mask.sum() < 2:
        raise InputError(f"depth: needs at least 2 valid (finite, positive) pixels, "
                         f"got {int(mask.sum())}")
    disparity = np.zeros(depth.shape, np.float64)
    disparity[mask] = 1 / depth[mask]
    low, high = disparity[mask].min(), disparity[mask].max()
    if low == high:
        raise InputError(f"depth: every valid pixel has the same depth ({1 / low:g}); "
                         "a scene needs at least two distinct depths")
    disparity = ((disparity - low) / (high - low)).astype(np.float32)
    if not mask.all():
        disparity = nearest_fill(torch.from_numpy(disparity), torch.from_numpy(mask)).numpy()
    return disparity, mask


def depth_edges(disparity: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels whose disparity changes by more than `threshold` per pixel (Sobel / 8).

    A 3×3 Sobel is 8× the central difference on a ramp, so dividing by 8 makes the threshold a
    per-pixel change: a step of height Δ reads Δ/2 on both of its sides.
    """
    gx = cv2.Sobel(disparity, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(disparity, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    return np.hypot(gx, gy) / 8 > threshold


def edge_distance(edges: np.ndarray) -> np.ndarray:
    """Distance in pixels to the nearest edge pixel (OpenCV's 5×5 approximation, within 2 %)."""
    return cv2.distanceTransform((~edges).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
