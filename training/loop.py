"""The training loop: phase 1 with ground truth, phase 2 with self-distilled labels (method.md §5).

One function, `train`, runs a whole run or resumes one, in one process or in each process of a
`torchrun` launch. A run folder holds the resolved `config.yaml`, `log.jsonl`, checkpoints,
the labels of the current refresh, TensorBoard events and, unless `data.cache` says otherwise,
the cache of scenes and predictions. Only rank 0 writes logs and checkpoints; every rank
labels its share of each pool.

Exactness on resume rests on three things: the checkpoint holds the weights and AdamW's
moments (`training.checkpoint`); which crop each sample is depends on its number alone
(`training.data.batches`), and stochastic depth's draws on the step and rank alone
(`_seed_step`); and the labels of the current refresh are on disk. None of the three depends
on the number of processes, so a run may resume on another number (docs/scaling.md).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import default_collate
from tqdm import tqdm

from sddr_core.cli.progress import ProgressBar
from sddr_core.errors import InputError, SddrError, WeightsError
from sddr_core.maps.normalise import network_inputs
from sddr_core.network import NetworkOutput, RefinementNetwork
from training.checkpoint import (
    checkpoint_steps,
    config_difference,
    latest_checkpoint,
    load_checkpoint,
    load_trained,
    save_checkpoint,
)
from training.config import TRAINABLE_HEADS, TrainConfig, config_to_dict, dump
from training.data.batches import CropDataset, Schedule
from training.data.cache import (
    build_cache,
    cache_folder,
    folder_sources,
    procedural_sources,
    real_predictor,
)
from training.labels import label_crops, label_folder, load_labels, make_labels, remove_older
from training.losses import (
    Term,
    combine,
    gradient_shares,
    loss_terms,
    output_gradient_norms,
)
from training.validation import Validation

log = logging.getLogger("training")

_DROP_PATH = 6
"""Stream tag of `_seed_step`'s seeds, apart from `training.data`'s and `training.labels`'."""


class Diverged(SddrError):
    """The loss stopped being finite: too high a learning rate, or bad data."""


@dataclasses.dataclass
class _Process:
    """Where this process stands in a (possibly single-process) launch."""

    rank: int
    world: int
    device: torch.device

    @property
    def writer(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def train(config: TrainConfig, run_dir: str | os.PathLike, resume: bool = False,
          init: str | os.PathLike | None = None) -> Path:
    """Run (or with `resume`, continue) training into `run_dir`; returns the last checkpoint.

    `init` starts a new run from trained weights instead of a random initialisation: any
    `load_refiner` reference (a weights file, "default", hf://…) or a training checkpoint
    (its model weights). Its architecture must be `config.model`'s. The optimizer starts
    fresh; a resumed run takes everything from its own checkpoint and ignores `init`.

    Raises `InputError` when `run_dir` already holds a run and `resume` is False, or when
    resuming with a config that differs from the run's; `WeightsError` for an `init` that
    cannot be read or has another architecture.
    """
    run_dir = Path(run_dir)
    with _launch() as process:
        return _Run(config, run_dir, process, resume, init).run()


@contextmanager
def _launch() -> Iterator[_Process]:
    """This process's rank, world size and device; sets up `torch.distributed` under torchrun
    (NCCL on CUDA, gloo on CPU) and tears it down after."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield _Process(rank, world, device)
    finally:
        if world > 1:
            dist.destroy_process_group()


class _Run:
    """The state of one training process; `run` is the loop."""

    def __init__(self, config: TrainConfig, run_dir: Path, process: _Process,
                 resume: bool, init: str | os.PathLike | None = None) -> None:
        self.config, self.run_dir, self.process, self.init = config, run_dir, process, init
        if config.data.batch_size % process.world:
            raise InputError(f"data.batch_size {config.data.batch_size} must be a multiple "
                             f"of the {process.world} processes")
        self.local_batch = config.data.batch_size // process.world
        self._check_folder(resume)
        self.entries, held_out = self._data()
        self.schedule = Schedule(config, CropDataset.shapes(self.entries))
        self.dataset = CropDataset(self.entries, self.schedule)
        self.validation = Validation(held_out) if process.writer else None

        torch.manual_seed(config.seed)
        architecture = config.model.architecture()
        checkpoint = latest_checkpoint(run_dir) if resume else None
        if resume and checkpoint is None:
            log.warning("--resume: %s holds no complete checkpoint; starting from step 0",
                        run_dir)
        self.model = RefinementNetwork(architecture)
        if init is not None and checkpoint is None:
            _load_initial_weights(self.model, init)
        self.model = self.model.to(process.device, memory_format=torch.channels_last)
        if config.optim.train_only:
            _train_only(self.model, config.optim.train_only)
        self.ema = _frozen_copy(self.model) if config.optim.ema else None
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad], lr=config.optim.lr,
            weight_decay=config.optim.weight_decay)
        self.step = 0
        if checkpoint is not None:
            resumed = load_checkpoint(checkpoint, self.model, self.optimizer, ema=self.ema)
            _check_same_config(resumed.extra.get("config"), config, checkpoint)
            self.step = resumed.step
        self.wrapped = (DistributedDataParallel(self.model) if process.world > 1
                        else self.model)
        self.autocast, self.scaler = _mixed_precision(config, process.device)
        self.labels: dict[int, torch.Tensor] = {}
        self.refresh: int | None = None
        self.logger = _Logger(run_dir, config) if process.writer else None

    def run(self) -> Path:
        total = self.schedule.total
        if self.logger:
            self.logger.write({"event": "resume" if self.step else "start", "step": self.step,
                               "scenes": len(self.entries), "processes": self.process.world,
                               "init": None if self.init is None else str(self.init)})
            if self.step == 0:
                self._validate()
        bar = tqdm(total=total, initial=self.step, desc="training", unit="step",
                   disable=not self.process.writer, dynamic_ncols=True)
        last = None
        window_seconds, window_steps = 0.0, 0  # training steps only, not labels or validation
        while self.step < total:
            self._ensure_labels()
            start = time.perf_counter()
            parts, grad_norm, balance = self._train_step()
            window_seconds += time.perf_counter() - start
            self.step += 1
            window_steps += 1
            bar.update()
            if self.step % self.config.logging.every == 0 or self.step == total:
                seconds = window_seconds / window_steps
                record = {"step": self.step, "phase": self.schedule.phase(self.step - 1),
                          **self._mean_over_processes(parts),
                          "grad_norm": grad_norm, "lr": self.config.optim.lr,
                          "seconds_per_step": seconds,
                          "samples_per_second": self.config.data.batch_size / seconds}
                bar.set_postfix(loss=f"{record['loss']:.4f}", phase=record["phase"])
                if self.logger:
                    self.logger.write(record)
                window_seconds, window_steps = 0.0, 0
            if balance is not None and self.logger:
                self.logger.write({"step": self.step, "phase": self.schedule.phase(self.step - 1),
                                   **balance})
            if self.step % self.config.checkpoint.every == 0 or self.step == total:
                last = self._checkpoint()
            if self.step % self.config.validation.every == 0 or self.step == total:
                self._validate()
        bar.close()
        self.process.barrier()  # the other ranks then see rank 0's last checkpoint
        if self.logger:
            self.logger.close()
        return last or latest_checkpoint(self.run_dir)

    # ------------------------------------------------------------------------------- pieces

    def _check_folder(self, resume: bool) -> None:
        """A new run needs a folder without checkpoints; the config is recorded in it."""
        if self.process.writer:
            if self.run_dir.exists() and not self.run_dir.is_dir():
                raise InputError(f"--out {self.run_dir}: is a file; give a folder for the run")
            if not resume and latest_checkpoint(self.run_dir) is not None:
                raise InputError(f"--out {self.run_dir}: already holds a training run; pass "
                                 "--resume to continue it, or choose a new folder")
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise InputError(f"--out {self.run_dir}: cannot create the run folder: "
                                 f"{error.strerror or error}") from None
            dump(self.config, self.run_dir / "config.yaml")

    def _data(self) -> tuple[list[Path], list[Path]]:
        """Training and held-out entries, made by rank 0 (the others wait, then list them)."""
        data = self.config.data
        folder = cache_folder(data.cache or self.run_dir / "cache", data)
        sources = procedural_sources(data.seed, data.scenes)
        skipped: list[tuple[str, str]] = []
        if data.folder is not None:
            extra, skipped = folder_sources(data.folder)
            sources += extra
        held_out = procedural_sources(self.config.validation.seed, self.config.validation.scenes)
        if self.process.writer:
            progress = ProgressBar("caching scenes", unit="scene")
            entries, unusable = build_cache(folder, sources + held_out, data, data.workers,
                                            progress)
            progress.close()
        self.process.barrier()
        if not self.process.writer:  # everything is on disk now: this only lists it
            entries, unusable = build_cache(folder, sources + held_out, data)
        skipped += unusable
        if self.process.writer and skipped:
            log.warning("%d sample(s) skipped; see %s", len(skipped),
                        self.run_dir / "skipped.jsonl")
            with (self.run_dir / "skipped.jsonl").open("a", encoding="utf-8") as file:
                for name, reason in skipped:
                    file.write(json.dumps({"name": name, "reason": reason}) + "\n")
        held = {source.name for source in held_out}
        training = [path for path in entries if path.stem not in held]
        if not training:
            raise InputError("no usable training sample: every source was skipped "
                             f"(see {self.run_dir / 'skipped.jsonl'})")
        return training, [path for path in entries if path.stem in held]

    def _ensure_labels(self) -> None:
        """In phase 2, the labels of the current refresh, made (by every rank, its share) the
        first time a step needs them."""
        refresh = self.schedule.refresh_index(self.step)
        if refresh is None or refresh == self.refresh:
            return
        start = time.perf_counter()
        pool = self.schedule.label_pool(refresh)
        folder = label_folder(self.run_dir, refresh)
        progress = (ProgressBar(f"labels {refresh}", unit="scene") if self.process.writer
                    else None)
        predictor = (None if self.config.data.predictor == "simulated"
                     else real_predictor(self.config.data.predictor))
        make_labels(self.model, self.entries, pool, self.config.schedule.label_steps, folder,
                    self.process.rank, self.process.world, progress, predictor,
                    degradation=self.config.data.degradation, source=self.config.schedule.labels)
        if progress is not None:
            progress.close()
        self.process.barrier()
        self.labels = load_labels(folder, pool)
        self.refresh = refresh
        if self.logger:
            seconds = time.perf_counter() - start
            self.logger.write({"step": self.step, "labels": {
                "refresh": refresh, "scenes": len(pool), "steps": self.config.schedule.label_steps,
                "seconds": seconds, "scenes_per_second": len(pool) / seconds}})

    def _train_step(self) -> tuple[dict[str, torch.Tensor], float, dict[str, Any] | None]:
        """One optimiser step: its loss parts, the weights' gradient norm, and on every
        `logging.shares_every`-th step the record of `_balance` (else None)."""
        batch = self._batch()
        device = self.process.device
        low, high = network_inputs(batch["low"][:, 0].to(device), batch["high"][:, 0].to(device),
                                   tuple(batch["low"].shape[-2:]), self.model.config.stride)
        target, mask = batch["target"].to(device), batch["mask"].to(device)
        edges = (label_crops(self.labels, batch, self.config.data.crop).to(device)
                 if self.schedule.phase(self.step) == 2 else None)
        _seed_step(self.config.seed, self.step, self.process.rank)
        with self.autocast:
            output = self.wrapped(low, high, with_aux=True)
        output = dataclasses.replace(
            output, depth=output.depth.float(), omegas=[o.float() for o in output.omegas],
            aux={k: v.float() for k, v in output.aux.items()})
        terms_of = functools.partial(loss_terms, target=target, edges=edges, mask=mask,
                                     weights=self.config.losses.weights,
                                     options=self.config.losses.options)
        loss, parts = combine(terms_of(output))
        if not torch.isfinite(loss):
            raise Diverged(f"step {self.step}: the loss is {loss.item()}; lower optim.lr or "
                           "check the data")
        every = self.config.logging.shares_every
        balance = (self._balance(output, terms_of) if every and (self.step + 1) % every == 0
                   else None)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        clip = self.config.optim.grad_clip
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                              clip if clip is not None else math.inf)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            _update_ema(self.ema, self.model, self.config.optim.ema)
        return {"loss": loss.detach(), **parts}, float(norm), balance

    def _balance(self, output: NetworkOutput,
                 terms_of: Callable[[NetworkOutput], dict[str, Term]]) -> dict[str, Any]:
        """Each loss term's gradient norm at the output, its share, and what measuring cost."""
        start = time.perf_counter()
        norms = self._mean_over_processes(output_gradient_norms(output, terms_of))
        return {"output_gradient": norms, "share": gradient_shares(norms),
                "shares_seconds": time.perf_counter() - start}

    def _mean_over_processes(self, parts: dict[str, torch.Tensor]) -> dict[str, float]:
        """Loss parts (or gradient norms) of the global batch: the mean of the processes'."""
        values = torch.stack(list(parts.values())).float()
        if self.process.world > 1:
            dist.all_reduce(values)
            values /= self.process.world
        return dict(zip(parts, values.tolist(), strict=True))

    def _batch(self) -> dict[str, Any]:
        first = self.step * self.config.data.batch_size + self.process.rank * self.local_batch
        return default_collate([self.dataset[g] for g in range(first, first + self.local_batch)])

    def _checkpoint(self) -> Path | None:
        if not self.process.writer:
            return None
        path = save_checkpoint(self.run_dir, self.step, self.model, self.optimizer, ema=self.ema,
                               extra={"config": config_to_dict(self.config),
                                      "phase": self.schedule.phase(self.step - 1)},
                               keep=self.config.checkpoint.keep)
        oldest = checkpoint_steps(self.run_dir)[0]
        remove_older(self.run_dir, self.schedule.refresh_index(oldest) or 0)
        self.logger.write({"step": self.step, "checkpoint": path.name})
        return path

    def _validate(self) -> None:
        if self.validation is None:
            return
        start = time.perf_counter()
        record = {"low": self.validation.inputs["low"], "high": self.validation.inputs["high"],
                  "model": self.validation(self.model)}
        if self.ema is not None:
            record["ema"] = self.validation(self.ema)
        self.logger.write({"step": self.step, "validation": record,
                           "seconds": time.perf_counter() - start})


WEIGHT_FREE_FIELDS = ("drop_path", "correction_filter_radius", "correction_filter_eps",
                      "step_head_passes")
"""Architecture fields that change no weights, so `--init` may start from other values."""
HEAD_SETTINGS = {"step_head": ("step_head_radii",)}
"""A head's own shape fields: free too where `--init` adds the head, whose weights are new."""


def _load_initial_weights(model: RefinementNetwork, reference: str | os.PathLike) -> None:
    """Load a training checkpoint's model weights or a weights file into `model`, checked
    against its architecture. Stochastic depth and the correction filter may differ (they
    change no weights), and `model` may have heads the weights lack (`TRAINABLE_HEADS`: they
    start silent, so the network's output starts as the weights' own)."""
    architecture = model.config
    network = load_trained(reference)
    added = [name for name in TRAINABLE_HEADS
             if getattr(architecture, name) and not getattr(network.config, name)]
    settings = [field for name in added for field in HEAD_SETTINGS.get(name, ())]
    given = dataclasses.replace(network.config, **{
        name: getattr(architecture, name) for name in (*WEIGHT_FREE_FIELDS, *added, *settings)})
    if given != architecture:
        raise WeightsError(f"--init {reference}: another architecture than model.preset "
                           f"gives: {config_difference(given, architecture)}")
    # the architectures are equal but for the added heads, so only their tensors are missing
    model.load_state_dict(network.state_dict(), strict=not added)


def _train_only(model: RefinementNetwork, head: str) -> None:
    """Freeze everything but `head`, and run the frozen part as at inference (no stochastic
    depth): the head learns on the outputs the network will give it."""
    model.requires_grad_(False)
    getattr(model, head).requires_grad_(True)
    model.eval()
    getattr(model, head).train()


def _seed_step(seed: int, step: int, rank: int) -> None:
    """Seed the global torch RNG, which stochastic depth draws from, for one rank's step.

    Seeded once, every rank drew the same masks for its samples, and a checkpoint (rank 0's
    RNG state) could not resume another number of processes as itself: seeded by (seed, step,
    rank), each rank draws its own masks and a step's draws need no saved state (decision 271).
    """
    state = np.random.SeedSequence([seed, _DROP_PATH, step, rank]).generate_state(1, np.uint64)
    torch.manual_seed(int(state[0]))


def _frozen_copy(model: RefinementNetwork) -> RefinementNetwork:
    ema = copy.deepcopy(model)
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def _update_ema(ema: RefinementNetwork, model: RefinementNetwork, decay: float) -> None:
    ema_params, params = list(ema.parameters()), list(model.parameters())
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers(), strict=True):
        ema_buffer.copy_(buffer)


def _mixed_precision(config: TrainConfig, device: torch.device):
    """(autocast context, grad scaler): bf16 where the GPU has it, else fp16 with loss
    scaling; nothing on CPU or when `optim.mixed_precision` is off."""
    enabled = config.optim.mixed_precision and device.type == "cuda"
    dtype = torch.bfloat16 if enabled and torch.cuda.is_bf16_supported() else torch.float16
    autocast = torch.autocast("cuda", dtype=dtype) if enabled else nullcontext()
    scaler = torch.amp.GradScaler("cuda", enabled=enabled and dtype == torch.float16)
    return autocast, scaler


def _check_same_config(saved: dict | None, config: TrainConfig, path: Path) -> None:
    """Resuming with another config would silently change the run; name what differs."""
    current = config_to_dict(config)
    if saved is None or saved == current:
        return
    differing = sorted(_differences(saved, current))
    raise InputError(f"'{path}' was saved with another config; these keys differ: "
                     f"{', '.join(differing)} (resume with the run's config.yaml)")


def _differences(a: Any, b: Any, key: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for name in sorted(set(a) | set(b))
                for d in _differences(a.get(name), b.get(name), f"{key}.{name}" if key else name)]
    return [] if a == b else [key]


class _Logger:
    """JSONL (every record, flushed) and TensorBoard scalars (when installed and enabled)."""

    def __init__(self, run_dir: Path, config: TrainConfig) -> None:
        self.file = (run_dir / "log.jsonl").open("a", encoding="utf-8")
        self.board = None
        if config.logging.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # TensorBoard is optional
                log.info("TensorBoard is not installed; logging to log.jsonl only")
            else:
                self.board = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps({"time": time.time(), **record}) + "\n")
        self.file.flush()
        if self.board is not None:
            for name, value in _scalars(record):
                self.board.add_scalar(name, value, record.get("step", 0))

    def close(self) -> None:
        self.file.close()
        if self.board is not None:
            self.board.close()


def _scalars(record: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    for name, value in record.items():
        if name in ("step", "time"):
            continue
        if isinstance(value, dict):
            yield from _scalars(value, f"{prefix}{name}/")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            yield f"{prefix}{name}", float(value)
