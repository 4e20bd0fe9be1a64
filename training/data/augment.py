"""Augmentations of a whole training sample: flips and sign inversion, as GBDF trains
(method.md §5), and clean copies (ours). Each acts on the low and high predictions, the target
and its mask together, so the sample stays consistent; the maps may differ in size (low and
high resolution)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One training sample before batching, all (H, W) maps with the same orientation.

    low, high : float32 predictions at the low and high resolution (sizes may differ).
    target : float32 ground truth D*_gt on the training grid.
    mask : bool, where `target` is valid.
    """

    low: np.ndarray
    high: np.ndarray
    target: np.ndarray
    mask: np.ndarray


FLIPS = ((), (0,), (1,), (0, 1))
"""The four flips, as axes reversed: none, vertical, horizontal, both (GBDF draws one of
the four with equal chance)."""


def random_flip(sample: Sample, rng: np.random.Generator) -> Sample:
    """`sample` with one of `FLIPS`, drawn uniformly, applied to every map.

    Depth has no preferred left and right, and N_r sees no image, so flipped scenes are as
    real as the originals; flipping vertically puts floors above, which GBDF accepts to
    make N_r's fusion independent of where in the frame an edge lies.
    """
    return flip(sample, FLIPS[rng.integers(len(FLIPS))])


def flip(sample: Sample, axes: tuple[int, ...]) -> Sample:
    """`sample` with `axes` (one of `FLIPS`) reversed in every map."""
    if not axes:
        return sample
    return Sample(*(np.ascontiguousarray(np.flip(getattr(sample, field.name), axes))
                    for field in dataclasses.fields(Sample)))


def random_sign_inversion(sample: Sample, rng: np.random.Generator,
                          p: float = 1 / 3) -> Sample:
    """With probability `p` (GBDF's 1/3), `sample` with low, high and target negated.

    Negating a map swaps its polarity: after N_r's min-max normalisation −D becomes 1 − D, so
    an inverse-depth (MiDaS-like) input reads as depth (LeReS-like) and N_r learns to refine
    both. The target is negated with the inputs, because N_r's output keeps its inputs'
    polarity (method.md §1) and L_gt (`training.losses.gt_loss`, median and mean-deviation
    normalisation) is invariant to positive scale and shift only: against an un-negated
    target it would ask N_r to undo the inversion, which it cannot tell from the inputs. The
    mask is unchanged. This is our reading: GBDF's code was not available here to check
    whether it negates the target too.
    """
    if not 0 <= p <= 1:
        raise ValueError(f"p must be a probability in [0, 1], got {p}")
    if rng.random() >= p:
        return sample
    return dataclasses.replace(sample, low=-sample.low, high=-sample.high, target=-sample.target)


def random_clean_copies(sample: Sample, rng: np.random.Generator, p: float = 0.0) -> Sample:
    """With probability `p`, `sample` with both predictions replaced by its exact target.

    Every simulated pair disagrees somewhere, so without such samples N_r never sees inputs
    that need no correction and leaves an error floor on them (`python -m training judge`'s
    no-harm check, issue 10): the target of a clean copy is its input. Only a sample valid
    everywhere becomes one (the target holds no depth where it is invalid); the others are
    returned unchanged. In phase 2 its pseudo-label G_S stays the one made from the scene's
    simulated predictions.
    """
    if not 0 <= p <= 1:
        raise ValueError(f"p must be a probability in [0, 1], got {p}")
    if p == 0 or rng.random() >= p or not sample.mask.all():
        return sample
    return dataclasses.replace(sample, low=sample.target.copy(), high=sample.target.copy())
