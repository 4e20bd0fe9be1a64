"""Procedural scenes with exact depth: the one generator behind `sddr demo`, the benchmarks and
training (issue 25, point 7).

`render_scene(seed, height, width)` renders a seeded room (`rooms`) by ray casting
(`raycast`, over `primitives`); `photograph(scene, seed)` gives it a photo, since the room
renders depth only. Seed ranges each use keeps to itself are listed in docs/training.md.
"""

from .photo import photograph
from .rooms import Scene, render_scene

__all__ = ["Scene", "photograph", "render_scene"]
