"""`sddr eval`: every method scored on every image of a dataset, as a table and as pictures.

Per image the predictor runs twice (low and high resolution); each method turns that pair
into depth at the ground truth's size; `metrics.evaluate` scores it. Means over images go
into `metrics.json` and `metrics.md` (the paper's column order).
"""

from __future__ import annotations

import json
import math
import os
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files.atomic import atomic_output
from ..inference.pipeline import DepthPipeline
from ..inference.refiner import Refiner
from ..maps.edge_snap import snap_edges
from ..predictors.simulated import SimulatedPredictor
from .aligned import aligned_depth
from .baselines import guided_fusion, resize_prediction
from .datasets import Sample
from .metrics import METRIC_KEYS, evaluate

METHODS = ("low", "high", "guided", "sddr", "sddr-two-stage", "sddr-snapped",
           "sddr-two-stage-snapped")
REFINER_METHODS = ("sddr", "sddr-two-stage", "sddr-snapped", "sddr-two-stage-snapped")
SNAPPED = {"sddr-snapped": "sddr", "sddr-two-stage-snapped": "sddr-two-stage"}
"""Methods that are another method's output with its edges snapped to the image."""
COLUMNS = {"delta1": "δ1 ↑", "rel": "REL ↓", "ord": "ORD ↓", "d3r": "D³R ↓",
           "boundary_f1": "boundary F1 ↑", "flying": "flying ↓",
           "sqrel": "SqRel ↓", "rmse": "RMSE ↓", "log10": "log10 ↓",
           "delta2": "δ2 ↑", "delta3": "δ3 ↑"}
"""The paper's main columns (δ1, REL, ORD, D³R), the depth-edge metrics (boundary F1, flying-pixel
rate), then the paper's Tables 7–9."""


def parse_methods(text: str) -> tuple[str, ...]:
    """'low,high,guided' → ('low', 'high', 'guided'); repeats dropped, unknown names refused."""
    methods = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise InputError(f"--methods {text!r}: unknown {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(METHODS)}")
    return methods


MAX_RESOLUTION = 16384
"""Largest inference resolution (long side) asked for: a 16384-px prediction is already 1 GiB
of float32, and 100,000 px asked for 26 GiB before failing in the allocator."""
PAPER_RATIO = 448 / 1920
"""Low resolution (= r̂) over the image's long side, as in the paper's main setting: LeReS
(r̂ 448) on 1920-px Middlebury 2021 (MiDaS: 384 / 1920 = 0.2)."""


def simulated_predictor(sample: Sample, seed: int, low_resolution: int) -> SimulatedPredictor:
    """The noise simulator on this sample's ground truth, trained (r̂) at the low resolution, as
    a real predictor's low input is at its r̂. Its seed mixes in the image name, so every image
    gets its own noise and the same name always the same."""
    image_seed = int(np.random.SeedSequence([seed, zlib.crc32(sample.name.encode())])
                     .generate_state(1)[0])
    return SimulatedPredictor(sample.depth, sample.valid, seed=image_seed,
                              training_resolution=low_resolution)


PREDICTORS: dict[str, Callable[[Sample, int, int], SimulatedPredictor]] = {
    "simulated": simulated_predictor,
}
"""Predictor name → factory(sample, seed, low resolution); the simulator needs the sample's
ground truth."""


def evaluate_dataset(
    dataset: Sequence[Sample],
    methods: Sequence[str],
    predictor: str = "simulated",
    refiner: Refiner | None = None,
    low_resolution: int | None = None,
    high_resolution: int | None = None,
    ord_variant: str = "boost",
    seed: int = 0,
    limit: int | None = None,
    figures_dir: str | os.PathLike | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict:
    """Score `methods` on every sample; returns the report `write_report` stores.

    Resolutions default to the paper's ratio, low = r̂ = PAPER_RATIO × the image's long side,
    and high = the long side, at least 2·low. `limit` evaluates only the first samples (read
    lazily). Samples without usable ground truth are skipped with a warning and listed under
    "skipped".
    """
    if predictor not in PREDICTORS:
        raise InputError(f"--predictor {predictor!r}: unknown; choose from "
                         f"{', '.join(PREDICTORS)}")
    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit}: must be at least 1")
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if not isinstance(seed, int) or seed < 0:
        raise InputError(f"--seed {seed!r}: must be a non-negative integer")
    for name, value in (("low", low_resolution), ("high", high_resolution)):
        if value is not None and not 8 <= value <= MAX_RESOLUTION:
            raise InputError(f"--{name}-resolution {value}: must be from 8 to {MAX_RESOLUTION} "
                             "pixels (the prediction's long side)")
    needing = [m for m in methods if m in REFINER_METHODS]
    if needing and refiner is None:
        raise InputError(f"method {needing[0]!r} needs a refiner (--weights)")
    images, skipped, space = [], [], None
    for index in range(count):
        sample = dataset[index]
        reason = _unusable(sample)
        if reason:
            warnings.warn(f"{sample.name}: skipped, {reason}", stacklevel=2)
            skipped.append({"name": sample.name, "reason": reason})
        else:
            long_side = max(sample.depth.shape)
            low_res = low_resolution if low_resolution is not None \
                else max(8, round(PAPER_RATIO * long_side))
            high_res = high_resolution if high_resolution is not None \
                else max(long_side, 2 * low_res)
            model = PREDICTORS[predictor](sample, seed, low_res)
            space = model.polarity
            low = model.predict(sample.image, low_res)
            high = model.predict(sample.image, high_res)
            outputs: dict[str, np.ndarray] = {}
            for m in methods:
                outputs[m] = _method_output(m, low, high, sample, model, refiner, outputs)
            scores = {m: evaluate(out, sample.depth, sample.valid, space=space,
                                  ord_variant=ord_variant, seed=seed)
                      for m, out in outputs.items()}
            images.append({"name": sample.name, "size": list(sample.depth.shape),
                           "resolutions": {"low": low_res, "high": high_res},
                           "metrics": scores})
            if figures_dir is not None:
                _image_figure(Path(figures_dir) / f"{sample.name}.png", sample, outputs,
                              scores, space)
        if progress is not None:
            progress(index + 1, count, sample.name)
    return {
        "predictor": predictor,
        "methods": list(methods),
        "space": space,
        "ord_variant": ord_variant,
        "seed": seed,
        "evaluated": len(images),
        "skipped": skipped,
        "mean": _means(images, methods),
        "images": images,
    }


def _unusable(sample: Sample) -> str | None:
    values = sample.depth[sample.valid]
    if values.size < 2:
        return "its ground truth has no valid pixel" if values.size == 0 else \
            "its ground truth has a single valid pixel"
    if values.min() == values.max():
        return "its ground truth is constant"
    return None


def _method_output(method: str, low: np.ndarray, high: np.ndarray, sample: Sample,
                   predictor: SimulatedPredictor, refiner: Refiner | None,
                   done: dict[str, np.ndarray]) -> np.ndarray:
    """Depth at the ground truth's size, from the shared low/high pair. The two-stage refiner
    starts from that pair too (its step 0 is the `sddr` row) and only adds its own window
    predictions, so the two rows differ by the windows alone. A snapped method snaps its
    unsnapped method's output (taken from `done` when that ran already) to the sample's image,
    so each pair of rows differs by the snapping alone."""
    size = sample.depth.shape
    if method in SNAPPED:
        base = SNAPPED[method]
        unsnapped = done[base] if base in done else _method_output(
            base, low, high, sample, predictor, refiner, done)
        return snap_edges(unsnapped, sample.image)
    if method == "sddr-two-stage":
        return DepthPipeline(refiner, predictor)(sample.image, mode="two-stage",
                                                 inputs=(low, high), snap_edges=False)
    if method == "low":
        return resize_prediction(low, size)
    if method == "high":
        return resize_prediction(high, size)
    if method == "guided":
        return guided_fusion(low, high, size)
    return refiner.refine(low, high, out_size=size)


def _means(images: list[dict], methods: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean over images per method and metric; NaN entries (no usable pairs) are left out."""
    means = {}
    for method in methods:
        means[method] = {}
        for key in METRIC_KEYS:
            values = [image["metrics"][method][key] for image in images]
            finite = [v for v in values if math.isfinite(v)]
            means[method][key] = float(np.mean(finite)) if finite else math.nan
    return means


def _image_figure(path: Path, sample: Sample, outputs: dict[str, np.ndarray],
                  scores: dict[str, dict[str, float]], space: str) -> None:
    from .figures import image_panel

    aligned = {m: aligned_depth(out, sample.depth, sample.valid, space)
               for m, out in outputs.items()}
    titles = {m: f"{m}  δ1 {s['delta1']:.3f}  REL {s['rel']:.3f}" for m, s in scores.items()}
    image_panel(path, sample.image, sample.depth, sample.valid, aligned, titles)


def write_report(report: dict, out_dir: str | os.PathLike, figures: bool = True) -> list[Path]:
    """metrics.json (everything), metrics.md (the table) and metrics.png (bar chart)."""
    out = Path(out_dir)
    written = []
    with atomic_output(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(_strict_json(report), indent=2, allow_nan=False) + "\n")
    written.append(out / "metrics.json")
    with atomic_output(out / "metrics.md") as tmp:
        tmp.write_text(markdown_table(report))
    written.append(out / "metrics.md")
    if figures and report["evaluated"]:
        from .figures import metrics_chart

        written.append(metrics_chart(out / "metrics.png", report["mean"], COLUMNS))
    return written


def _strict_json(value):
    """NaN (a metric with no usable pairs) → null, so any JSON reader accepts the file."""
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_strict_json(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def markdown_table(report: dict) -> str:
    """The mean table, one row per method, with a line saying what produced it."""
    lines = [
        f"Mean over {report['evaluated']} images ({len(report['skipped'])} skipped); "
        f"predictor {report['predictor']}, seed {report['seed']}, "
        f"alignment in {report['space'] or '(no image)'} space, ORD {report['ord_variant']}.",
        "",
        "| method | " + " | ".join(COLUMNS.values()) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for method, values in report["mean"].items():
        cells = " | ".join(f"{values[key]:.3f}" for key in COLUMNS)
        lines.append(f"| {method} | {cells} |")
    return "\n".join(lines) + "\n"
