"""The paper's Table 4 on our benchmark: phase 2 varied from one shared phase-1 checkpoint.

Rows (a) vary S, the coarse-to-fine steps of the pseudo-labels, with all three losses; rows
(b) vary the losses at S = 3 ("all three" is row S = 3). Every row continues the same phase-1
weights (`--init`, optimizer fresh) for the config's `phase2_steps`, so the rows differ in
phase 2 alone and share its budget. Each row's final weights (EMA when kept, as `export` takes
them) are then scored one-stage on an evaluation dataset for every simulator seed, beside the
phase-1 weights themselves; the table is mean ± sample std over the seeds.

Rows already trained are not trained again (each is resumed, so a killed ablation continues
where it stopped). The rows share one scene cache: the config's `data.cache` (point it at
the phase-1 run's `RUN/cache` to reuse that), else `out/cache`. The evaluation dataset only
reports: nothing here picks a setting from it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
from collections.abc import Sequence
from pathlib import Path

from sddr_core.evaluation.datasets import Dataset
from sddr_core.evaluation.runner import COLUMNS, evaluate_dataset
from sddr_core.files.atomic import atomic_output
from sddr_core.inference.refiner import Refiner
from training.checkpoint import holds_ema, load_trained, load_weights
from training.config import TrainConfig, override
from training.loop import train

_ALL = ["schedule.label_steps=3"]
ROWS: dict[str, list[str]] = {
    "S=0": ["schedule.label_steps=0"],
    "S=1": ["schedule.label_steps=1"],
    "S=2": ["schedule.label_steps=2"],
    "S=3": _ALL,
    "L_gt": [*_ALL, "losses.weights.grad=0", "losses.weights.fusion=0"],
    "L_gt+L_grad": [*_ALL, "losses.weights.fusion=0"],
    "L_gt+L_fusion": [*_ALL, "losses.weights.grad=0"],
}
"""Row name → the overrides of the base config it trains with (besides no phase 1). Row
"S=3" is also (b)'s "all three losses"."""
PHASE1 = "phase 1"
SEEDS = (0, 1, 2)
METRICS = ("delta1", "rel", "ord", "d3r")


def run_ablation(config: TrainConfig, phase1: str | os.PathLike, out: str | os.PathLike,
                 dataset: Dataset, rows: Sequence[str] = tuple(ROWS),
                 seeds: Sequence[int] = SEEDS) -> dict:
    """Train the `rows` (names in ROWS) from the `phase1` checkpoint or weights into `out/`,
    score them and the phase-1 weights on `dataset` for each seed, and write
    `out/ablation.json` and `out/ablation.md`. Returns the JSON report."""
    out = Path(out)
    unknown = [row for row in rows if row not in ROWS]
    if unknown:
        raise ValueError(f"unknown ablation rows {unknown}; known: {list(ROWS)}")
    networks = {PHASE1: load_trained(phase1)}
    if config.data.cache is None:  # one scene cache for every row, not one in each row's run
        config = dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                      cache=str(out / "cache")))
    for row in rows:
        folder = out / row
        row_config = override(config, ["schedule.phase1_steps=0", *ROWS[row]])
        checkpoint = train(row_config, folder, resume=True, init=phase1)
        networks[row] = load_weights(checkpoint, "ema" if holds_ema(checkpoint) else "model")
    scores = {name: _scores(network, dataset, seeds) for name, network in networks.items()}
    report = {"phase1": str(phase1), "phase2_steps": config.schedule.phase2_steps,
              "seeds": list(seeds), "dataset": dataset.kind, "images": len(dataset),
              "rows": {name: {"overrides": ROWS.get(name, []), **score}
                       for name, score in scores.items()}}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(out / "ablation.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    with atomic_output(out / "ablation.md") as tmp:
        tmp.write_text(markdown(report))
    return report


def _scores(network, dataset: Dataset, seeds: Sequence[int]) -> dict[str, dict[str, float]]:
    """Mean and sample std over seeds of each metric of one-stage refinement."""
    refiner = Refiner(network, device="cpu", dtype="fp32")
    per_seed = [evaluate_dataset(dataset, ("sddr",), refiner=refiner, seed=seed)["mean"]["sddr"]
                for seed in seeds]
    return {key: {"mean": statistics.fmean(s[key] for s in per_seed),
                  "std": statistics.stdev(s[key] for s in per_seed) if len(per_seed) > 1
                  else 0.0}
            for key in METRICS}


def markdown(report: dict) -> str:
    """The report as a table, one row per ablation row, mean ± std over the seeds."""
    header = "| row | " + " | ".join(COLUMNS[key] for key in METRICS) + " |"
    lines = [f"Phase 2 for {report['phase2_steps']} steps from `{report['phase1']}`; "
             f"{report['dataset']} ({report['images']} images), simulator seeds "
             f"{', '.join(map(str, report['seeds']))}; one-stage. Every row starts from the "
             "phase-1 weights; S=3 has all three losses.", "", header,
             "|---" * (len(METRICS) + 1) + "|"]
    for name, row in report["rows"].items():
        cells = [f"{row[key]['mean']:.4f} ± {row[key]['std']:.4f}" for key in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
