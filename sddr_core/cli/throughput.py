"""`sddr bench --throughput`: images per second over a folder of pairs, in one process and on
Ray with 1 and 2 local workers, and what Ray costs per item.

On a small machine the point is Ray's overhead, not a speed-up. The time between two results of
one worker, less that worker's own time on the second item, is what Ray adds per item
(sending it, the result's trip back, the wait for the next): set against each other within
one run, the two do not depend on what else the machine is doing, as a comparison with the
one-process run (timed before) would. The start of the pool (actors importing torch and
loading the models) is reported apart, as it is paid once a job.
"""

from __future__ import annotations

import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ..batch.job import RefineSettings, pair_items
from ..batch.ray_engine import refine_on_ray
from ..batch.work import ItemRefiner
from ..files.depth_io import write_depth
from ..predictors.simulated import SimulatedPredictor
from .sample import sample_scene


def benchmark_throughput(weights: str, size: int = 1024, count: int = 16,
                         workers: tuple[int, ...] = (1, 2), device: str = "cpu",
                         dtype: str = "auto") -> dict:
    """Refine `count` size×size pairs (low at size/4) one-stage, in this process and then on a
    local Ray with each number of `workers`; the figures as a dict (seconds, images/s)."""
    import ray

    with tempfile.TemporaryDirectory(prefix="sddr-throughput-") as folder:
        root = Path(folder)
        _write_pairs(root, size, count)
        settings = RefineSettings("pairs", weights=weights, device=device, dtype=dtype,
                                  format="npy")
        items, _ = pair_items(root / "low", root / "high", root / "one-process", "npy")
        # 1. One process: the models load once, then the items one after the other
        work = ItemRefiner(settings)
        seconds = []
        for item in items:
            start = time.perf_counter()
            work(item)
            seconds.append(time.perf_counter() - start)
        one = statistics.median(seconds)
        report = {"size": size, "count": count, "device": device, "weights": weights,
                  "cpus": _cpus(), "torch_threads": torch.get_num_threads(),
                  "one_process_item_seconds": one,
                  "one_process_images_per_second": count / sum(seconds), "ray": []}
        # 2. Ray, started once here: the engine uses it and leaves it running
        ray.init(num_cpus=_cpus(), include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False)
        try:
            for pool in workers:
                items, _ = pair_items(root / "low", root / "high", root / f"ray-{pool}", "npy")
                start = time.perf_counter()
                job = refine_on_ray(items, settings, str(root / f"ray-{pool}"), workers=pool)
                wall = time.perf_counter() - start
                if job.failed:
                    raise RuntimeError(f"throughput job failed: {job.failed[:3]}")
                steady, work = _per_worker_intervals(job)
                report["ray"].append({
                    "workers": pool,
                    "job_seconds": wall,
                    "startup_seconds": job.arrivals[0],
                    "steady_item_seconds_per_worker": steady,
                    "steady_images_per_second": pool / steady,
                    "worker_item_seconds": work,
                    "overhead_item_seconds": steady - work,
                    "overhead_ratio": (steady - work) / work,
                })
        finally:
            ray.shutdown()
    return report


def _per_worker_intervals(job) -> tuple[float, float]:
    """Mean time between two results of one worker, and that worker's own mean time on the
    second of them: after its first item, a worker is busy or waiting on Ray."""
    intervals, work = [], []
    for worker in set(job.item_workers):
        mine = [(arrival, seconds) for arrival, seconds, w
                in zip(job.arrivals, job.item_seconds, job.item_workers, strict=True)
                if w == worker]
        intervals += [b[0] - a[0] for a, b in itertools.pairwise(mine)]
        work += [b[1] for b in mine[1:]]
    return statistics.fmean(intervals), statistics.fmean(work)


def _cpus() -> int:
    """The CPUs this process may run on (`taskset` and containers limit them)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _write_pairs(root: Path, size: int, count: int) -> None:
    """`count` pairs of the sample scene at size² (seeds 0…), as npy, the fastest to read."""
    for index in range(count):
        _, depth = sample_scene(size, size, seed=index)
        predictor = SimulatedPredictor(depth)
        write_depth(root / "low" / f"{index:03}.npy", predictor.predict(None, max(8, size // 4)))
        write_depth(root / "high" / f"{index:03}.npy", predictor.predict(None, size))
