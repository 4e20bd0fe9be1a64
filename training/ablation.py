"""The paper's Table 4 on our benchmark: phase 2 varied, each row trained with several seeds.

For every training seed the ablation trains its own phase 1 (the config's `phase1_steps`, the
row "no phase 2"), then every row continues those weights (optimizer fresh) for the config's
`phase2_steps` with that seed, so within a seed the rows differ in phase 2 alone and share its
budget. Rows (a) vary S, the coarse-to-fine steps of the pseudo-labels, with all three losses;
rows (b) vary the losses at S = 3 ("all three" is row S = 3); row "labels=GT" trains with
labels from the ground truth's own gradients, the upper bound of what G_S could give.

Each network (EMA when kept, as `export` takes it) is scored one-stage on an evaluation
dataset for every simulator seed as soon as it is trained; the table is the mean ± sample std
over training seeds of each seed's mean over the simulator seeds, so the spread is what
retraining a row moves it by. Runs and scores already made are reused (a killed ablation
continues where it stopped). The runs share one scene cache: the config's `data.cache`, else
`out/cache`. The evaluation dataset only reports: nothing here picks a setting from it.
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
from training.checkpoint import holds_ema, load_weights
from training.config import TrainConfig, override
from training.loop import train

NO_PHASE2 = "no phase 2"
_ALL = ["schedule.label_steps=3"]
ROWS: dict[str, list[str]] = {
    "S=0": ["schedule.label_steps=0"],
    "S=1": ["schedule.label_steps=1"],
    "S=2": ["schedule.label_steps=2"],
    "S=3": _ALL,
    "L_gt": [*_ALL, "losses.weights.grad=0", "losses.weights.fusion=0"],
    "L_gt+L_grad": [*_ALL, "losses.weights.fusion=0"],
    "L_gt+L_fusion": [*_ALL, "losses.weights.grad=0"],
    "labels=GT": [*_ALL, "schedule.labels=ground_truth"],
}
"""Row name → the overrides of the base config its phase 2 trains with. Row "S=3" is also
(b)'s "all three losses"."""
TRAIN_SEEDS = (0, 1)
EVAL_SEEDS = (0, 1, 2)
METRICS = ("delta1", "rel", "ord", "d3r", "boundary_f1", "flying")


def run_ablation(config: TrainConfig, out: str | os.PathLike, dataset: Dataset,
                 rows: Sequence[str] = tuple(ROWS), train_seeds: Sequence[int] = TRAIN_SEEDS,
                 eval_seeds: Sequence[int] = EVAL_SEEDS) -> dict:
    """Train phase 1 and the `rows` (names in ROWS) for each of `train_seeds` into
    `out/seed-<seed>/`, score each on `dataset` for every one of `eval_seeds`, and write
    `out/ablation.json` and `out/ablation.md`. Returns the JSON report."""
    out = Path(out)
    unknown = [row for row in rows if row not in ROWS]
    if unknown:
        raise ValueError(f"unknown ablation rows {unknown}; known: {list(ROWS)}")
    if config.data.cache is None:  # one scene cache for every run, not one in each run
        config = dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                      cache=str(out / "cache")))
    names = [NO_PHASE2, *rows]
    per_seed: dict[str, dict[int, dict[str, float]]] = {name: {} for name in names}
    for seed in train_seeds:
        folder = out / f"seed-{seed}"
        seeded = override(config, [f"seed={seed}"])
        phase1 = train(override(seeded, ["schedule.phase2_steps=0"]), folder / NO_PHASE2,
                       resume=True)
        per_seed[NO_PHASE2][seed] = _scores(phase1, folder / NO_PHASE2, dataset, eval_seeds)
        for row in rows:
            row_config = override(seeded, ["schedule.phase1_steps=0", *ROWS[row]])
            checkpoint = train(row_config, folder / row, resume=True, init=phase1)
            per_seed[row][seed] = _scores(checkpoint, folder / row, dataset, eval_seeds)
    report = {"phase1_steps": config.schedule.phase1_steps,
              "phase2_steps": config.schedule.phase2_steps, "train_seeds": list(train_seeds),
              "eval_seeds": list(eval_seeds), "dataset": dataset.kind, "images": len(dataset),
              "rows": {name: {"overrides": ROWS.get(name, []),
                              "per_seed": {str(seed): s for seed, s in per_seed[name].items()},
                              **_spread(per_seed[name].values())}
                       for name in names}}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(out / "ablation.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    with atomic_output(out / "ablation.md") as tmp:
        tmp.write_text(markdown(report))
    return report


def _scores(checkpoint: Path, run: Path, dataset: Dataset,
            eval_seeds: Sequence[int]) -> dict[str, float]:
    """One network's mean over `eval_seeds` of each metric, one-stage; kept in
    `run/scores.json` beside its checkpoint and reused while that checkpoint is the same."""
    stored = run / "scores.json"
    key = {"checkpoint": checkpoint.name, "eval_seeds": list(eval_seeds),
           "dataset": dataset.kind, "images": len(dataset)}
    if stored.is_file():
        previous = json.loads(stored.read_text())
        if previous.get("key") == key:
            return previous["scores"]
    network = load_weights(checkpoint, "ema" if holds_ema(checkpoint) else "model")
    refiner = Refiner(network, device="cpu", dtype="fp32")
    means = [evaluate_dataset(dataset, ("sddr",), refiner=refiner, seed=seed)["mean"]["sddr"]
             for seed in eval_seeds]
    scores = {name: statistics.fmean(m[name] for m in means) for name in METRICS}
    with atomic_output(stored) as tmp:
        tmp.write_text(json.dumps({"key": key, "scores": scores}, indent=1))
    return scores


def _spread(scores) -> dict[str, dict[str, float]]:
    """Mean and sample std over training seeds of each metric."""
    scores = list(scores)
    return {name: {"mean": statistics.fmean(s[name] for s in scores),
                   "std": statistics.stdev(s[name] for s in scores) if len(scores) > 1 else 0.0}
            for name in METRICS}


def markdown(report: dict) -> str:
    """The report as a table, one row per ablation row, mean ± std over the training seeds."""
    header = "| row | " + " | ".join(COLUMNS[key] for key in METRICS) + " |"
    lines = [f"Phase 1 for {report['phase1_steps']} steps, then phase 2 for "
             f"{report['phase2_steps']} steps; training seeds "
             f"{', '.join(map(str, report['train_seeds']))} (mean ± std over them), each "
             f"scored one-stage on {report['dataset']} ({report['images']} images) and averaged "
             f"over simulator seeds {', '.join(map(str, report['eval_seeds']))}. S=3 has all "
             "three losses.", "", header, "|---" * (len(METRICS) + 1) + "|"]
    for name, row in report["rows"].items():
        cells = [f"{row[key]['mean']:.4f} ± {row[key]['std']:.4f}" for key in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
