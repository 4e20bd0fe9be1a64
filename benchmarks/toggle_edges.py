"""What a fixed toggle does to edges (decision 320): each pixel whose (2r + 1)² window spans
more than `min_step` of the map's 1–99 % range takes the nearer of the window's maximum and
minimum. Scored on the validation scenes for the high input and for WEIGHTS' one-stage output.

    PYTHONPATH=. python benchmarks/toggle_edges.py WEIGHTS [--cache runs/held-out]

It showed how much boundary F1 a ramp loses (the step head's reason) and why the move has to
be learnt: wider windows terrace slopes and D³R collapses.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from sddr_core.evaluation.baselines import resize_prediction
from sddr_core.inference.refiner import Refiner
from sddr_core.maps.window_extremes import window_extremes
from training.checkpoint import load_trained
from training.config import load_config
from training.data.cache import build_cache, cache_folder, procedural_sources
from training.validation import Validation

KEYS = ("rel", "ord", "d3r", "boundary_f1", "flying")


def toggle(depth: np.ndarray, radius: int, min_step: float) -> np.ndarray:
    depth = depth.astype(np.float32)
    top, bottom = (m[0, 0].numpy() for m in window_extremes(torch.from_numpy(depth)[None, None],
                                                              radius))
    low, high = np.percentile(depth, [1, 99])
    nearer = np.where(top - depth < depth - bottom, top, bottom)
    return np.where(top - bottom > min_step * (high - low), nearer, depth)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("weights", help="a weights file, 'default' or a training checkpoint")
    parser.add_argument("--cache", default="runs/held-out")
    args = parser.parse_args()
    config = load_config("training/configs/default.yaml")
    sources = procedural_sources(config.validation.seed, config.validation.scenes)
    entries, _ = build_cache(cache_folder(args.cache, config.data), sources, config.data)
    validation = Validation(entries)
    refiner = Refiner(load_trained(args.weights), device="cpu", dtype="fp32")
    outputs = {}

    def refined(entry):  # each scene refined once, for every toggle
        if id(entry) not in outputs:
            outputs[id(entry)] = refiner.refine(entry.low, entry.high, out_size=entry.depth.shape)
        return outputs[id(entry)]

    def high(entry):
        return resize_prediction(entry.high, entry.depth.shape)

    print("| map | window | min step | " + " | ".join(KEYS) + " |")
    print("|---|---|---|" + "---:|" * len(KEYS))
    for name, source in (("high input", high), ("refined", refined)):
        rows = [("—", "—", validation.score(source))]
        rows += [(f"{2 * r + 1}²", f"{step:g}", validation.score(
            lambda e, r=r, step=step, source=source: toggle(source(e), r, step)))
            for r in (2, 4, 8) for step in (0.02, 0.05)]
        for window, step, scores in rows:
            print(f"| {name} | {window} | {step} | "
                  + " | ".join(f"{scores[k]:.4f}" for k in KEYS) + " |", flush=True)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
