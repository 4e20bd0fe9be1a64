"""Clip mode against per-frame refinement on procedural clips with exact depth (issue 27).

Run from the repository root:
    PYTHONPATH=. python benchmarks/video_consistency.py [--seeds 2 3] [--frames 24] \
        [--size 192x256] [--out benchmark-output/video]
    PYTHONPATH=. python benchmarks/video_consistency.py --cost-size 720x1280 --frames 8 \
        --low-resolution 384

For each motion of `sddr_core.scenes.sequence.MOTIONS` and seed, renders a clip, draws
per-frame simulated (low, high) predictions (`predictors.flicker`), refines them frame by
frame and as a clip with the bundled weights (alternating frame by frame, timing each: the
median seconds per frame), and scores the inputs and both refinements:
per-frame REL, ORD, D³R and boundary F1 (means over frames), TAE (moving boxes masked out)
and the temporal std on static pixels. Also times both refinements per frame. Writes
`video.json` (every clip) and `video.md` (means per motion and overall) under `--out`.
With `--cost-size`, only times both refinements on a static clip of that size; with
`--figure PATH`, only draws frames and a row over time (docs/img/video-clip.png).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sddr_core.evaluation.baselines import resize_prediction
from sddr_core.evaluation.metrics import evaluate
from sddr_core.evaluation.temporal import (
    aligned_clip_depth,
    static_temporal_std,
    temporal_alignment_error,
)
from sddr_core.files.atomic import atomic_output
from sddr_core.inference.clip import ClipState
from sddr_core.inference.refiner import load_refiner
from sddr_core.predictors.flicker import clip_predictions
from sddr_core.scenes.sequence import MOTIONS, render_clip

METHODS = ("low input", "high input", "per-frame", "clip")
PER_FRAME = ("rel", "ord", "d3r", "boundary_f1")


def score_clip(refiner, seed: int, motion: str, frames: int, size: tuple[int, int],
               low_resolution: int) -> dict:
    clip = render_clip(seed, frames, *size, motion=motion)
    pairs = list(clip_predictions(clip.depth, seed, low_resolution, max(size)))
    outputs = {
        "low input": np.stack([resize_prediction(low, size) for low, _ in pairs]),
        "high input": np.stack([resize_prediction(high, size) for _, high in pairs]),
    }
    refined, seconds = refine_both(refiner, pairs, size)
    outputs.update(refined)
    scores = {}
    for method, predictions in outputs.items():
        frame_scores = [evaluate(p, d, space="disparity")
                        for p, d in zip(predictions, clip.depth, strict=True)]
        scores[method] = {key: float(np.nanmean([s[key] for s in frame_scores]))
                          for key in PER_FRAME}
        scores[method]["tae"] = temporal_alignment_error(predictions, clip.depth, clip.cameras,
                                                         mask=~clip.moving)
        scores[method]["static_std"] = static_temporal_std(predictions, clip.depth)
    return {"seed": seed, "motion": motion, "scores": scores,
            "seconds_per_frame": {m: float(np.median(t)) for m, t in seconds.items()}}


def refine_both(refiner, pairs: list, size: tuple[int, int]
                ) -> tuple[dict[str, np.ndarray], dict[str, list[float]]]:
    """Per-frame and clip refinement of `pairs`, alternating frame by frame so both see the
    same load on a shared machine; the outputs and each frame's seconds."""
    outputs, seconds = {"per-frame": [], "clip": []}, {"per-frame": [], "clip": []}
    state = ClipState()
    for low, high in pairs:
        start = time.perf_counter()
        outputs["per-frame"].append(refiner.refine(low, high, size))
        middle = time.perf_counter()
        outputs["clip"].extend(refiner.refine_clip([(low, high)], size, state=state))
        seconds["per-frame"].append(middle - start)
        seconds["clip"].append(time.perf_counter() - middle)
    return {method: np.stack(frames) for method, frames in outputs.items()}, seconds


def cost(refiner, size: tuple[int, int], frames: int, low_resolution: int) -> dict:
    """Median seconds per frame of both refinements on a static clip of `size`, unscored."""
    clip = render_clip(1, frames, *size, motion="static")
    pairs = list(clip_predictions(clip.depth, 1, low_resolution, max(size)))
    _, seconds = refine_both(refiner, pairs, size)
    return {"size": size, **{m: float(np.median(t)) for m, t in seconds.items()}}


def figure(refiner, path: Path, seed: int, frames: int, size: tuple[int, int],
           low_resolution: int) -> None:
    """Frames 0, middle and last of an `objects` clip (high input, per-frame, clip, all
    clip-aligned to the truth in disparity) and each one's middle row over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clip = render_clip(seed, frames, *size, motion="objects")
    pairs = list(clip_predictions(clip.depth, seed, low_resolution, max(size)))
    refined, _ = refine_both(refiner, pairs, size)
    shown = {"exact": 1 / clip.depth,
             "high input": np.stack([resize_prediction(high, size) for _, high in pairs]),
             **refined}
    disparity = {name: 1 / aligned_clip_depth(maps, clip.depth) for name, maps in shown.items()}
    low, high = np.percentile(disparity["exact"], [1, 99])
    picked = (0, frames // 2, frames - 1)
    fig, axes = plt.subplots(len(shown), len(picked) + 1, figsize=(13, 2.3 * len(shown)))
    for row, (name, maps) in zip(axes, disparity.items(), strict=True):
        for axis, index in zip(row, picked, strict=False):
            axis.imshow(maps[index], cmap="turbo", vmin=low, vmax=high)
            axis.set_title(f"{name}, frame {index}", fontsize=9)
        row[-1].imshow(maps[:, size[0] // 2], cmap="turbo", vmin=low, vmax=high,
                       aspect="auto", interpolation="nearest")
        row[-1].set_title(f"{name}: middle row (x) over time (y)", fontsize=9)
        for axis in row:
            axis.set_xticks([])
            axis.set_yticks([])
    fig.tight_layout()
    with atomic_output(path) as target:
        fig.savefig(target, dpi=80)
    plt.close(fig)


def table(results: list[dict]) -> str:
    keys = (*PER_FRAME, "tae", "static_std")
    lines = []
    for motion in [*MOTIONS, "all"]:
        chosen = [r for r in results if motion in ("all", r["motion"])]
        lines += [f"**{motion}** ({len(chosen)} clips)", "",
                  "| method | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
        for method in METHODS:
            means = [np.nanmean([r["scores"][method][k] for r in chosen]) for k in keys]
            lines.append(f"| {method} | " + " | ".join(f"{m:.4f}" for m in means) + " |")
        lines.append("")
    per_frame = np.median([r["seconds_per_frame"]["per-frame"] for r in results])
    clip = np.median([r["seconds_per_frame"]["clip"] for r in results])
    lines.append(f"Median seconds per frame: per-frame {per_frame:.4f}, clip {clip:.4f} "
                 f"(×{clip / per_frame:.2f}).")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 3],
                        help="clip seeds (seed 1 chose clip mode's settings)")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", default="192x256", help="height×width of the clips")
    parser.add_argument("--low-resolution", type=int, default=96,
                        help="the simulated predictor's training resolution r̂")
    parser.add_argument("--motions", nargs="+", default=list(MOTIONS), choices=list(MOTIONS))
    parser.add_argument("--cost-size", help="only time both refinements at this height×width "
                        "(e.g. 720x1280), on a static clip of --frames frames")
    parser.add_argument("--figure", type=Path, help="only draw frames and a row over time of "
                        "the first seed's objects clip to this image")
    parser.add_argument("--out", type=Path, default=Path("benchmark-output/video"))
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    refiner = load_refiner("default", device="cpu")
    ramp = np.linspace(1, 2, size[0] * size[1], dtype=np.float32).reshape(size)
    refiner.refine(ramp, ramp)  # warm-up, so the first clip's timing is like the others'
    if args.cost_size:
        size = tuple(int(v) for v in args.cost_size.split("x"))
        print(json.dumps(cost(refiner, size, args.frames, args.low_resolution)))
        return
    if args.figure:
        figure(refiner, args.figure, args.seeds[0], args.frames, size, args.low_resolution)
        return
    results = []
    for motion in args.motions:
        for seed in args.seeds:
            results.append(score_clip(refiner, seed, motion, args.frames, size,
                                      args.low_resolution))
            print(json.dumps(results[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.out / "video.json") as path:
        path.write_text(json.dumps(results, indent=1))
    with atomic_output(args.out / "video.md") as path:
        path.write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
