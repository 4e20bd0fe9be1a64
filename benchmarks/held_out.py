"""Held-out validation of finished weights: the training log's validation, for any file.

    PYTHONPATH=. python benchmarks/held_out.py WEIGHTS [WEIGHTS ...]
        [--config training/configs/default.yaml] [--cache runs/held-out] [--one-stage-only]
        [--scenes N]

Scores the config's held-out procedural scenes (`validation.scenes` of them from
`validation.seed`, or the first N; never trained on), with the inputs the config's data
settings make, for the low and high inputs, their guided-filter fusion (`guided`, as in
`sddr eval`) and each WEIGHTS (a weights file such as an fp16 export, "default", or a training
checkpoint: its model weights), one-stage and, unless `--one-stage-only`, two-stage (the
windows predicted by each scene's own simulator, started from the same low/high, as
`sddr eval`'s `sddr-two-stage`; minutes per scene on a CPU). The model card's held-out table
is this, over the exported files, so a run trained on other degradations (e.g.
`high_scale_drift`) is judged on the same inputs as the shipped weights. The scenes' entries
are cached under `--cache`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from sddr_core.evaluation.baselines import guided_fusion
from sddr_core.evaluation.runner import COLUMNS as LABELS
from sddr_core.inference.pipeline import DepthPipeline
from sddr_core.inference.refiner import Refiner
from sddr_core.network import RefinementNetwork
from training.checkpoint import load_trained
from training.config import load_config
from training.data.cache import Entry, build_cache, cache_folder, procedural_sources
from training.validation import Validation

COLUMNS = ("rel", "delta1", "ord", "d3r", "boundary_f1", "flying")
"""The model card's held-out columns, in its order."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("weights", nargs="+")
    parser.add_argument("--config", default="training/configs/default.yaml")
    parser.add_argument("--cache", default="runs/held-out")
    parser.add_argument("--one-stage-only", action="store_true",
                        help="leave out the two-stage rows (minutes per scene on a CPU)")
    parser.add_argument("--scenes", type=int, help="score only the first N held-out scenes")
    args = parser.parse_args()
    config = load_config(args.config)
    count = config.validation.scenes if args.scenes is None else args.scenes
    if not 1 <= count <= config.validation.scenes:
        raise SystemExit(f"--scenes {count}: choose 1 to {config.validation.scenes}")
    sources = procedural_sources(config.validation.seed, count)
    entries, skipped = build_cache(cache_folder(args.cache, config.data), sources, config.data,
                                   config.data.workers)
    if skipped:
        raise SystemExit(f"held-out scenes could not be made: {skipped}")
    validation = Validation(entries)
    rows = {"low input": validation.inputs["low"], "high input": validation.inputs["high"],
            "guided": validation.score(lambda e: guided_fusion(e.low, e.high, e.depth.shape))}
    for weights in args.weights:
        network = load_trained(weights)
        rows[weights] = validation(network)
        if not args.one_stage_only:
            rows[f"{weights}, two-stage"] = validation.score(two_stage(network))
    print(f"{len(entries)} held-out scenes (seeds {config.validation.seed}–"
          f"{config.validation.seed + len(entries) - 1}), {args.config}'s data settings\n")
    print("| | " + " | ".join(LABELS[key] for key in COLUMNS) + " |\n|---|"
          + "---:|" * len(COLUMNS))
    for name, scores in rows.items():
        print(f"| {name} | " + " | ".join(f"{scores[key]:.4f}" for key in COLUMNS) + " |")


def two_stage(network: RefinementNetwork) -> Callable[[Entry], np.ndarray]:
    """An entry → its two-stage refinement from its cached low/high, the windows predicted by
    the entry's own simulator (as training's edge labels are made)."""
    refiner = Refiner(network, device=next(network.parameters()).device, dtype="fp32")

    def output(entry: Entry) -> np.ndarray:
        pipeline = DepthPipeline(refiner, entry.draw.predictor(entry.depth, entry.valid))
        image = np.zeros((*entry.depth.shape, 3), np.uint8)  # the simulator reads its size only
        return pipeline(image, mode="two-stage", inputs=(entry.low, entry.high))

    return output


if __name__ == "__main__":
    main()
