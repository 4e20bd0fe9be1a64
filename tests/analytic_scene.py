"""The analytic scene the simulator's calibrated tests were measured on.

`sddr demo`'s sample scene until decision 191, drawn in image space (spheres, boxes, five
poles). The simulator's property tests and `GRADIENT_PRIOR`'s measurement (docs/predictors.md)
were made on it, so they keep it; the product's one procedural generator is
`sddr_core.scenes`.
"""

from __future__ import annotations

import numpy as np


def sample_scene(height: int = 512, width: int = 768, seed: int = 0):
    """(rgb uint8 H×W×3, depth float32 H×W in metres) of a room with objects and thin poles."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    v, u = ys / height, xs / width
    depth = 8.0 - 5.0 * v  # floor and back wall: nearer towards the bottom
    color = np.stack([0.55 + 0.2 * v, 0.5 + 0.1 * u, 0.45 + 0 * u], axis=-1)
    objects = []
    for _ in range(6):  # spheres
        cx, cy, r = rng.uniform(0.1, 0.9), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.14)
        objects.append(("sphere", cx, cy, r, rng.uniform(2.0, 6.0), rng.uniform(0.2, 1.0, 3)))
    for _ in range(4):  # boxes
        cx, cy = rng.uniform(0.1, 0.9), rng.uniform(0.3, 0.9)
        objects.append(("box", cx, cy, rng.uniform(0.05, 0.15), rng.uniform(1.5, 5.0),
                        rng.uniform(0.2, 1.0, 3)))
    for i in range(5):  # thin poles: the detail a low-res prediction loses
        objects.append(("pole", 0.08 + 0.2 * i, 0.0, 0.004 + 0.002 * i, 2.5 + 0.6 * i,
                        np.array([0.9, 0.9, 0.85])))
    for kind, cx, cy, r, z, rgb in sorted(objects, key=lambda o: -o[4]):
        dx, dy = (u - cx) * width / height, v - cy
        if kind == "sphere":
            inside = dx**2 + dy**2 < r**2
            surface = z - np.sqrt(np.clip(r**2 - dx**2 - dy**2, 0, None)) * 3
        elif kind == "box":
            inside = (np.abs(dx) < r) & (np.abs(dy) < r * 0.8)
            surface = z + 0.5 * dx
        else:
            inside = np.abs(u - cx) < r
            surface = np.full_like(depth, z)
        closer = inside & (surface < depth)
        depth = np.where(closer, surface, depth)
        shade = np.clip(1.0 - 0.08 * surface, 0.3, 1.0)[..., None] * rgb
        color = np.where(closer[..., None], shade, color)
    rgb = (np.clip(color, 0, 1) * 255).astype(np.uint8)
    return rgb, depth.astype(np.float32)
