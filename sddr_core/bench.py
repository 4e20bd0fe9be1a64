"""`sddr bench`: time, memory and FLOP efficiency of one-stage refinement.

The achieved GFLOP/s is set against a matrix multiply measured in the same run on the
same device and precision, so the ratio says how close the network comes to what the
hardware can do, whatever machine it runs on.
"""

from __future__ import annotations

import platform
import resource
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from .refiner import Refiner, parameter_count
from .sample import sample_predictions, sample_scene


def _median_seconds(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up: allocator, oneDNN primitive or CUDA kernel selection
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> float:
    """Median rate of a square matrix multiply (2048 on CPU, 8192 on CUDA) in GFLOP/s."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    with torch.inference_mode():
        seconds = _median_seconds(lambda: a @ b, device, repeats)
    return 2 * n**3 / seconds / 1e9


def network_flops(refiner: Refiner, height: int, width: int) -> int:
    """FLOPs (2 per multiply-add) of one network pass at the working size for height×width."""
    stride = refiner.config.stride
    h, w = refiner.working_size(height, width)
    shape = (1, 1, -(-h // stride) * stride, -(-w // stride) * stride)
    x = torch.zeros(shape, device=refiner.device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        refiner.network(x, x)
    return counter.get_total_flops()


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated on CUDA; on CPU the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def benchmark(refiner: Refiner, size: int = 1024, repeats: int = 5) -> dict:
    """Median seconds per `refine` of a size×size pair (low at size/4), FLOPs and rates."""
    _, depth = sample_scene(size, size)
    low, high = sample_predictions(depth, low_side=max(8, size // 4))
    device, dtype = refiner.device, refiner.dtype
    low_t = torch.from_numpy(low).to(device)
    high_t = torch.from_numpy(high).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = _median_seconds(lambda: refiner.refine(low_t, high_t), device, repeats)
    memory = peak_memory_mb(device)
    flops = network_flops(refiner, size, size)
    achieved = flops / seconds / 1e9
    reference = matmul_gflops(device, dtype)
    return {
        "mode": "one-stage",
        "size": size,
        "working_size": list(refiner.working_size(size, size)),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "parameters": parameter_count(refiner.network),
        "gflops_per_refinement": flops / 1e9,
        "median_seconds": seconds,
        "repeats": repeats,
        "achieved_gflops_per_second": achieved,
        "matmul_gflops_per_second": reference,
        "ratio_to_matmul": achieved / reference,
        "peak_memory_mb": memory,
        "torch": torch.__version__,
    }
