"""The sample scene: a procedural room with its photo and exact depth.

Run through `SimulatedPredictor` it stands in for a photo run through a depth estimator, so
`sddr demo`, the benchmarks and the simulator's own checks need no download. It is a room of
`sddr_core.scenes`, the generator training uses, from seeds of its own (`FIRST_SEED` on), so
nothing scored on it was trained on.
"""

from __future__ import annotations

import numpy as np

from ..scenes import photograph, render_scene

FIRST_SEED = 4_000_004
"""Sample seed 0's room seed, in a range nothing else uses (docs/training.md lists them). Rooms
4,000,000–003 were looked at first and passed over for the demo: 000 is mostly bare floor."""


def sample_scene(height: int = 512, width: int = 768, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8 H×W×3, depth float32 H×W in metres) of sample room `seed`: walls seen at a
    slant, boxes, thin rods and wires, foliage, relief (`sddr_core.scenes.render_scene`)."""
    scene = render_scene(FIRST_SEED + seed, height, width)
    return photograph(scene, FIRST_SEED + seed), scene.depth
