"""Typed training configs: a YAML file checked against frozen dataclasses before anything starts.

A run is described by one `TrainConfig`, nested by section (model, data, optim, schedule,
losses, checkpoint, validation, logging). `load_config` reads a YAML file (``yaml.safe_load``
rules) and builds it field by field from the dataclasses' type hints, so an unknown key, a
value of the wrong type or one out of range fails at once with its dotted key path, e.g.
``optim.lr: expected a number, got 'fast'``, rather than hours into a run. Keys left out take
the defaults below: the paper's values where it gives them (method.md §5), otherwise ours.
`dump` writes the resolved config back as YAML, to record in a run directory.
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from sddr_core.errors import InputError, shown
from sddr_core.files.atomic import atomic_output
from sddr_core.inference.windows import MAX_STEPS, STEPS, passes
from sddr_core.network import PRESETS, NetworkConfig
from sddr_core.predictors.huggingface import PREDICTORS
from training.losses import LossOptions, LossWeights

MAX_SEED = 2**32 - 1
"""Largest seed: what NumPy's legacy generator takes (torch takes 2⁶⁴ − 1 and overflowed on
larger ones)."""
MAX_SCENES = 100_000
"""Most procedural scenes (and label scenes): 50 times the default, about 1 TB of cache at
1024×1536."""
MAX_SCENE_SIDE = 4096
"""Largest scene side, and so crop: 4K; a 50000-row scene asked 27.9 GiB before failing."""
MAX_RESOLUTION = 8192
"""Largest simulated prediction (long side, pixels): twice the largest scene side."""
MAX_BATCH = 1024
"""Largest global batch: 64 times gpu.yaml's 16."""
MAX_WORKERS = 256
"""Most cache-building processes."""
MAX_STEPS_PER_PHASE = 10_000_000
"""Most optimiser steps per phase: a thousand times the paper's 10,000."""
MAX_EDGE_BLUR = 64.0
"""Largest σ of the simulated edge blur, in predictor pixels (the default range tops at 6)."""
TRAINABLE_HEADS = ("full_resolution_head", "step_head")
"""Heads `optim.train_only` can train alone: both start silent, so `--init` may add them."""
MAX_REGIONS = 64
"""Most k-means regions N_g of L_grad (the paper shows 4; 100,000 never finished)."""


class ConfigError(InputError):
    """A config is unreadable, or one of its values is unknown, mistyped or out of range.

    `key` is the value's dotted path ("optim.lr", "losses.options.fusion_levels[1]"; empty for
    the file as a whole) and `reason` what is wrong with it.
    """

    def __init__(self, key: str, reason: str, source: str | None = None) -> None:
        where = ": ".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {reason}" if where else reason)
        self.key = key
        self.reason = reason


def _require(ok: bool, key: str, expected: str, value: object) -> None:
    """Raise a `ConfigError` for `key` unless `ok`."""
    if not ok:
        raise ConfigError(key, f"must be {expected}, got {shown(value)}")


def _ordered_range(key: str, value: tuple[float, float], lowest: float = 0.0) -> None:
    """Check a (min, max) range drawn from uniformly: lowest ≤ min ≤ max."""
    _require(lowest <= value[0] <= value[1], key, f"[min, max] with {lowest:g} ≤ min ≤ max", value)


@dataclass(frozen=True)
class ModelConfig:
    """The network trained."""

    preset: str = "base"
    """A name in `sddr_core.network.PRESETS`: "base" is the paper's scale, "small" the CPU one."""
    drop_path: float | None = None
    """Stochastic depth rate of the encoder; null keeps the preset's (0.1)."""
    correction_filter_radius: int = 0
    """Train through N_r's correction filter of this radius (decision 134; needs a residual
    preset); 0: off, as every preset."""

    full_resolution_head: int = 0
    """Channels of N_r's full-resolution head (decision 237; needs a residual preset); 0:
    none, as every preset."""
    step_head: int = 0
    """Channels of N_r's step head (decision 320; needs a residual preset); 0: none, as every
    preset."""
    step_head_radii: tuple[int, ...] = NetworkConfig.step_head_radii
    """The step head's window radii, widest last (`NetworkConfig.step_head_radii`)."""
    step_head_passes: int = NetworkConfig.step_head_passes
    """Runs of the step head, its weights shared (`NetworkConfig.step_head_passes`)."""

    def __post_init__(self) -> None:
        _require(self.preset in PRESETS, "preset", f"one of {sorted(PRESETS)}", self.preset)
        _require(self.drop_path is None or 0 <= self.drop_path < 1, "drop_path",
                 "in [0, 1) or null", self.drop_path)
        radius = self.correction_filter_radius
        _require(isinstance(radius, int) and not isinstance(radius, bool) and radius >= 0
                 and (radius == 0 or PRESETS[self.preset].residual),
                 "correction_filter_radius", "an integer ≥ 0, and 0 unless the preset is "
                 "residual", radius)
        for name in TRAINABLE_HEADS:
            head = getattr(self, name)
            _require(isinstance(head, int) and not isinstance(head, bool) and 0 <= head <= 64
                     and (head == 0 or PRESETS[self.preset].residual),
                     name, "an integer from 0 to 64, and 0 unless the preset is residual", head)

    def architecture(self) -> NetworkConfig:
        """The preset with this config's changes (checked by `NetworkConfig`)."""
        changes = {"correction_filter_radius": self.correction_filter_radius,
                   "step_head_radii": self.step_head_radii,
                   "step_head_passes": self.step_head_passes,
                   **{name: getattr(self, name) for name in TRAINABLE_HEADS}}
        if self.drop_path is not None:
            changes["drop_path"] = self.drop_path
        return dataclasses.replace(PRESETS[self.preset], **changes)


@dataclass(frozen=True)
class DegradationConfig:
    """Ranges the simulated predictor's errors are drawn from, uniformly, once per sample.

    Wide ranges and several kinds of error keep N_r from learning one simulator: real predictors
    also misplace edges, drift in scale across the image and leave holes (issue 9). Resolutions
    are long sides in pixels; r̂, the predictor's training resolution, is 384.
    """

    low_resolution: tuple[int, int] = (256, 512)
    """Long side of the low-resolution prediction (consistent, blurred edges)."""
    high_resolution: tuple[int, int] = (768, 1536)
    """Long side of the high-resolution prediction (sharp edges, local inconsistency)."""
    noise_scale: tuple[float, float] = (0.1, 0.5)
    """Factor on the simulator's ε_cons scale and shift σ (`NoiseParameters`). The simulator's
    shift is a fraction of the whole disparity range, and our rooms span up to 80× in depth, so
    at factor 1 and r = 2–4 r̂ a far discontinuity is below the noise and the high input's edges
    are worse than the low input's (held-out D³R 0.21 against 0.13): the opposite of the
    method's premise. At 0.1–0.5 the high input has the better edges and, above 0.25, the worse
    structure (docs/decisions.md)."""
    edge_blur: tuple[float, float] = (1.0, 6.0)
    """σ of ε_edge's blur along edges, in predictor pixels (the simulator's default is 4)."""
    edge_shift: float = 3.0
    """Largest displacement of the predicted edges, in predictor pixels."""
    scale_drift: float = 0.1
    """Largest smooth relative change of scale across the image."""
    high_scale_drift: float | None = None
    """Largest scale drift of the high input alone; null: `scale_drift`, as the low input's.
    The method's premise is that the high-resolution run is the one with inconsistent
    structure (ours: issue 10's no-harm check distorts the high input by ±30 %)."""
    holes: float = 0.01
    """Largest fraction of pixels lost to holes and speckle."""

    def for_high_input(self) -> DegradationConfig:
        """These ranges as they apply to the high input: `high_scale_drift` where set."""
        if self.high_scale_drift is None:
            return self
        return dataclasses.replace(self, scale_drift=self.high_scale_drift)

    def __post_init__(self) -> None:
        for name in ("low_resolution", "high_resolution", "noise_scale", "edge_blur"):
            _ordered_range(name, getattr(self, name), lowest=1 if "resolution" in name else 0)
        for name in ("low_resolution", "high_resolution"):
            _require(getattr(self, name)[1] <= MAX_RESOLUTION, name,
                     f"at most {MAX_RESOLUTION} pixels", getattr(self, name))
        _require(self.edge_blur[0] > 0 and self.edge_blur[1] <= MAX_EDGE_BLUR, "edge_blur",
                 f"> 0 (a blur's σ) and at most {MAX_EDGE_BLUR:g}", self.edge_blur)
        _require(self.low_resolution[1] <= self.high_resolution[1], "low_resolution",
                 "no higher than high_resolution", self.low_resolution)
        _require(self.edge_shift >= 0, "edge_shift", "≥ 0", self.edge_shift)
        _require(0 <= self.scale_drift < 1, "scale_drift", "in [0, 1) (a factor 1 ± drift must "
                 "stay positive)", self.scale_drift)
        _require(self.high_scale_drift is None or 0 <= self.high_scale_drift < 1,
                 "high_scale_drift", "in [0, 1) or null", self.high_scale_drift)
        _require(0 <= self.holes < 1, "holes", "in [0, 1)", self.holes)


@dataclass(frozen=True)
class DataConfig:
    """Where samples come from and how batches are made."""

    scenes: int = 2000
    """Procedural scenes rendered (seeds `seed` … `seed + scenes − 1`), cached and reused."""
    scene_height: int = 768
    scene_width: int = 1024
    seed: int = 0
    """First procedural scene seed."""
    folder: str | None = None
    """A folder dataset in the layout `sddr eval` reads, trained on with the scenes; none if
    null. A relative path is relative to the working directory."""
    predictor: str = "simulated"
    """What makes the folder samples' low and high predictions: "simulated" (from their ground
    truth, with the degradations) or a predictor name in `sddr_core.predictors.PREDICTORS`
    run on their RGB, as it is, loaded from the Hugging Face cache at its pinned revision.
    Procedural scenes have no RGB and always use the simulator."""
    cache: str | None = None
    """Folder of the cached scenes and predictions (`training.data.cache`), shared by runs
    with the same data settings; null: `cache/` inside the run folder."""
    workers: int = 2
    """Processes that render scenes and simulate predictions into the cache; 0: the main one."""
    batch_size: int = 4
    """Samples per optimiser step over all processes (the paper does not state it)."""
    crop: int = 384
    """Side of the square training crop, on D0's grid (the paper does not state it)."""
    flips: bool = True
    """Random horizontal and vertical flips (GBDF's augmentation, method.md §5)."""
    inversion: float = 1 / 3
    """Probability of inverting the depth's sign (GBDF's p = 1/3)."""
    clean_copies: float = 0.0
    """Probability that a sample's two predictions are its exact ground truth, so N_r learns
    to leave inputs that need no correction alone (`augment.random_clean_copies`; ours)."""
    degradation: DegradationConfig = DegradationConfig()

    def __post_init__(self) -> None:
        limits = {"scenes": MAX_SCENES, "scene_height": MAX_SCENE_SIDE,
                  "scene_width": MAX_SCENE_SIDE, "batch_size": MAX_BATCH, "crop": MAX_SCENE_SIDE}
        for name, limit in limits.items():
            _require(1 <= getattr(self, name) <= limit, name, f"≥ 1 and at most {limit}",
                     getattr(self, name))
        _require(0 <= self.workers <= MAX_WORKERS, "workers", f"≥ 0 and at most {MAX_WORKERS}",
                 self.workers)
        _require(self.predictor == "simulated" or self.predictor in PREDICTORS, "predictor",
                 f"'simulated' or one of {sorted(PREDICTORS)}", self.predictor)
        _require(0 <= self.seed <= MAX_SEED, "seed", f"≥ 0 and at most {MAX_SEED}", self.seed)
        _require(self.crop <= min(self.scene_height, self.scene_width), "crop",
                 "no larger than the scenes' sides", self.crop)
        _require(0 <= self.inversion <= 1, "inversion", "a probability in [0, 1]", self.inversion)
        _require(0 <= self.clean_copies <= 1, "clean_copies", "a probability in [0, 1]",
                 self.clean_copies)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and what wraps each step."""

    lr: float = 1e-4
    """Learning rate (paper)."""
    weight_decay: float = 0.01
    """AdamW's decoupled weight decay (PyTorch's default; the paper does not state it)."""
    grad_clip: float | None = 1.0
    """Largest global gradient norm; null does not clip."""
    ema: float = 0.0
    """Decay of an exponential moving average of the weights; 0 keeps none."""
    mixed_precision: bool = True
    """bf16 or fp16 autocast on CUDA; ignored on CPU."""
    train_only: str | None = None
    """Train one head alone (`step_head`; the model section must give it channels), the rest
    of the network kept as `--init` gave it and run in evaluation mode; null trains all."""

    def __post_init__(self) -> None:
        _require(self.lr > 0, "lr", "> 0", self.lr)
        _require(self.train_only in (None, *TRAINABLE_HEADS), "train_only",
                 f"null or one of {list(TRAINABLE_HEADS)}", self.train_only)
        _require(self.weight_decay >= 0, "weight_decay", "≥ 0", self.weight_decay)
        _require(self.grad_clip is None or self.grad_clip > 0, "grad_clip", "> 0 or null",
                 self.grad_clip)
        _require(0 <= self.ema < 1, "ema", "in [0, 1)", self.ema)


@dataclass(frozen=True)
class ScheduleConfig:
    """The two phases (method.md §5) and the pseudo-labels of the second."""

    phase1_steps: int = 5000
    """Steps with L_gt alone (the paper's epoch 1, about half of phase 2's iterations)."""
    phase2_steps: int = 10000
    """Steps with L_gt, L_grad and L_fusion (Fig. 13's 10,000 self-distillation iterations)."""
    label_refresh: int = 1000
    """Phase-2 steps between two remakes of G_S from the current model (not stated in the
    paper)."""
    label_steps: int = STEPS
    """S, the coarse-to-fine steps of the label generator (the paper's labels use S = 3)."""
    label_scenes: int = 64
    """Scenes given fresh labels at each refresh; phase 2 trains on these until the next one
    (a refresh costs about a second per scene on 2 cores: labelling every scene each time
    would cost more than the training)."""
    labels: Literal["self", "ground_truth"] = "self"
    """Where G_S comes from: "self", the current model's coarse-to-fine edges on the degraded
    inputs (self-distillation, `training.labels`); "ground_truth", the ground truth's own
    gradients (∇GT), the upper bound self-distillation is measured against."""

    def __post_init__(self) -> None:
        for name in ("phase1_steps", "phase2_steps"):
            _require(0 <= getattr(self, name) <= MAX_STEPS_PER_PHASE, name,
                     f"≥ 0 and at most {MAX_STEPS_PER_PHASE}", getattr(self, name))
        _require(0 <= self.label_steps <= MAX_STEPS, "label_steps",
                 f"≥ 0 and at most {MAX_STEPS} (S = {MAX_STEPS} is {passes(MAX_STEPS)} network "
                 "passes per scene)", self.label_steps)
        _require(1 <= self.label_scenes <= MAX_SCENES, "label_scenes",
                 f"≥ 1 and at most {MAX_SCENES}", self.label_scenes)
        _require(self.phase1_steps + self.phase2_steps >= 1, "phase2_steps",
                 "≥ 1 when phase1_steps is 0", self.phase2_steps)
        _require(self.label_refresh >= 1, "label_refresh", "≥ 1", self.label_refresh)


@dataclass(frozen=True)
class LossesConfig:
    """The objective L_gt + λ1·L_grad + λ2·L_fusion, as `training.losses.loss_terms` takes it."""

    weights: LossWeights = LossWeights()
    options: LossOptions = LossOptions()

    def __post_init__(self) -> None:
        for name in ("grad", "fusion", "aux", "sides"):
            value = getattr(self.weights, name)
            _require(value >= 0, f"weights.{name}", "≥ 0", value)
        _require(0 <= self.options.gt_trim < 1, "options.gt_trim", "in [0, 1)",
                 self.options.gt_trim)
        _require(self.options.gt_gradient_weight >= 0, "options.gt_gradient_weight", "≥ 0",
                 self.options.gt_gradient_weight)
        _require(1 <= self.options.regions <= MAX_REGIONS, "options.regions",
                 f"≥ 1 and at most {MAX_REGIONS}", self.options.regions)
        levels = self.options.fusion_levels
        _require(len(levels) >= 1 and min(levels) >= 0 and len(set(levels)) == len(levels),
                 "options.fusion_levels", "a non-empty list of distinct levels ≥ 0", levels)


@dataclass(frozen=True)
class CheckpointConfig:
    """Atomic checkpoints in the run directory."""

    every: int = 1000
    """Steps between checkpoints (one is also written at the end)."""
    keep: int = 3
    """How many of the newest checkpoints are kept."""

    def __post_init__(self) -> None:
        for name in ("every", "keep"):
            _require(getattr(self, name) >= 1, name, "≥ 1", getattr(self, name))


@dataclass(frozen=True)
class ValidationConfig:
    """The validation pass on held-out procedural scenes (the paper's metrics for low, high and
    the model)."""

    every: int = 1000
    """Steps between validation passes (one also runs before the first step and at the end)."""
    scenes: int = 8
    """Held-out scenes, rendered at the training scenes' size."""
    seed: int = 1_000_000
    """First held-out seed; the range must not meet the training seeds."""

    def __post_init__(self) -> None:
        for name in ("every", "scenes"):
            _require(getattr(self, name) >= 1, name, "≥ 1", getattr(self, name))
        _require(self.scenes <= MAX_SCENES, "scenes", f"at most {MAX_SCENES}", self.scenes)
        _require(0 <= self.seed <= MAX_SEED, "seed", f"≥ 0 and at most {MAX_SEED}", self.seed)


@dataclass(frozen=True)
class LoggingConfig:
    """Progress, the JSONL log and TensorBoard."""

    every: int = 50
    """Steps between two logged steps."""
    shares_every: int = 50
    """Steps between two measurements of each loss term's gradient norm at the network's
    output and its share (`training.losses.balance`); 0: never. One measurement costs about
    a fifth of a step (docs/training.md), so every 50 steps costs under 1 %."""
    tensorboard: bool = True
    """Also write TensorBoard events, when `torch.utils.tensorboard` imports."""

    def __post_init__(self) -> None:
        _require(self.every >= 1, "every", "≥ 1", self.every)
        _require(self.shares_every >= 0, "shares_every", "≥ 0 (0: never)", self.shares_every)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved whole with each checkpoint."""

    seed: int = 0
    """Seed of model initialisation, data order and augmentation."""
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    losses: LossesConfig = LossesConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    validation: ValidationConfig = ValidationConfig()
    logging: LoggingConfig = LoggingConfig()

    def __post_init__(self) -> None:
        _require(0 <= self.seed <= MAX_SEED, "seed", f"≥ 0 and at most {MAX_SEED}", self.seed)
        train = range(self.data.seed, self.data.seed + self.data.scenes)
        held_out = range(self.validation.seed, self.validation.seed + self.validation.scenes)
        _require(train.stop <= held_out.start or held_out.stop <= train.start, "validation.seed",
                 f"outside the training seeds {train.start}–{train.stop - 1}",
                 self.validation.seed)
        stride = PRESETS[self.model.preset].stride
        _require(self.data.crop % stride == 0, "data.crop", f"a multiple of {stride}, the "
                 "network's stride (so crops need no padding)", self.data.crop)
        head = self.optim.train_only
        _require(head is None or getattr(self.model, head) > 0, "optim.train_only",
                 f"a head the network has (model.{head} > 0)", head)
        levels = self.model.architecture().omega_levels
        _require(max(self.losses.options.fusion_levels) < levels, "losses.options.fusion_levels",
                 f"levels below {levels}, the network's Ω levels (0 is the finest)",
                 self.losses.options.fusion_levels)


class _Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses duplicate keys and reads ``1e-4`` as a number.

    YAML 1.1 (PyYAML) reads a float without a dot, such as ``1e-4``, as a string; YAML 1.2
    and Python read it as a number, as a learning rate is usually written.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {shown(key)}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _describe(hint: Any) -> str:
    """How an expected type reads in an error message."""
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint in names:
        return names[hint]
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    if get_origin(hint) is Literal:
        return f"one of {list(get_args(hint))}"
    return "a list"


def _convert(hint: Any, value: Any, key: str) -> Any:
    """`value` as the type `hint`, or a `ConfigError` naming `key`.

    Booleans are not integers here, although Python treats them as such; integers are
    numbers.
    """
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(hint):
            return None
        (inner,) = [arg for arg in get_args(hint) if arg is not type(None)]
        return _convert(inner, value, key)
    if origin is tuple:
        items = get_args(hint)
        expected = "a list" if items[1:] == (...,) else f"a list of {len(items)}"
        if isinstance(value, list) and items[1:] == (...,):
            items = items[:1] * len(value)
        if not isinstance(value, list) or len(value) != len(items):
            raise ConfigError(key, f"expected {expected}, got {shown(value)}")
        return tuple(_convert(item_hint, item, f"{key}[{i}]")
                     for i, (item_hint, item) in enumerate(zip(items, value, strict=True)))
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool)
        and math.isfinite(value),
        str: isinstance(value, str),
    }
    if origin is Literal:
        if isinstance(value, str) and value in get_args(hint):
            return value
    elif hint in ok:
        if ok[hint]:
            return hint(value)
    else:
        raise TypeError(f"{key}: config fields of type {hint!r} are not supported")
    raise ConfigError(key, f"expected {_describe(hint)}, got {shown(value)}")


def _build(cls: type, data: Any, key: str) -> Any:
    """An instance of the dataclass `cls` from a mapping, its fields converted recursively."""
    names = [spec.name for spec in dataclasses.fields(cls)]
    if not isinstance(data, dict):
        raise ConfigError(key, f"expected a mapping with keys {', '.join(names)}; "
                               f"got {shown(data)}")
    for name in data:
        if name not in names:
            raise ConfigError(_join(key, str(name)),
                              f"unknown key; known keys: {', '.join(names)}")
    hints = get_type_hints(cls)
    values = {name: _convert(hints[name], data[name], _join(key, name))
              for name in names if name in data}
    try:
        return cls(**values)
    except ConfigError as error:  # a range check of `cls`, naming its own field
        raise ConfigError(_join(key, error.key), error.reason) from None


def parse_config(text: str, source: str = "<config>") -> TrainConfig:
    """A `TrainConfig` from YAML text; `source` names it in error messages.

    Raises
    ------
    ConfigError
        On a YAML syntax error, an empty text (write ``{}`` for all defaults: an empty file is
        more often a mistake than a choice), a text that is not a mapping, or any unknown,
        mistyped or out-of-range value, naming the value's dotted key.
    """
    data = _parse_yaml(text, "", source)
    if data is None:
        raise ConfigError("", "the config is empty; write {} to take every default", source)
    try:
        return _build(TrainConfig, data, "")
    except ConfigError as error:
        raise ConfigError(error.key, error.reason, source) from None


def _parse_yaml(text: str, key: str, source: str) -> Any:
    """Plain data from YAML text; a syntax error is a `ConfigError` for `key`."""
    stream = io.StringIO(text)
    stream.name = source  # YAML's error marks name it
    try:
        return yaml.load(stream, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        raise ConfigError(key, f"not valid YAML: {error}", source) from None


def load_config(path: str | Path) -> TrainConfig:
    """A `TrainConfig` from a YAML file, checked in full (see `parse_config`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError("", f"cannot read the config: {error}", str(path)) from None
    return parse_config(text, source=str(path))


def override(config: TrainConfig, assignments: Sequence[str]) -> TrainConfig:
    """`config` with ``dotted.key=value`` assignments applied, checked like a file.

    Each value is YAML (``optim.lr=3e-4``, ``data.folder=null``,
    ``data.degradation.edge_blur=[1, 3]``), so a command line can change any field without a
    new config file.
    """
    data = config_to_dict(config)
    for assignment in assignments:
        key, equals, text = assignment.partition("=")
        if not equals or not key:
            raise ConfigError(assignment, "expected dotted.key=value", "override")
        *sections, name = key.split(".")
        section = data
        for part in sections:
            if not isinstance(section.get(part), dict):
                section[part] = {}  # left for _build to reject, naming the key
            section = section[part]
        section[name] = _parse_yaml(text, key, "override")
    try:
        return _build(TrainConfig, data, "")
    except ConfigError as error:
        raise ConfigError(error.key, error.reason, "override") from None


def config_to_dict(config: Any) -> Any:
    """A config (or any part of one) as plain dicts, lists and scalars, for YAML or JSON."""
    if dataclasses.is_dataclass(config):
        return {spec.name: config_to_dict(getattr(config, spec.name))
                for spec in dataclasses.fields(config)}
    if isinstance(config, tuple):
        return [config_to_dict(item) for item in config]
    return config


def dump(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML that `load_config` reads back equal, atomically."""
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False, allow_unicode=True,
                          default_flow_style=None)
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
