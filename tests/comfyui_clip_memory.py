"""Memory of an SDDR node refining an IMAGE batch as a clip, in a fresh process (a test's
own process has an earlier peak that would hide this one). Prints one JSON line:

- `work`: the peak resident size above what the process held with the inputs made, less
  the outputs' bytes;
- `growth`: how much the resident size grew per frame while the frames were refined (read
  at each progress update, from the third frame on), less the output IMAGE's bytes per
  frame, which fill as the frames come: about 0 when nothing is kept per frame;
- `frame`: the bytes of one full-size depth map.

    python -m tests.comfyui_clip_memory NODE FRAMES [COMFYUI_DIR]

NODE is `refine` (SDDR Refine Depth) or `image` (SDDR Depth From Image with a stand-in
predictor). With COMFYUI_DIR the real ComfyUI modules are used (run it with ComfyUI's
Python); without, the stand-ins of tests/comfy_stand_ins.py.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

SIZE = (192, 256)
STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536"}
"""Environment for the measuring process: glibc's mmap threshold fixed at 64 KiB, so every
map-sized buffer is mapped and unmapped on its own instead of landing, once glibc raises its
threshold, in heap arenas whose growth is noise of ±half a map per frame (measured on the
loaded machine: 50 and 94 KB of growth a frame without it, −5 and 0.5 KB with it)."""


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(node: str, frames: int, comfyui_dir: str | None) -> None:
    if comfyui_dir:
        sys.path[:0] = [comfyui_dir]
        import comfy.options

        comfy.options.enable_args_parsing(False)
        from comfy.cli_args import args

        args.cpu = True  # as the test server runs: --cpu
    else:
        from tests import comfy_stand_ins

        comfy_stand_ins.install()
        comfy_stand_ins.folder_paths.use(Path(tempfile.mkdtemp()))
    from comfyui_nodes import host, models, nodes
    from sddr_core import Refiner
    from sddr_core.network.model import RefinementNetwork
    from sddr_core.predictors import load_predictor
    from tests.tiny import TINY, TINY_MAX_SIDE

    readings = []
    progress_bar = host.progress_bar

    def reading_bar(total: int):
        bar = progress_bar(total)
        update = bar.update_absolute

        def update_absolute(value: int, *args, **kwargs) -> None:
            readings.append(resident_bytes())
            update(value, *args, **kwargs)

        bar.update_absolute = update_absolute
        return bar

    host.progress_bar = reading_bar
    torch.manual_seed(0)
    refiner = Refiner(RefinementNetwork(TINY), device="cpu", max_side=TINY_MAX_SIDE)
    loaded = models.LoadedRefiner(refiner, host.model_patcher(refiner.network, refiner.device),
                                  "tiny")
    rows = torch.linspace(0.1, 0.9, SIZE[0])[:, None].expand(*SIZE)
    high = (rows[None] * torch.linspace(1.0, 1.1, frames)[:, None, None])[..., None]
    high = high.expand(-1, -1, -1, 3).contiguous()
    if node == "refine":
        low = high[:, ::4, ::4].contiguous()
        before = resident_bytes()
        depth, mask = nodes.SDDRRefineDepth.execute(loaded, low, high, 0, 0, "whole batch",
                                                    "auto", clip=True).result
        outputs = depth.nbytes + mask.nbytes
    else:
        def predict(image: np.ndarray, resolution: int) -> np.ndarray:
            gray = torch.from_numpy(image.mean(axis=-1, dtype=np.float32))[None, None]
            size = [max(8, round(side * resolution / max(image.shape[:2])))
                    for side in image.shape[:2]]
            return torch.nn.functional.interpolate(gray, size=size, mode="area")[0, 0].numpy()

        models._predictors[("depth-anything-v2-small", "cpu")] = (load_predictor(predict), [])
        before = resident_bytes()
        (depth,) = nodes.SDDRDepthFromImage.execute(
            loaded, high, "depth-anything-v2-small", "one-stage", 1, "whole batch",
            clip=True).result
        outputs = depth.nbytes
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    frame = SIZE[0] * SIZE[1] * 4
    growth = (readings[-1] - readings[2]) / (len(readings) - 3) - 3 * frame
    print(json.dumps({"work": peak - before - outputs, "growth": growth, "frame": frame}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
