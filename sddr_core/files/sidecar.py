"""Writing a depth file together with its meaning (`depth_meaning`: kind, units, what the stored
numbers stood for, distances and field of view when known), both atomically."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from .atomic import atomic_output
from .depth_io import check_output, stored_range, write_depth
from .depth_meaning import DepthMeaning, SidecarError, sidecar_path

PREDICTED_UNITS = {"disparity": "relative", "depth": "metres"}
"""Units of a predictor's output by its polarity: sddr's disparity predictors (Depth Anything,
DPT) are relative; its one depth predictor, ZoeDepth, is metric."""


def write_depth_with_meaning(path: str | os.PathLike, depth: np.ndarray,
                             format: str | None = None, *, kind: str | None,
                             units: str | None,
                             distances: tuple[float, float] | None = None,
                             fov_degrees: float | None = None,
                             written_by: str) -> tuple[Path, Path]:
    """Write `depth` as `write_depth` does, then its sidecar (`refined.png.sddr.json`) saying
    what the values mean; returns both paths.

    `kind` ("disparity", "depth" or None), `units` ("relative", "metres" or None), `distances`
    (metres at value 0 and 1 of a relative map) and `fov_degrees` describe `depth`'s values;
    the sidecar adds how the file stores them (a normalised PNG's code range). A sidecar left
    by an earlier run is removed before the depth file is replaced, so a failure in between
    leaves a file without a sidecar (whose meaning readers then assume), never one with a
    wrong sidecar.

    Raises InputError for what `write_depth` refuses, a description that contradicts itself
    (metres for disparity), or a sidecar that cannot be written or removed.
    """
    p = Path(path)
    fmt = check_output(p, format)
    try:
        meaning = DepthMeaning(kind, units, None, distances, fov_degrees, written_by)
    except SidecarError as err:
        raise InputError(f"cannot describe depth map '{p}': {err}") from None
    side = sidecar_path(p)
    try:
        if os.path.lexists(side):  # unlink(missing_ok) still fails on a read-only file system
            side.unlink()
    except OSError as err:
        raise InputError(f"cannot replace depth sidecar '{side}': {err.strerror or err}") from None
    written = write_depth(p, depth, fmt)
    return written, write_sidecar(p, dataclasses.replace(meaning,
                                                         stored=stored_range(depth, fmt)))


def write_sidecar(path: str | os.PathLike, meaning: DepthMeaning) -> Path:
    """Write `meaning` atomically as the sidecar of the depth file `path`; its path."""
    side = sidecar_path(Path(path))
    with atomic_output(side) as tmp:
        tmp.write_text(meaning.to_json(), encoding="utf-8")
    return side
