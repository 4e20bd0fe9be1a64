"""Which crop of which scene each training sample is: a pure function of the sample's number.

Sample g (counted from 0 over the whole run; step s holds g = s·B … s·B + B − 1 for a global
batch B) takes its scene, crop, flip and sign from generators seeded by (seed, g) alone. So
the data order needs no state to checkpoint (a resumed run at step s reads exactly what an
uninterrupted one would), any number of loader workers give the same batches, and the shard of
rank r of W processes, g = s·B + r·B/W …, is the same samples one process would see: the
property DDP's equivalence rests on.

Phase 1 walks the scenes in a fresh permutation per epoch. Phase 2 trains between two label
refreshes on the pool of scenes that refresh labelled (`label_pool`), since G_S exists only
for those.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from training.config import TrainConfig
from training.data.augment import (
    FLIPS,
    Sample,
    flip,
    random_clean_copies,
    random_sign_inversion,
)
from training.data.cache import entry_shape, read_crop

_ORDER, _POOL, _CROP, _POOL_ORDER = 1, 2, 3, 4
"""Stream tags, so the generators of epoch order, pools, crops and pool order never share a
seed."""


@dataclass(frozen=True)
class Plan:
    """Where sample g comes from."""

    scene: int
    """Index into the run's scene list."""
    top: int
    left: int
    flip: tuple[int, ...]
    """Axes reversed (one of `augment.FLIPS`), applied to the labels too."""


class Schedule:
    """The run's sample plan: phases, label pools and crops, from the config alone."""

    def __init__(self, config: TrainConfig, shapes: list[tuple[int, int]]) -> None:
        self.config = config
        self.shapes = shapes
        self.batch = config.data.batch_size
        self.phase1 = config.schedule.phase1_steps
        self.total = self.phase1 + config.schedule.phase2_steps

    def phase(self, step: int) -> int:
        return 1 if step < self.phase1 else 2

    def refresh_index(self, step: int) -> int | None:
        """Which label pool phase-2 `step` trains on (None in phase 1)."""
        if step < self.phase1:
            return None
        return (step - self.phase1) // self.config.schedule.label_refresh

    def label_pool(self, refresh: int) -> list[int]:
        """Scenes labelled at `refresh`: a fresh random subset each time, so phase 2 still
        visits every scene over the run."""
        count = min(self.config.schedule.label_scenes, len(self.shapes))
        rng = np.random.default_rng([self.config.seed, _POOL, refresh])
        return sorted(rng.permutation(len(self.shapes))[:count].tolist())

    def plan(self, g: int) -> Plan:
        step, scenes = g // self.batch, len(self.shapes)
        refresh = self.refresh_index(step)
        if refresh is None:
            epoch, position = divmod(g, scenes)
            scene = int(np.random.default_rng([self.config.seed, _ORDER, epoch])
                        .permutation(scenes)[position])
        else:
            pool = self.label_pool(refresh)
            first = (self.phase1 + refresh * self.config.schedule.label_refresh) * self.batch
            cycle, position = divmod(g - first, len(pool))
            order = np.random.default_rng([self.config.seed, _POOL_ORDER, refresh, cycle])
            scene = pool[int(order.permutation(len(pool))[position])]
        rng = np.random.default_rng([self.config.seed, _CROP, g])
        height, width = self.shapes[scene]
        crop = self.config.data.crop
        top, left = int(rng.integers(height - crop + 1)), int(rng.integers(width - crop + 1))
        flip = FLIPS[int(rng.integers(len(FLIPS)))] if self.config.data.flips else ()
        return Plan(scene, top, left, flip)


class CropDataset(Dataset):
    """Sample g as tensors: `low`, `high`, `target` (in the inputs' polarity: 1/depth, or depth
    for a depth-polarity predictor; 0 where invalid), `mask` (each
    1 × crop × crop), the sign applied, and the plan's scene, top, left and flip code for the
    caller's label crop."""

    def __init__(self, entries: list[Path], schedule: Schedule) -> None:
        self.entries = entries
        self.schedule = schedule

    @staticmethod
    def shapes(entries: list[Path]) -> list[tuple[int, int]]:
        return [entry_shape(path) for path in entries]

    def __len__(self) -> int:
        return self.schedule.total * self.schedule.batch

    def __getitem__(self, g: int) -> dict[str, torch.Tensor | int]:
        plan = self.schedule.plan(g)
        crop, polarity = read_crop(self.entries[plan.scene], plan.top, plan.left,
                                   self.schedule.config.data.crop)
        valid = crop["valid"] & (crop["depth"] > 0)
        depth = np.where(valid, crop["depth"], 1.0)
        target = np.where(valid, depth if polarity == "depth" else 1.0 / depth, 0.0)
        sample = Sample(crop["low"], crop["high"], target.astype(np.float32), valid)
        sample = flip(sample, plan.flip)
        data, seed = self.schedule.config.data, self.schedule.config.seed
        sample = random_clean_copies(sample, np.random.default_rng([seed, _CROP, g, 2]),
                                     data.clean_copies)
        rng = np.random.default_rng([seed, _CROP, g, 1])
        inverted = random_sign_inversion(sample, rng, data.inversion)
        return {
            "low": torch.from_numpy(inverted.low)[None],
            "high": torch.from_numpy(inverted.high)[None],
            "target": torch.from_numpy(inverted.target)[None],
            "mask": torch.from_numpy(inverted.mask)[None],
            "scene": plan.scene, "top": plan.top, "left": plan.left,
            "flip": FLIPS.index(plan.flip),
        }

