"""`sddr bench`: time, memory and FLOP efficiency of one-stage and two-stage refinement, and
frames per second of clip mode against per-frame refinement.

The achieved GFLOP/s is set against a matrix multiply measured in the same run on the
same device and precision, so the ratio says how close the network comes to what the
hardware can do, whatever machine it runs on. Two-stage is timed next to one-stage in the
same run, with a predictor that costs nothing, so the ratio is the refinement's own.
"""

from __future__ import annotations

import dataclasses
import itertools
import platform
import resource
import statistics
import time

import torch

from ..errors import InputError
from ..inference.clip import ClipState
from ..inference.pipeline import DepthPipeline
from ..inference.refiner import Refiner, parameter_count
from ..inference.windows import STEPS, passes
from ..maps.edge_snap import snap_edges
from ..network.config import PRESETS, NetworkConfig
from ..predictors.exact import MapPredictor
from ..predictors.flicker import clip_predictions
from ..predictors.simulated import SimulatedPredictor
from .sample import sample_scene


def synchronize(device: torch.device) -> None:
    """Wait for `device`'s queued work, so a clock read after it has seen the work end."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def interleaved_medians(fns: list, device: torch.device, repeats: int) -> list[float]:
    """Median seconds of each function, run in turn within each repeat (`interleaved_times`)."""
    return [statistics.median(record) for record in interleaved_times(fns, device, repeats)]


def interleaved_times(fns: list, device: torch.device, repeats: int) -> list[list[float]]:
    """Seconds of each run of each function, run in turn within each repeat.

    Interleaving makes each function's times see the same machine state (clock boosts, noisy
    neighbours), which keeps ratios between them stable on shared machines.
    """
    for fn in fns:
        fn()  # warm-up: allocator, oneDNN primitive or CUDA kernel selection
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times, strict=True):
            record.append(_timed(fn, device))
    return times


def matmul(device: torch.device, dtype: torch.dtype):
    """(function, FLOPs) of a square matrix multiply: 2048 on CPU, 8192 on CUDA."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)

    def run() -> None:
        with torch.inference_mode():
            a @ b

    return run, 2 * n**3


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated on CUDA; on CPU the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def network_pass(refiner: Refiner, height: int, width: int, batch: int = 1):
    """A function running the network alone on `batch` height×width inputs' padded working
    size, in the refiner's precision: set against `refine`, it shows what the steps around
    cost."""
    x = torch.rand((batch, 1, *refiner.network_input_size(height, width)), device=refiner.device)
    x = x.contiguous(memory_format=torch.channels_last)
    half = refiner.dtype != torch.float32

    def run() -> None:
        with torch.inference_mode(), torch.autocast(refiner.device.type, refiner.dtype, half):
            refiner.network(x, x)

    return run


def benchmark(refiner: Refiner, size: int = 1024, repeats: int = 5,
              snap: bool = False, batch: int = 1) -> dict:
    """Median seconds per `refine` of a size×size pair (low at size/4), or of a stack of
    `batch` of them refined in one call, and of the network pass alone, FLOPs and rates;
    with `snap`, also of `snap_edges` on the refined depth with the scene's photo, timed in
    turn with them.

    Peak memory on CUDA includes the reference matrices (2 × 8192² in the compute dtype).
    """
    if batch > 1 and snap:
        raise InputError("--snap-edges times one map's snapping: use it with --batch 1")
    rgb, depth = sample_scene(size, size)
    predictor = SimulatedPredictor(depth)
    low, high = predictor.predict(None, max(8, size // 4)), predictor.predict(None, size)
    device, dtype = refiner.device, refiner.dtype
    low_t = torch.from_numpy(low).to(device)
    high_t = torch.from_numpy(high).to(device)
    if batch > 1:
        low_t, high_t = low_t.repeat(batch, 1, 1), high_t.repeat(batch, 1, 1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    run_matmul, matmul_flops = matmul(device, dtype)
    timed = [lambda: refiner.refine(low_t, high_t), network_pass(refiner, size, size, batch),
             run_matmul]
    if snap:
        refined, photo = refiner.refine(low_t, high_t), torch.from_numpy(rgb).to(device)
        timed.append(lambda: snap_edges(refined, photo))
    seconds, network_seconds, matmul_seconds, *snap_seconds = interleaved_medians(
        timed, device, repeats)
    memory = peak_memory_mb(device)
    flops = batch * refiner.network.flops(*refiner.network_input_size(size, size))
    achieved = flops / seconds / 1e9
    reference = matmul_flops / matmul_seconds / 1e9
    network_achieved = flops / network_seconds / 1e9
    return {
        "mode": "one-stage",
        "size": size,
        "working_size": list(refiner.working_size(size, size)),
        **environment(refiner),
        "batch": batch,
        "gflops_per_refinement": flops / batch / 1e9,
        "median_seconds": seconds,
        "images_per_second": batch / seconds,
        "repeats": repeats,
        "achieved_gflops_per_second": achieved,
        "matmul_gflops_per_second": reference,
        "ratio_to_matmul": achieved / reference,
        "network_seconds": network_seconds,
        "network_ratio_to_matmul": network_achieved / reference,
        "peak_memory_mb": memory,
        **({"snap_seconds": snap_seconds[0], "snap_ratio_to_refine": snap_seconds[0] / seconds}
           if snap else {}),
    }


def benchmark_two_stage(refiner: Refiner, size: int = 1024, repeats: int = 3,
                        steps: int = STEPS, snap: bool = False) -> dict:
    """Median seconds of `DepthPipeline` one-stage and two-stage on a size×size photo, timed
    in turn, with their network-pass counts and the ratio; edge snapping on with `snap`."""
    rgb, depth = sample_scene(size, size)
    pipeline = DepthPipeline(refiner, MapPredictor(1.0 / depth))
    if refiner.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(refiner.device)
    one_stage, two_stage = interleaved_medians(
        [lambda: pipeline(rgb, snap_edges=snap),
         lambda: pipeline(rgb, mode="two-stage", steps=steps, snap_edges=snap)],
        refiner.device, repeats,
    )
    return {
        "mode": "two-stage",
        "size": size,
        "steps": steps,
        **environment(refiner),
        "one_stage_passes": 1,
        "one_stage_seconds": one_stage,
        "two_stage_passes": passes(steps),
        "two_stage_seconds": two_stage,
        "ratio_two_to_one": two_stage / one_stage,
        "snap_edges": snap,
        "repeats": repeats,
        "peak_memory_mb": peak_memory_mb(refiner.device),
    }


def environment(refiner: Refiner) -> dict:
    """Where a benchmark ran: device, dtype, architecture (preset, correction filter, step
    head), threads, parameters, torch."""
    device = refiner.device
    # The shipped file is `small` with a correction filter and a step head: the preset is the
    # architecture, the filter and the head separate fields.
    bare = dataclasses.replace(refiner.config, correction_filter_radius=0, step_head=0,
                               step_head_radii=NetworkConfig.step_head_radii,
                               step_head_passes=NetworkConfig.step_head_passes)
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "dtype": str(refiner.dtype).removeprefix("torch."),
        "architecture": next(  # the preset whose config the network has, trained or not
            (name for name, config in PRESETS.items() if config == bare), "custom"),
        "correction_filter_radius": refiner.config.correction_filter_radius,
        "step_head": refiner.config.step_head,
        "step_head_passes": refiner.config.step_head_passes,
        "threads": torch.get_num_threads(),
        "parameters": parameter_count(refiner.network),
        "torch": torch.__version__,
    }


CLIP_HEIGHTS = (720, 1080)
"""`bench --clip` frame heights (16:9 frames): 720p and 1080p."""
CLIP_PAIRS = 4
"""Distinct (low, high) frames a clip benchmark cycles through, so clip mode's state sees
frames that change as a real clip's do."""


def benchmark_clip(refiner: Refiner, heights: tuple[int, ...] | None = None,
                   repeats: int = 5) -> dict:
    """Frames per second of per-frame refinement (`refine`) and of clip mode (`refine_clip`
    with one state through the run) on 16:9 frame pairs of each height (default
    `CLIP_HEIGHTS`; low at a quarter of the width), the two timed frame by frame in turn;
    medians over `repeats` frames and their ratio."""
    rows = [_clip_row(refiner, height, repeats) for height in heights or CLIP_HEIGHTS]
    return {"mode": "clip", **environment(refiner), "repeats": repeats, "sizes": rows,
            "peak_memory_mb": peak_memory_mb(refiner.device)}


def _clip_row(refiner: Refiner, height: int, repeats: int) -> dict:
    width = round(height * 16 / 9)
    _, depth = sample_scene(height, width)
    pairs = [(torch.from_numpy(low).to(refiner.device), torch.from_numpy(high).to(refiner.device))
             for low, high in clip_predictions([depth] * CLIP_PAIRS, seed=0,
                                               low_resolution=max(8, width // 4),
                                               high_resolution=width)]
    alone, in_clip, state = itertools.cycle(pairs), itertools.cycle(pairs), ClipState()
    per_frame, clip = interleaved_times(
        [lambda: refiner.refine(*next(alone)),
         lambda: next(refiner.refine_clip([next(in_clip)], state=state))],
        refiner.device, repeats)
    median, fastest = statistics.median, min
    return {"height": height, "width": width,
            "per_frame_seconds": median(per_frame), "per_frame_fps": 1 / median(per_frame),
            "clip_seconds": median(clip), "clip_fps": 1 / median(clip),
            "ratio_clip_to_per_frame": median(clip) / median(per_frame),
            "per_frame_fastest_seconds": fastest(per_frame),
            "clip_fastest_seconds": fastest(clip),
            "ratio_fastest": fastest(clip) / fastest(per_frame)}
