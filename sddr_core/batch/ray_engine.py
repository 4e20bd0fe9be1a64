"""`sddr refine --engine ray`: a batch job spread over a Ray cluster with Ray Data.

Ray Data fits the job: a dataset of items, one per block, mapped by `map_batches` with a
callable class, so a pool of actors each holds the models (`ItemRefiner`) for the whole job,
sized by `workers`, one CPU share or one GPU each; results stream back to the caller as items
finish. Ray Data's defaults are changed where a batch of files needs it:

- a failing item is caught in the actor and returned as a row with its error, so it never
  fails its block (Ray Data aborts the dataset on the first errored block by default);
- a worker that dies mid-item (killed, out of memory, a lost node) is restarted and its item
  retried on a live worker up to `retries` times (Ray Data would retry forever); after that
  the item's block is dropped (`max_errored_blocks = -1`) and reported by name;
- outputs are written atomically by the workers, and each worker adds the item's manifest
  line as soon as its files are in place (`Manifest`), so a rerun skips what is done.

Ray is imported only here, and only when a job runs: it is the optional `distributed` extra.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

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
    pool_shape,
    ray_session,
)


@dataclass
class BatchReport:
    """What a job did: items refined now, skipped (finished by an earlier run), and failed
    (name, why); per refined item, its worker's seconds and when its result arrived (seconds
    since the job started), for throughput figures."""

    refined: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    item_seconds: list[float] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)


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
    # 2. Join or start the cluster; 3. map items over a pool of actors, each holding the models
    started = False
    try:
        with ray_session(ray, address) as started:
            dataset = _dataset(ray, todo, settings, predictor, manifest, workers, retries)
            start, answered = time.perf_counter(), set()
            for row in dataset.iter_rows():
                item = _item(row["item"])
                answered.add(item.name)
                if row["error"]:
                    report.failed.append((item.name, row["error"]))
                else:
                    report.refined += 1
                    report.item_seconds.append(float(row["seconds"]))
                    report.arrivals.append(time.perf_counter() - start)
                if progress is not None:
                    progress(report.skipped + len(answered), len(items), item.name)
    except ray.exceptions.RayError as err:
        raise SddrError(f"the Ray job failed: {last_line(err)}") from None
    finally:
        if started:  # a Ray started here has stopped, with its workers
            remove_leftovers(leftovers)
    # 4. An item whose worker died on every attempt left no row
    report.failed += [(item.name, f"its worker died on each of {retries + 1} attempts")
                      for item in todo if item.name not in answered]
    return report


def _item(text: str) -> Item:
    fields = json.loads(text)
    return Item(fields["name"], tuple(fields["inputs"]), tuple(fields["outputs"]))


def _dataset(ray, todo: list[Item], settings: RefineSettings, predictor: DepthPredictor | None,
             manifest: Manifest, workers: int | None, retries: int):
    """The lazy dataset: one item per block, mapped by a pool of `_Worker` actors."""
    context = ray.data.DataContext.get_current()
    context.max_errored_blocks = -1  # only blocks whose worker died on every retry
    context.enable_progress_bars = False  # the caller draws one bar for the whole job
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # its errors come back as rows
    pool, cpus, gpus = pool_shape(ray, settings.device, workers)
    rows = [{"item": json.dumps(item.__dict__)} for item in todo]
    with warnings.catch_warnings():  # Ray 2.60 names no other way to bound the retries
        warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
        return ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            _Worker, fn_constructor_kwargs={"settings": settings, "predictor": predictor,
                                            "manifest": manifest},
            batch_size=1, num_gpus=gpus,
            # one task at a time per actor: a dying worker takes only its own item down
            compute=ray.data.ActorPoolStrategy(size=pool, max_tasks_in_flight_per_actor=1),
            num_cpus=cpus, max_restarts=-1, max_task_retries=retries)


class _Worker:
    """A Ray Data actor: the models, loaded once; refines each row's item, catching its
    error into the row."""

    def __init__(self, settings: RefineSettings, predictor: DepthPredictor | None,
                 manifest: Manifest) -> None:
        from .ray_cluster import use_assigned_cpus
        from .work import ItemRefiner

        use_assigned_cpus()
        self.refine = ItemRefiner(settings, predictor)
        self.manifest = manifest

    def __call__(self, batch: dict) -> dict:
        errors, seconds = [], []
        for text in batch["item"]:
            item = _item(text)
            start = time.perf_counter()
            try:
                self.refine(item)
                self.manifest.record(item)
                errors.append("")
            except Exception as err:  # any one item's failure is reported, never the job's
                errors.append(str(err) if isinstance(err, SddrError)
                              else f"{type(err).__name__}: {err}")
            seconds.append(time.perf_counter() - start)
        return {"item": list(batch["item"]), "error": errors, "seconds": seconds}
