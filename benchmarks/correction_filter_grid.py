"""The correction filter's settings on procedural selection scenes (decision 134).

    PYTHONPATH=. python benchmarks/correction_filter_grid.py WEIGHTS [--first-seed 2000000]
        [--scenes 16] [--cache runs/select-cache]

Scores WEIGHTS (a weights file, "default", or a training checkpoint: its model weights) one-stage
with N_r's correction filter off and at each radius × ε of the grid, on procedural scenes that
neither training (seeds from 0) nor validation and the no-harm checks (from 1,000,000) use,
with `default.yaml`'s data settings, scored as the training log's validation scores them.
Prints mean REL, ORD and D³R per setting and marks the one decision 134's rule picks: the
lowest D³R among settings whose ORD and REL stay within 0.001 of the unfiltered output's. The
filter runs inside N_r, as a file exported with `--correction-filter` runs it.
"""

from __future__ import annotations

import argparse
import itertools

import torch

from training.checkpoint import load_trained
from training.config import load_config
from training.data.cache import build_cache, cache_folder, procedural_sources
from training.export import with_correction_filter
from training.validation import Validation

RADII = (2, 4, 8, 16)
EPSILONS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
SLACK = 0.001
"""How much worse than unfiltered ORD and REL may be for a setting to be picked."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("weights")
    parser.add_argument("--first-seed", type=int, default=2_000_000)
    parser.add_argument("--scenes", type=int, default=16)
    parser.add_argument("--cache", default="runs/select-cache")
    args = parser.parse_args()
    config = load_config("training/configs/default.yaml")
    entries, skipped = build_cache(cache_folder(args.cache, config.data),
                                   procedural_sources(args.first_seed, args.scenes), config.data,
                                   config.data.workers)
    if skipped:
        raise SystemExit(f"selection scenes could not be made: {skipped}")
    network = load_trained(args.weights)
    settings = [(0, network.config.correction_filter_eps),
                *itertools.product(RADII, EPSILONS)]
    validation = Validation(entries)
    scores = {}
    for radius, eps in settings:
        means = validation(with_correction_filter(network, radius, eps))
        scores[radius, eps] = [means[key] for key in ("rel", "ord", "d3r")]
    rel0, ord0, _ = scores[settings[0]]
    allowed = [s for s in settings[1:]
               if scores[s][0] <= rel0 + SLACK and scores[s][1] <= ord0 + SLACK]
    picked = min(allowed, key=lambda s: scores[s][2], default=None)
    print(f"{len(entries)} selection scenes (seeds {args.first_seed}–"
          f"{args.first_seed + len(entries) - 1}), {args.weights}\n")
    print("| radius | ε | REL ↓ | ORD ↓ | D³R ↓ | |\n|---:|---:|---:|---:|---:|---|")
    for setting in settings:
        radius, eps = setting
        rel, ord_, d3r = scores[setting]
        label = "off" if radius == 0 else f"{eps:g}"
        mark = "picked" if setting == picked else "" if setting in allowed or not radius else \
            "ORD or REL beyond the slack"
        print(f"| {radius} | {label} | {rel:.4f} | {ord_:.4f} | {d3r:.4f} | {mark} |")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
