"""What the Ray engines share: importing Ray (the optional `distributed` extra), joining or
starting a cluster for one job, and sizing a pool of model-holding workers on it."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from typing import Any

from ..errors import InputError, SddrError

INSTALL_EXTRA = "pip install -e '/path/to/sddr[distributed]'"
RETRIES = 3
"""Attempts after the first at an input whose worker died: a poison input (one that crashes
the process every time) costs four worker restarts, then is reported."""
MOST_SHARING = 8
"""Most workers on one CPU or GPU: each holds its own copy of the models, so a pool far larger
than the cluster would start thousands of processes rather than run faster."""


def import_ray() -> Any:
    """The `ray` module, or SddrError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise SddrError(f"--engine ray needs the 'distributed' extra (Ray): {INSTALL_EXTRA}") \
            from None
    return ray


def last_line(error: Exception) -> str:
    """A Ray error's message ends with its cause's last line: what a user needs of it."""
    return str(error).strip().splitlines()[-1]


def check_retries(retries: int) -> int:
    """`retries`, or InputError unless it is a whole number ≥ 0."""
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise InputError(f"retries {retries!r}: must be a whole number ≥ 0")
    return retries


@contextlib.contextmanager
def ray_session(ray: Any, address: str | None) -> Iterator[bool]:
    """Join the cluster at `address` (None: start a local Ray) for the block, unless this
    process already called `ray.init`, whose cluster is then used; yields whether Ray was
    started here, and stops it (with its workers) after the block if so."""
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False,
                 include_dashboard=False)
    try:
        yield started
    finally:
        if started:
            ray.shutdown()


def pool_shape(ray: Any, device: str, workers: int | None) -> tuple[int, float, float]:
    """(workers, CPUs each, GPUs each) on the joined cluster: by default one worker per GPU
    when `device` is not "cpu" and the cluster has GPUs, else one per CPU.

    Each worker asks for the largest share that lets the whole pool fit on the nodes as they
    are: CPU workers an equal part of the CPUs (whole CPUs, or a fraction of one where there
    are more workers than CPUs), GPU workers one GPU, or a fraction where there are more
    workers than GPUs, and one CPU or a fraction. An actor that does not fit would wait
    forever, and so would the items sent to it (decision 346).
    """
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    cpus = [node.get("CPU", 0.0) for node in nodes]
    gpus = [node.get("GPU", 0.0) for node in nodes] if device != "cpu" else []
    pool = workers or int(sum(gpus) or sum(cpus) or 1)
    if sum(gpus):
        return pool, _share(cpus, pool, 1, "CPUs"), _share(gpus, pool, 1, "GPUs")
    return pool, _share(cpus, pool, max(1, int(sum(cpus)) // pool), "CPUs"), 0


def _share(capacities: list[float], count: int, most: int, what: str) -> float:
    """The largest share, a whole number up to `most` or else 1/k for k up to
    `MOST_SHARING`, of which `count` fit on nodes of these capacities (rounded down to Ray's
    1e-4 resource unit, so k of them fit in one); InputError when none does."""
    for share in [*range(most, 0, -1), *(1 / k for k in range(2, MOST_SHARING + 1))]:
        share = math.floor(share * 10_000) / 10_000
        if sum(math.floor(c / share + 1e-9) for c in capacities) >= count:
            return share
    raise InputError(f"--workers {count}: the Ray cluster's nodes have {capacities} {what}, "
                     f"and at most {MOST_SHARING} workers may share one")


def start_pool(ray: Any, worker_class: type, device: str, workers: int | None, retries: int,
               *args: Any) -> list[Any]:
    """Actors of `worker_class(*args)` shaped by `pool_shape`; one whose process dies is
    restarted (its models loaded again) and its task retried up to `retries` times."""
    count, cpus, gpus = pool_shape(ray, device, workers)
    actor = ray.remote(worker_class).options(num_cpus=cpus, num_gpus=gpus, max_restarts=-1,
                                             max_task_retries=retries)
    return [actor.remote(*args) for _ in range(count)]


def use_assigned_cpus() -> None:
    """In a worker: as many torch threads as the CPUs Ray assigned it (outputs are the same
    bytes as one process's only at the same thread count, decision 222)."""
    import ray
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    if cpus:
        torch.set_num_threads(max(1, int(cpus)))  # a fraction of a CPU: one thread
