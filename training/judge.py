"""Judging finished weights: the figures that decide which weights ship.

`python -m training judge WEIGHTS…` scores each WEIGHTS (a weights file, "default", or a
training checkpoint: its model weights) on held-out procedural scenes, never trained on:

- *Held-out scores*: the paper's metrics (`sddr_core.evaluation.metrics.evaluate`, means over
  the scenes) of the low and high inputs, their guided-filter fusion (`sddr eval`'s `guided`)
  and each WEIGHTS one-stage and, unless asked not to, two-stage (the windows predicted by each
  scene's own simulator from the same low/high, as `sddr eval`'s `sddr-two-stage`; minutes per
  scene on a CPU). The scenes are made with the config's data settings and cached like the
  training data, so runs trained on other degradations are judged on the same inputs.
- *No harm* (issue 10), on the same seeds at `size`: (1) clean copies, low = high = the exact
  normalised disparity: mean and 99th percentile of |output − input|, the share of pixels whose
  gradient grew by more than `EDGE_GROWTH` per pixel (invented edges) and the output's REL, the
  refiner's own error floor; (2) a high input with a smooth global distortion (× 1 + 0.3·f,
  f a smooth field in [−1, 1]) and a low input that is the exact map at 384 px: REL of low,
  high and output, the output should sit near the low input's. Medians over the scenes.

Two sets of scenes (issue 25, point 5): the *validation* set (the config's `validation`
seeds, which the training log scores and which judged many decisions, so it is no longer
held out) and a *fresh* held-out set (`fresh_set`), scored only when asked, to judge one
adoption decision's final weights and nothing before them; each decision takes a new set.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sddr_core.errors import InputError
from sddr_core.evaluation.baselines import guided_fusion, resize_prediction
from sddr_core.evaluation.metrics import evaluate
from sddr_core.evaluation.runner import COLUMNS as LABELS
from sddr_core.inference.pipeline import DepthPipeline
from sddr_core.inference.refiner import Refiner
from sddr_core.maps.gradients import sobel_magnitude
from sddr_core.maps.resample import scaled_size
from sddr_core.network import RefinementNetwork
from sddr_core.predictors.simulated import normalised_disparity
from sddr_core.scenes import render_scene
from training.checkpoint import load_trained
from training.config import TrainConfig
from training.data.cache import Entry, build_cache, cache_folder, procedural_sources
from training.data.degrade import smooth_field
from training.validation import Validation

COLUMNS = ("rel", "delta1", "ord", "d3r", "boundary_f1", "flying")
"""The model card's held-out columns, in its order."""
EDGE_GROWTH = 0.02
"""Gradient growth per pixel above which a clean copy's pixel counts as an invented edge."""


@dataclass(frozen=True)
class SceneSet:
    """Held-out procedural scenes: seeds `first_seed` … `first_seed + scenes − 1`."""

    name: str
    first_seed: int
    scenes: int

    @property
    def seeds(self) -> range:
        return range(self.first_seed, self.first_seed + self.scenes)


FRESH_FIRST_SEED = 3_000_000
FRESH_STRIDE = 1_000
FRESH_SETS = 1_000
FRESH_SCENES = 16


def fresh_set(number: int) -> SceneSet:
    """Issue 25's fresh held-out set `number`: 16 scenes from seed 3,000,000 + 1,000·`number`.

    A set is fresh until it has judged one adoption decision; set 0 judged the step head
    (decision 320), so the next decision takes set 1 (decision 326). The seeds meet no other
    range in use (training from 0, validation from 1,000,000, the selection scenes of decisions
    134 and 154 from 2,000,000, the sample scene from 4,000,004); the scenes are rendered from
    the seeds at the config's scene size, so the generator and the seeds are the set (decision
    190). `InputError` for a number outside 0 … FRESH_SETS − 1.
    """
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < FRESH_SETS:
        raise InputError(f"fresh set {number!r}: choose a whole number 0 to {FRESH_SETS - 1}")
    return SceneSet(f"fresh held-out set {number}", FRESH_FIRST_SEED + FRESH_STRIDE * number,
                    FRESH_SCENES)


@dataclass(frozen=True)
class Judgement:
    """One set's figures: `scores[row][metric]` (rows: inputs, `guided`, then each weights'
    one-stage and two-stage rows) and `no_harm[weights]` (the two checks' medians)."""

    scenes: SceneSet
    scores: dict[str, dict[str, float]]
    no_harm: dict[str, dict[str, float]]


def scene_sets(config: TrainConfig, *, scenes: int | None = None, fresh: int | None = None
               ) -> list[SceneSet]:
    """The validation set and, if `fresh` is a number, that fresh held-out set (`fresh_set`),
    each cut to its first `scenes` when given; `InputError` when `scenes` is out of range or a
    set meets the training seeds."""
    sets = [SceneSet("validation", config.validation.seed, config.validation.scenes)]
    if fresh is not None:
        sets.append(fresh_set(fresh))
    if scenes is not None:
        most = min(chosen.scenes for chosen in sets)
        if not 1 <= scenes <= most:
            raise InputError(f"--scenes {scenes}: choose 1 to {most}, the scenes of the "
                             "smallest set judged")
        sets = [SceneSet(chosen.name, chosen.first_seed, scenes) for chosen in sets]
    training = range(config.data.seed, config.data.seed + config.data.scenes)
    for chosen in sets:
        if chosen.seeds.start < training.stop and training.start < chosen.seeds.stop:
            raise InputError(f"the {chosen.name} seeds {chosen.seeds.start}–"
                             f"{chosen.seeds.stop - 1} meet the config's training seeds "
                             f"{training.start}–{training.stop - 1} (data.seed, data.scenes)")
    return sets


def judge(weights: Sequence[str], config: TrainConfig, cache: str | Path,
          scene_set: SceneSet, *, two_stage: bool = True,
          size: tuple[int, int] = (480, 640)) -> Judgement:
    """Every weights' held-out scores and no-harm checks on `scene_set`.

    Raises
    ------
    InputError
        When a scene cannot be made; `WeightsError` when a weights reference cannot be read.
    """
    sources = procedural_sources(scene_set.first_seed, scene_set.scenes)
    entries, skipped = build_cache(cache_folder(cache, config.data), sources, config.data,
                                   config.data.workers)
    if skipped:
        raise InputError(f"{scene_set.name} scenes could not be made: {skipped}")
    validation = Validation(entries)
    scores = {"low input": validation.inputs["low"], "high input": validation.inputs["high"],
              "guided": validation.score(lambda e: guided_fusion(e.low, e.high, e.depth.shape))}
    harm = {}
    for reference in weights:
        network = load_trained(reference)
        scores[reference] = validation(network)
        if two_stage:
            scores[f"{reference}, two-stage"] = validation.score(_two_stage(network))
        refiner = Refiner(network, device="cpu", dtype="fp32")
        harm[reference] = no_harm(refiner, scene_set.seeds, size)
    return Judgement(scene_set, scores, harm)


def no_harm(refiner: Refiner, seeds: Sequence[int], size: tuple[int, int]) -> dict[str, float]:
    """Medians over the scenes of `seeds` (at `size`, H × W) of the two no-harm checks: keys
    `clean_<mean|p99|edges_invented|rel>` and `distorted_<low|high|output>_rel`."""
    rows = []
    for seed in seeds:
        scene = render_scene(seed, *size)
        exact = normalised_disparity(scene.depth, scene.valid)[0].astype(np.float32)

        def rel(output: np.ndarray, scene=scene) -> float:
            return evaluate(output, scene.depth, scene.valid, space="disparity")["rel"]

        out = refiner.refine(exact, exact)
        change = np.abs(out - exact)
        grown = (sobel_magnitude(_tensor(out)) - sobel_magnitude(_tensor(exact))).numpy()
        row = {"clean_mean": float(change.mean()), "clean_p99": float(np.quantile(change, 0.99)),
               "clean_edges_invented": float((grown > EDGE_GROWTH).mean()),
               "clean_rel": rel(out)}
        high = exact * (1 + 0.3 * smooth_field(exact.shape, np.random.default_rng(seed)))
        low = resize_prediction(resize_prediction(exact, scaled_size(*exact.shape, 384)),
                                exact.shape)
        row.update(distorted_low_rel=rel(low), distorted_high_rel=rel(high),
                   distorted_output_rel=rel(refiner.refine(low, high)))
        rows.append(row)
    return {key: round(statistics.median(row[key] for row in rows), 5) for key in rows[0]}


def report(judgements: Sequence[Judgement], config_name: str) -> str:
    """The judgements as Markdown: per set, a scores table and a no-harm table."""
    lines = []
    for judgement in judgements:
        seeds = judgement.scenes.seeds
        count = f"{len(seeds)} scene{'s' if len(seeds) > 1 else ''}"
        lines += [f"## {judgement.scenes.name}: {count} (seeds {seeds.start}–"
                  f"{seeds.stop - 1}), {config_name}'s data settings", "",
                  "| | " + " | ".join(LABELS[key] for key in COLUMNS) + " |",
                  "|---|" + "---:|" * len(COLUMNS)]
        lines += [f"| {name} | " + " | ".join(f"{scores[key]:.4f}" for key in COLUMNS) + " |"
                  for name, scores in judgement.scores.items()]
        lines += ["", "| no harm | clean copies: mean / p99 / invented edges / REL | "
                      "distorted high: REL of low / high / output |", "|---|---|---|"]
        for name, harm in judgement.no_harm.items():
            lines.append(f"| {name} | {harm['clean_mean']:.4f} / {harm['clean_p99']:.3f} / "
                         f"{100 * harm['clean_edges_invented']:.2f} % / "
                         f"{harm['clean_rel']:.3f} | {harm['distorted_low_rel']:.4f} / "
                         f"{harm['distorted_high_rel']:.4f} / "
                         f"{harm['distorted_output_rel']:.4f} |")
        lines.append("")
    return "\n".join(lines)


def _two_stage(network: RefinementNetwork) -> Callable[[Entry], np.ndarray]:
    """An entry → its two-stage refinement from its cached low/high, the windows predicted by
    the entry's own simulator (as training's edge labels are made)."""
    refiner = Refiner(network, device=next(network.parameters()).device, dtype="fp32")

    def output(entry: Entry) -> np.ndarray:
        pipeline = DepthPipeline(refiner, entry.draw.predictor(entry.depth, entry.valid))
        image = np.zeros((*entry.depth.shape, 3), np.uint8)  # the simulator reads its size only
        return pipeline(image, mode="two-stage", inputs=(entry.low, entry.high))

    return output


def _tensor(depth: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(depth))[None]
