"""Clip mode against per-frame refinement on procedural clips with exact depth (issue 27).

Run from the repository root:
    PYTHONPATH=. python benchmarks/video_consistency.py [--seeds 1 2] [--frames 24] \
        [--size 192x256] [--out benchmark-output/video]

For each motion of `sddr_core.scenes.sequence.MOTIONS` and seed, renders a clip, draws
per-frame simulated (low, high) predictions (`predictors.flicker`), refines them frame by
frame and as a clip with the bundled weights, and scores the inputs and both refinements:
per-frame REL, ORD, D³R and boundary F1 (means over frames), TAE (moving boxes masked out)
and the temporal std on static pixels. Also times both refinements per frame. Writes
`video.json` (every clip) and `video.md` (means per motion and overall) under `--out`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sddr_core.evaluation.baselines import resize_prediction
from sddr_core.evaluation.metrics import evaluate
from sddr_core.evaluation.temporal import static_temporal_std, temporal_alignment_error
from sddr_core.files.atomic import atomic_output
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
    start = time.perf_counter()
    outputs["per-frame"] = np.stack([refiner.refine(low, high, size) for low, high in pairs])
    per_frame_seconds = (time.perf_counter() - start) / frames
    start = time.perf_counter()
    outputs["clip"] = np.stack(list(refiner.refine_clip(pairs, size)))
    clip_seconds = (time.perf_counter() - start) / frames
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
            "seconds_per_frame": {"per-frame": per_frame_seconds, "clip": clip_seconds}}


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
    per_frame = np.mean([r["seconds_per_frame"]["per-frame"] for r in results])
    clip = np.mean([r["seconds_per_frame"]["clip"] for r in results])
    lines.append(f"Seconds per frame: per-frame {per_frame:.4f}, clip {clip:.4f} "
                 f"(×{clip / per_frame:.2f}).")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", default="192x256", help="height×width of the clips")
    parser.add_argument("--low-resolution", type=int, default=96,
                        help="the simulated predictor's training resolution r̂")
    parser.add_argument("--motions", nargs="+", default=list(MOTIONS), choices=list(MOTIONS))
    parser.add_argument("--out", type=Path, default=Path("benchmark-output/video"))
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    refiner = load_refiner("default", device="cpu")
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
