"""Samples per second of each stage of training: rendering, simulating, label refresh, step.

Run from the repository root (on an otherwise idle machine):
    PYTHONPATH=. python benchmarks/training_throughput.py [--config training/configs/default.yaml]
        [--scenes 6] [--steps 6]

Uses the config's scene size, degradations, preset, crop, batch and S. Prints one JSON line per
stage, in one process with torch's default threads (the cache is built by `data.workers`
processes in a run, which multiplies the first two rates by up to that many):
- render: `render_scene` per scene;
- simulate: the two predictions of a scene (`make_predictions`: simulator, degradations,
  hole filling, resampling);
- labels: one scene's G_S (`make_labels`, S = `schedule.label_steps`) with a random network,
  the first scene apart (it sets up the CPU kernels for new shapes);
- step phase 1 / phase 2: one optimiser step on a batch of cached crops (median of `--steps`,
  after one warm-up), phase 2 with random edge labels.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sddr_core.maps.normalise import network_inputs
from sddr_core.network import PRESETS, RefinementNetwork
from sddr_core.scenes import render_scene
from training.config import load_config
from training.data.cache import build_cache, procedural_sources
from training.data.inputs import draw_predictor, make_predictions
from training.labels import make_labels
from training.losses import combine, loss_terms


def _rate(name: str, seconds: list[float], unit: str, per: int = 1, **extra) -> None:
    median = statistics.median(seconds)
    print(json.dumps({"stage": name, "seconds_median": round(median, 3),
                      f"{unit}_per_second": round(per / median, 2), "runs": len(seconds),
                      **extra}), flush=True)


def _timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="training/configs/default.yaml")
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    config = load_config(args.config)
    data = config.data
    size = (data.scene_height, data.scene_width)

    render, simulate = [], []
    for seed in range(args.scenes):
        seconds, scene = _timed(render_scene, seed, *size)
        render.append(seconds)
        rng = np.random.default_rng(seed)
        draw = draw_predictor(rng, data.degradation)
        seconds, _ = _timed(make_predictions, scene.depth, scene.valid, draw, rng,
                            data.degradation)
        simulate.append(seconds)
    _rate("render", render, "scenes", size=list(size))
    _rate("simulate", simulate, "scenes", size=list(size))

    torch.manual_seed(0)
    model = RefinementNetwork(PRESETS[config.model.preset])
    with tempfile.TemporaryDirectory() as tmp:
        entries, _ = build_cache(Path(tmp) / "cache", procedural_sources(0, args.scenes), data)
        labels = []
        for scene in range(args.scenes):
            seconds, _ = _timed(make_labels, model, entries, [scene],
                                config.schedule.label_steps, Path(tmp) / "labels")
            labels.append(seconds)
    _rate("labels", labels[1:], "scenes", first_scene_seconds=round(labels[0], 2),
          steps=config.schedule.label_steps, preset=config.model.preset)

    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.lr)
    batch, crop = data.batch_size, data.crop
    maps = torch.rand(batch, crop, crop)
    low, high = network_inputs(maps, maps.flip(-1), (crop, crop), model.config.stride)
    target, edges = torch.rand(batch, 1, crop, crop), torch.rand(batch, 1, crop, crop)
    for phase, label in ((1, None), (2, edges)):
        times = []
        for _ in range(args.steps + 1):
            start = time.perf_counter()
            loss, _ = combine(loss_terms(model(low, high, with_aux=True), target, label))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
        _rate(f"step phase {phase}", times[1:], "samples", per=batch, batch=batch, crop=crop,
              preset=config.model.preset, threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
