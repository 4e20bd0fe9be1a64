"""Held-out validation of finished weights: the training log's validation, for any file.

    PYTHONPATH=. python benchmarks/held_out.py WEIGHTS [WEIGHTS ...]
        [--config training/configs/default.yaml] [--cache runs/held-out]

Scores the config's held-out procedural scenes (`validation.scenes` of them from
`validation.seed`; never trained on), with the inputs the config's data settings make, for the
low and high inputs and each WEIGHTS (a weights file such as an fp16 export, "default", or a
training checkpoint: its model weights). The model card's held-out table is this, over the
exported files, so a run trained on other degradations (e.g. `high_scale_drift`) is judged on
the same inputs as the shipped weights. The scenes' entries are cached under `--cache`.
"""

from __future__ import annotations

import argparse

from sddr_core.evaluation.runner import COLUMNS as LABELS
from training.checkpoint import load_trained
from training.config import load_config
from training.data.cache import build_cache, cache_folder, procedural_sources
from training.validation import Validation

COLUMNS = ("rel", "delta1", "ord", "d3r")
"""The model card's held-out columns, in its order."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("weights", nargs="+")
    parser.add_argument("--config", default="training/configs/default.yaml")
    parser.add_argument("--cache", default="runs/held-out")
    args = parser.parse_args()
    config = load_config(args.config)
    sources = procedural_sources(config.validation.seed, config.validation.scenes)
    entries, skipped = build_cache(cache_folder(args.cache, config.data), sources, config.data,
                                   config.data.workers)
    if skipped:
        raise SystemExit(f"held-out scenes could not be made: {skipped}")
    validation = Validation(entries)
    rows = {"low input": validation.inputs["low"], "high input": validation.inputs["high"]}
    for weights in args.weights:
        rows[weights] = validation(load_trained(weights))
    print(f"{len(entries)} held-out scenes (seeds {config.validation.seed}–"
          f"{config.validation.seed + len(entries) - 1}), {args.config}'s data settings\n")
    print("| | " + " | ".join(LABELS[key] for key in COLUMNS) + " |\n|---|"
          + "---:|" * len(COLUMNS))
    for name, scores in rows.items():
        print(f"| {name} | " + " | ".join(f"{scores[key]:.4f}" for key in COLUMNS) + " |")


if __name__ == "__main__":
    main()
