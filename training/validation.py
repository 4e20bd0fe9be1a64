"""Validation on held-out procedural scenes: the paper's metrics for low, high and the model.

The scenes (seeds from `validation.seed`, never trained on) and their predictions come from the
same cache as the training data, so the low and high inputs are scored once and the model
(one-stage, the whole scene at once, fp32) at every validation pass. Metrics are
`sddr_core.evaluation.metrics.evaluate`'s (REL, δ1, ORD, D³R …) against the ground-truth depth,
averaged over the scenes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from sddr_core.evaluation.baselines import resize_prediction
from sddr_core.evaluation.metrics import evaluate
from sddr_core.inference.refiner import Refiner
from sddr_core.network import RefinementNetwork
from training.data.cache import Entry, read_entry


class Validation:
    """Scores a network on fixed held-out entries."""

    def __init__(self, entries: Sequence[Path]) -> None:
        self.entries: list[Entry] = [read_entry(path) for path in entries]
        self.inputs = {"low": self.score(lambda e: resize_prediction(e.low, e.depth.shape)),
                       "high": self.score(lambda e: resize_prediction(e.high, e.depth.shape))}
        """The inputs' scores (on the scene's grid), which no training changes."""

    def __call__(self, network: RefinementNetwork) -> dict[str, float]:
        """Mean metrics of `network`'s one-stage output (the network is left as it was)."""
        refiner = Refiner(network, device=next(network.parameters()).device, dtype="fp32")
        return self.score(lambda e: refiner.refine(e.low, e.high, out_size=e.depth.shape))

    def score(self, output: Callable[[Entry], np.ndarray]) -> dict[str, float]:
        """Mean metrics of `output(entry)` (a prediction on the entry's grid) over the entries."""
        scores = [evaluate(output(entry), entry.depth, entry.valid, space="disparity")
                  for entry in self.entries]
        return {key: float(np.nanmean([s[key] for s in scores])) for key in scores[0]}

