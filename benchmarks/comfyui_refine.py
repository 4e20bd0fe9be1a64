"""How long the ComfyUI nodes take for a 1024×1024 batch of 4 on the CPU: the figures in
docs/comfyui.md.

Run from the repository root, with ComfyUI's own modules (COMFYUI_DIR, its Python):
    COMFYUI_DIR=/path/to/ComfyUI /path/to/comfyui-python -m benchmarks.comfyui_refine
or without ComfyUI, against the test stand-ins: python -m benchmarks.comfyui_refine
Options: --size 1024 --batch 4 --repeats 3 --preset small --steps 3 --threads N.

Timed, each after one warm-up run, median of the repeats:
- SDDRRefineDepth: low 518² and high size² depth IMAGEs → refined IMAGE (one network pass
  per frame), beside `Refiner.refine` on the same maps (the core alone: the node's own cost is
  the difference);
- SDDRDepthFromImage one-stage and two-stage (S = steps) on size² photos. Its predictor is
  replaced by `MapPredictor` (an exact map, almost free), so the figures are SDDR's own cost:
  add Depth Anything's 2 runs per frame (one-stage) or 2 + Σ(s+1)² runs (two-stage).
The refiner has random weights of the preset (speed does not depend on their values).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from sddr_core import build_refiner
from sddr_core.cli.sample import sample_scene
from sddr_core.predictors.exact import MapPredictor


def comfy_modules() -> str:
    """Make ComfyUI's modules importable (the real ones under COMFYUI_DIR, on the CPU), or
    the test stand-ins; returns which."""
    folder = os.environ.get("COMFYUI_DIR")
    if not folder:
        from tests import comfy_stand_ins

        comfy_stand_ins.install()
        return "stand-ins (tests/comfy_stand_ins.py)"
    sys.path.insert(0, folder)
    from comfy.cli_args import args

    args.cpu = True
    import comfy.model_management  # noqa: F401  (initialised for the CPU before the nodes)

    return f"ComfyUI at {folder}"


def median_seconds(run, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)
    host = comfy_modules()
    import folder_paths

    from comfyui_nodes import models, nodes

    with tempfile.TemporaryDirectory() as base:
        folder_paths.models_dir = str(Path(base) / "models")
        (Path(base) / "models" / "sddr").mkdir(parents=True)
        build_refiner(options.preset).save(Path(base) / "models" / "sddr" / "bench.safetensors")
        folder_paths.folder_names_and_paths.pop(models.WEIGHTS_FOLDER, None)
        (refiner,) = nodes.SDDRLoadRefiner.execute("bench.safetensors", "cpu", "fp32",
                                                   2048).result
        rgb, depth = sample_scene(options.size, options.size)
        disparity = torch.from_numpy(1.0 / depth)
        near = (disparity - disparity.min()) / (disparity.max() - disparity.min())

        def as_image(maps: torch.Tensor, side: int) -> torch.Tensor:
            small = torch.nn.functional.interpolate(maps[None, None], size=(side, side),
                                                    mode="area")[0, 0]
            return small[None, ..., None].expand(options.batch, -1, -1, 3).contiguous()

        low, high = as_image(near, 518), as_image(near, options.size)
        photos = torch.from_numpy(rgb).float().div(255)[None].expand(options.batch, -1, -1, -1)
        # The predictor cache the node reads (private): an exact, nearly free predictor.
        models._predictors[("depth-anything-v2-small", "cpu")] = (MapPredictor(near.numpy()), [])

        def core_refine():
            refiner.refiner.refine(low[..., 0], high[..., 0])

        def refine_depth():
            nodes.SDDRRefineDepth.execute(refiner, low, high, 0, 0, "per frame", "auto")

        def from_image(mode: str):
            return lambda: nodes.SDDRDepthFromImage.execute(
                refiner, photos, "depth-anything-v2-small", mode, options.steps, "per frame")

        result = {
            "host": host, "torch_threads": torch.get_num_threads(), "preset": options.preset,
            "batch": options.batch, "size": options.size, "steps": options.steps,
            "core_refine_s": median_seconds(core_refine, options.repeats),
            "SDDRRefineDepth_s": median_seconds(refine_depth, options.repeats),
            "SDDRDepthFromImage_one_stage_s": median_seconds(from_image("one-stage"),
                                                             options.repeats),
            "SDDRDepthFromImage_two_stage_s": median_seconds(from_image("two-stage"),
                                                             options.repeats),
        }
    print(json.dumps({key: round(value, 3) if isinstance(value, float) else value
                      for key, value in result.items()}))


if __name__ == "__main__":
    main()
