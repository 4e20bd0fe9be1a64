"""A photo for a procedural room, which renders depth only.

Each primitive gets its own random colour, times a fractal texture, plus 1 % noise: depth
edges between primitives are colour edges, depth edges within one primitive (a box's silhouette
against its own side) are not, and the texture makes colour edges with no depth step, as
photos do. Enough for a simulated predictor's input, the demo's picture and edge snapping's
colour guide; not a rendering of light.
"""

from __future__ import annotations

import numpy as np

from .rooms import Scene, fractal_noise


def photograph(scene: Scene, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB of `scene`, the same for the same `seed`.

    Examples
    --------
    >>> from sddr_core.scenes import render_scene
    >>> photograph(render_scene(7, 48, 64), 7).shape
    (48, 64, 3)
    """
    rng = np.random.default_rng(seed)
    palette = rng.uniform(0.15, 0.95, (len(scene.kinds), 3))
    texture = 0.75 + 0.25 * fractal_noise(rng, scene.depth.shape)[..., None]
    colour = palette[scene.labels] * texture + rng.normal(0, 0.01, (*scene.depth.shape, 3))
    return (np.clip(colour, 0, 1) * 255).astype(np.uint8)
