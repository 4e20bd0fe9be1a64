"""The mesh settings a depth file's sidecar gives (`depth_meaning`), in numpy only, so it is
tested outside Blender: kind, Near/Far (or Depth Scale) and field of view, each only when the
sidecar says it; what it does not say stays as set, and the sidebar calls it assumed."""

from __future__ import annotations

import math

import numpy as np

from .depth_meaning import DepthMeaning
from .robust_range import robust_range

KINDS = {"disparity": "DISPARITY", "depth": "RELATIVE_DEPTH"}
"""The add-on's depth kind for a relative map of each sidecar kind (metric depth: DEPTH)."""


def settings_from_meaning(meaning: DepthMeaning, values: np.ndarray) -> dict[str, object]:
    """Scene settings (`scene.sddr` names) from `meaning` and the map's `values` (H×W, already
    through `meaning.values`).

    A relative map with distances gets Near and Far at the two ends of its robust range (the
    rule `geometry.relative` normalises with), so the mesh puts each value at the distance the
    sidecar gives it; ends whose distance is not positive and finite (values far outside 0..1)
    give no Near/Far.
    """
    settings: dict[str, object] = {}
    if meaning.fov_degrees is not None:
        settings.update(camera_model="FOV", fov=meaning.fov_degrees)
    if meaning.kind is None:
        return settings
    if meaning.units == "metres":
        return {**settings, "depth_kind": "DEPTH", "depth_scale": 1.0}
    settings["depth_kind"] = KINDS[meaning.kind]
    if meaning.distances is None:
        return settings
    at_0, at_1 = meaning.distances
    ends = robust_range(values)
    if meaning.kind == "disparity":
        inverse = [1 / at_0 + v * (1 / at_1 - 1 / at_0) for v in ends]
        if min(inverse) <= 0:
            return settings
        ends = [1 / i for i in inverse]
    else:
        ends = [at_0 + v * (at_1 - at_0) for v in ends]
    near, far = sorted(ends)
    if 0 < near < far < math.inf:
        settings.update(near=near, far=far)
    return settings
