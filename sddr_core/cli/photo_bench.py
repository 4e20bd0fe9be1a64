"""`sddr bench --photo`: seconds of a whole photo, one-stage and two-stage, with a real predictor,
split into the predictor's runs, N_r's passes, edge snapping and the rest.

Users wait for the photo pipeline, not for N_r alone, and a ViT predictor dominates it: each run
costs the square of its tokens. A random-weight model built from a predictor's transformers
config costs what the trained one does, so the figures hold offline. One-stage and two-stage
run in turn within each repeat, so their ratio sees one machine state.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Callable

import torch

from ..inference.pipeline import DepthPipeline
from ..inference.refiner import Refiner
from ..inference.resolution import RESOLUTION_CAP, check_cap
from ..inference.windows import STEPS
from ..predictors import load_predictor
from ..predictors.base import DepthPredictor
from .bench import environment, peak_memory_mb, synchronize
from .sample import sample_scene


class _Clock:
    """Seconds and runs spent in the predictor, in N_r and in edge snapping since the last
    `reset`."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.predictor = self.refiner = self.snapping = 0.0
        self.resolutions: Counter[int] = Counter()

    def split(self, total: float) -> dict:
        return {"seconds": total, "predictor_seconds": self.predictor,
                "refiner_seconds": self.refiner, "snapping_seconds": self.snapping,
                "rest_seconds": total - self.predictor - self.refiner - self.snapping,
                "predictor_runs": sum(self.resolutions.values()),
                "predictor_resolutions": {str(r): n for r, n in sorted(self.resolutions.items())}}


class _TimedPredictor:
    """`predictor` with its runs timed on `clock`; batched when the predictor batches."""

    def __init__(self, predictor: DepthPredictor, clock: _Clock, device: torch.device):
        self.inner, self.clock, self.device = predictor, clock, device
        self.name, self.polarity = predictor.name, predictor.polarity
        self.training_resolution = predictor.training_resolution
        self.gradient_prior = predictor.gradient_prior
        if hasattr(predictor, "predict_batch"):
            self.predict_batch = self._predict_batch

    def predict(self, image, resolution, region=None):
        return self._timed(1, resolution,
                           lambda: self.inner.predict(image, resolution, region=region))

    def _predict_batch(self, images, resolution):
        return self._timed(len(images), resolution,
                           lambda: self.inner.predict_batch(images, resolution))

    def _timed(self, count: int, resolution: int, run):
        start = time.perf_counter()
        result = run()
        synchronize(self.device)
        self.clock.predictor += time.perf_counter() - start
        self.clock.resolutions[int(resolution)] += count
        return result


class _TimedRefiner:
    """`refiner` with its N_r passes timed on `clock`; everything else is the refiner's."""

    def __init__(self, refiner: Refiner, clock: _Clock):
        self.inner, self.clock = refiner, clock

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def refine(self, *args, **kwargs):
        start = time.perf_counter()
        result = self.inner.refine(*args, **kwargs)
        synchronize(self.inner.device)
        self.clock.refiner += time.perf_counter() - start
        return result


class _TimedPipeline(DepthPipeline):
    """`DepthPipeline` with its edge snapping timed on `clock`. Snapping costs what the depth's
    steep pixels cost: on a random-weight predictor's noise about 30× what it costs on a real
    scene's depth (docs/performance.md), so it is reported apart from the rest."""

    def __init__(self, clock: _Clock, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock = clock

    def _snapped(self, depth, rgb):
        start = time.perf_counter()
        result = super()._snapped(depth, rgb)
        self.clock.snapping += time.perf_counter() - start
        return result


def benchmark_photo(refiner: Refiner, predictor: DepthPredictor, size: int = 1024,
                    repeats: int = 1, steps: int = STEPS,
                    resolution_cap: float | None = RESOLUTION_CAP) -> dict:
    """Median seconds of `DepthPipeline` one-stage and two-stage on the size×size sample photo,
    each split into predictor, N_r, edge snapping and the rest (the medians of the run with the
    median total), with the predictor's run count per resolution."""
    rgb, _ = sample_scene(size, size)
    clock = _Clock()
    pipeline = _TimedPipeline(clock, _TimedRefiner(refiner, clock),
                              _TimedPredictor(predictor, clock, refiner.device),
                              resolution_cap=resolution_cap)
    runs = {"one-stage": lambda: pipeline(rgb), "two-stage": lambda: pipeline(
        rgb, mode="two-stage", steps=steps)}
    pipeline(rgb)  # warm-up: weights into cache, oneDNN primitives
    splits: dict[str, list[dict]] = {mode: [] for mode in runs}
    for _ in range(repeats):
        for mode, run in runs.items():
            synchronize(refiner.device)
            clock.reset()
            start = time.perf_counter()
            run()
            synchronize(refiner.device)
            splits[mode].append(clock.split(time.perf_counter() - start))
    one, two = (_median_run(splits[mode]) for mode in runs)
    return {
        "mode": "photo",
        "size": size,
        "steps": steps,
        "predictor": predictor.name,
        "resolution_cap": resolution_cap,
        **environment(refiner),
        "repeats": repeats,
        "one_stage": one,
        "two_stage": two,
        "ratio_two_to_one": two["seconds"] / one["seconds"],
        "peak_memory_mb": peak_memory_mb(refiner.device),
    }


def _median_run(runs: list[dict]) -> dict:
    """The run whose total is the median (the lower middle one of an even count)."""
    totals = [run["seconds"] for run in runs]
    return runs[totals.index(statistics.median_low(totals))]


def _cap(cap: float | None) -> str:
    return "none" if cap is None else f"{cap:g}× the region's side"


def describe(report: dict) -> list[str]:
    """The report as the lines `sddr bench --photo` prints."""
    lines = [f"{report['predictor']} + N_r ({report['architecture']}), "
             f"{report['size']}×{report['size']} photo on {report['device']} "
             f"({report['dtype']}, {report['threads']} threads), median of "
             f"{report['repeats']}, resolution cap {_cap(report['resolution_cap'])}:"]
    for mode in ("one_stage", "two_stage"):
        run = report[mode]
        sizes = ", ".join(f"{n}×{r}" for r, n in run["predictor_resolutions"].items())
        lines.append(f"  {mode.replace('_', '-')}: {run['seconds']:.2f} s = predictor "
                     f"{run['predictor_seconds']:.2f} s ({run['predictor_runs']} runs: {sizes} "
                     f"px) + N_r {run['refiner_seconds']:.2f} s + snapping "
                     f"{run['snapping_seconds']:.2f} s + rest "
                     f"{run['rest_seconds']:.2f} s")
    lines.append(f"  two-stage / one-stage: {report['ratio_two_to_one']:.1f}×; peak memory "
                 f"{report['peak_memory_mb']:.0f} MB")
    return lines


def run_photo_bench(args, load: Callable[[], Refiner]) -> int:
    """`sddr bench --photo`: the refiner `load` gives (--weights or --preset) with the
    --predictor, printed."""
    cap = check_cap(args.resolution_cap)  # before any model loads
    refiner = load()
    predictor = load_predictor(args.predictor, device=refiner.device)
    report = benchmark_photo(refiner, predictor, size=args.size, repeats=args.repeats or 1,
                             steps=args.steps, resolution_cap=cap)
    report["preset"] = args.weights or args.preset
    print(json.dumps(report, indent=2) if args.json else "\n".join(describe(report)))
    return 0
