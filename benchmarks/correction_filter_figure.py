"""The model card's pictures of what a change to the weights does at an edge: the correction
filter (decision 134) and the step head (decision 320).

    PYTHONPATH=. python benchmarks/correction_filter_figure.py [--weights default]
        [--cache runs/clean10p1/cache] [-o docs/img/correction-filter.png]
    PYTHONPATH=. python benchmarks/correction_filter_figure.py --before OLD.safetensors
        -o docs/img/step-head.png

On the held-out validation scenes (`default.yaml`'s `validation`), refines each one-stage with
WEIGHTS as they are and with the correction filter off (or, with `--before`, with those
weights instead), and shows the 192 × 256 crop where the change lowered the error most:
ground truth, the high input, the two outputs (inverse depth, one range), and each one's
relative error after the evaluation's alignment (one range).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sddr_core.evaluation.aligned import aligned_depth  # noqa: E402
from sddr_core.evaluation.baselines import resize_prediction  # noqa: E402
from sddr_core.files.atomic import atomic_output  # noqa: E402
from sddr_core.inference.refiner import Refiner  # noqa: E402
from training.checkpoint import load_trained  # noqa: E402
from training.config import load_config  # noqa: E402
from training.data.cache import (  # noqa: E402
    build_cache,
    cache_folder,
    procedural_sources,
    read_entry,
)
from training.export import with_correction_filter  # noqa: E402

CROP = (192, 256)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", default="default")
    parser.add_argument("--before", help="weights to compare WEIGHTS with, instead of WEIGHTS "
                        "without its correction filter")
    parser.add_argument("--cache", default="runs/clean10p1/cache")
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/img/correction-filter.png"))
    args = parser.parse_args()
    config = load_config("training/configs/default.yaml")
    sources = procedural_sources(config.validation.seed, config.validation.scenes)
    entries, _ = build_cache(cache_folder(args.cache, config.data), sources, config.data)
    network = load_trained(args.weights)
    radius, eps = network.config.correction_filter_radius, network.config.correction_filter_eps
    if args.before:
        refiners = {"before": Refiner(load_trained(args.before), device="cpu"),
                    "now": Refiner(network, device="cpu")}
        change = f"{Path(args.before).name} → {args.weights}"
    elif radius:
        refiners = {"unfiltered": Refiner(with_correction_filter(network, 0, eps), device="cpu"),
                    "filtered": Refiner(network, device="cpu")}
        change = f"correction filter r {radius}, ε {eps:g}"
    else:
        raise SystemExit(f"{args.weights} has no correction filter to show; give --before")
    old, new = refiners
    best = None
    for path in entries:
        entry = read_entry(path)
        maps = {"high input": resize_prediction(entry.high, entry.depth.shape)}
        maps |= {name: refiner.refine(entry.low, entry.high, out_size=entry.depth.shape)
                 for name, refiner in refiners.items()}
        depths = {name: aligned_depth(m, entry.depth, entry.valid, "disparity")
                  for name, m in maps.items()}
        errors = {name: np.abs(d - entry.depth) / np.where(entry.valid, entry.depth, 1.0)
                  for name, d in depths.items()}
        gain = np.nan_to_num(errors[old] - errors[new])
        window = torch.nn.functional.avg_pool2d(torch.from_numpy(gain)[None, None], CROP, 16)
        score, index = window.flatten().max(0)
        if best is None or score > best[0]:
            top, left = divmod(int(index), window.shape[-1])
            best = (float(score), entry, depths, errors, (top * 16, left * 16), path.name)
    _, entry, depths, errors, (top, left), name = best
    rows, cols = slice(top, top + CROP[0]), slice(left, left + CROP[1])
    inverse_gt = np.where(entry.valid, 1.0 / np.where(entry.valid, entry.depth, 1.0), np.nan)
    lo, hi = np.nanpercentile(inverse_gt[rows, cols], [1, 99])
    top_error = max(np.nanpercentile(e[rows, cols], 99) for e in errors.values())
    fig, axes = plt.subplots(2, 4, figsize=(12.8, 5.4), constrained_layout=True)
    depth_map = plt.get_cmap("turbo").with_extremes(bad="black")
    axes[0, 0].imshow(inverse_gt[rows, cols], cmap=depth_map, vmin=lo, vmax=hi)
    axes[0, 0].set_title("ground truth")
    axes[1, 0].set_visible(False)
    for column, label in enumerate(depths, start=1):
        axes[0, column].imshow(1.0 / depths[label][rows, cols], cmap=depth_map, vmin=lo, vmax=hi)
        axes[0, column].set_title(label)
        shown = axes[1, column].imshow(errors[label][rows, cols], cmap="inferno", vmin=0,
                                       vmax=top_error)
        axes[1, column].set_title(f"{label}: |d − d*| / d*")
    for ax in axes.flat:
        ax.set_axis_off()
    fig.colorbar(shown, ax=axes[1, 1:].tolist(), shrink=0.8, label="relative error")
    fig.suptitle(f"{name}, rows {top}–{top + CROP[0]}, columns {left}–{left + CROP[1]}; "
                 f"{change}")
    with atomic_output(args.output) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
