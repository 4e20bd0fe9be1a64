"""`sddr refine --engine ray`: a batch job spread over a pool of Ray actors.

Each actor holds the models (`ItemRefiner`) for the whole job, sized by `workers`, one CPU
share or one GPU each; the caller sends each actor one item at a time and the next as soon as
that one's result is back, so results stream to the caller as items finish (decision 342:
Ray core actors rather than Ray Data, whose scheduler looks for finished tasks every 100 ms
and let each of two workers idle 0.1–0.2 s between items). What a batch of files needs:

- a failing item is caught in the actor and returned with its error, so it never stops the
  job;
- a worker that dies mid-item (killed, out of memory, a lost node) is restarted and its item
  retried up to `retries` times; after that the item is reported by name. One item at a time
  per actor, so a poison input never takes an innocent one queued behind it down with it;
- outputs are written atomically by the workers, and each worker adds the item's manifest
  line as soon as its files are in place (`Manifest`), so a rerun skips what is done.

Ray is imported only here, and only when a job runs: it is the optional `distributed` extra.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import SddrError
from ..files.atomic import remove_leftovers
from ..inference.refiner import load_refiner
from ..predictors.base import DepthPredictor
from .job import Item, RefineSettings
from .manifest import Manifest
from .ray_cluster import (
    RETRIES,
    check_retries,
    import_ray,
    last_line,
    ray_session,
    start_pool,
    use_assigned_cpus,
)


@dataclass
class BatchReport:
    """What a job did: items refined now, skipped (finished by an earlier run), and failed
    (name, why); per refined item, its worker's seconds, when its result arrived (seconds
    since the job started) and which worker (0, 1, …) refined it, for throughput figures."""

    refined: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    item_seconds: list[float] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    item_workers: list[int] = field(default_factory=list)


def refine_on_ray(
    items: list[Item],
    settings: RefineSettings,
    output: str,
    *,
    address: str | None = None,
    workers: int | None = None,
    retries: int = RETRIES,
    predictor: DepthPredictor | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> BatchReport:
    """Refine `items` on a Ray cluster, writing each item's files and its manifest line in
    the folder `output`; items an earlier run finished with the same settings are skipped.

    Parameters
    ----------
    address
        The cluster to join (`ray://…` or `HOST:PORT`); None starts a local Ray for the job,
        unless this process already called `ray.init`, whose cluster is then used.
    workers
        Actors in the pool (default: one per GPU when `settings.device` is not "cpu" and the
        cluster has GPUs, else one per CPU); CPUs are shared out among them.
    retries
        Attempts after the first at an item whose worker died.
    predictor
        A predictor object (picklable) each worker runs instead of loading
        `settings.predictor`, which then only names it in the sidecars.
    progress
        `progress(done, total, name)` after each item, skipped ones counted at the start.

    Raises
    ------
    SddrError
        Ray is not installed, the weights do not load (`WeightsError`, before Ray starts), or
        the job as a whole failed (its workers cannot load the predictor).
    """
    ray = import_ray()
    check_retries(retries)
    load_refiner(settings.weights, device="cpu")  # bad weights fail here, not in each worker
    # 1. Skip what an earlier run finished
    items = [item.absolute() for item in items]
    manifest = Manifest(output, settings.key())
    report = BatchReport()
    finished = manifest.finished(items)
    todo = [item for item in items if item not in finished]
    report.skipped = len(items) - len(todo)
    leftovers = [path for item in items for path in item.written()]
    remove_leftovers(leftovers)
    if progress is not None:
        progress(report.skipped, len(items), "")
    if not todo:
        return report
    # 2. Join or start the cluster; 3. send the items to a pool of actors holding the models
    started = False
    try:
        with ray_session(ray, address) as started:
            actors = start_pool(ray, _ItemWorker, settings.device, workers, retries,
                                settings, predictor, manifest)
            try:
                ray.get([actor.ready.options(max_task_retries=0).remote() for actor in actors])
                _send_items(ray, actors, todo, retries, report, progress, len(items))
            finally:
                for actor in actors:
                    ray.kill(actor)
    except ray.exceptions.RayError as err:
        raise SddrError(f"the Ray job failed: {last_line(err)}") from None
    finally:
        if started:  # a Ray started here has stopped, with its workers
            remove_leftovers(leftovers)
    return report


def _send_items(ray: Any, actors: list[Any], todo: list[Item], retries: int,
                report: BatchReport, progress: Callable[[int, int, str], None] | None,
                total: int) -> None:
    """Each actor refines one item at a time and gets the next as soon as its result is back;
    an item whose worker died on every attempt is reported by name."""
    waiting, running = deque(todo), {}

    def send(worker: int) -> None:
        if waiting:
            item = waiting.popleft()
            running[actors[worker].refine.remote(item)] = (item, worker)

    for worker in range(len(actors)):
        send(worker)
    start, answered = time.perf_counter(), report.skipped
    while running:
        (done,), _ = ray.wait(list(running), num_returns=1)
        item, worker = running.pop(done)
        send(worker)
        try:
            error, seconds = ray.get(done)
        except ray.exceptions.RayActorError:
            error = f"its worker died on each of {retries + 1} attempts"
        if error:
            report.failed.append((item.name, error))
        else:
            report.refined += 1
            report.item_seconds.append(seconds)
            report.arrivals.append(time.perf_counter() - start)
            report.item_workers.append(worker)
        answered += 1
        if progress is not None:
            progress(answered, total, item.name)


class _ItemWorker:
    """A Ray actor: the models, loaded once; refines one item per call, catching its error."""

    def __init__(self, settings: RefineSettings, predictor: DepthPredictor | None,
                 manifest: Manifest) -> None:
        from .work import ItemRefiner

        use_assigned_cpus()
        self.refine_item = ItemRefiner(settings, predictor)
        self.manifest = manifest

    def ready(self) -> bool:
        """Answered once the models have loaded (a constructor that fails raises here)."""
        return True

    def refine(self, item: Item) -> tuple[str, float]:
        """(error, or "" when the item's files and manifest line are written; seconds)."""
        start = time.perf_counter()
        try:
            self.refine_item(item)
            self.manifest.record(item)
            error = ""
        except Exception as err:  # any one item's failure is reported, never the job's
            error = str(err) if isinstance(err, SddrError) else f"{type(err).__name__}: {err}"
        return error, time.perf_counter() - start
