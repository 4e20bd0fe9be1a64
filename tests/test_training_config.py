"""Training configs: valid files load and round-trip; every bad value fails naming its key."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from sddr_core.errors import InputError
from training.config import (
    ConfigError,
    TrainConfig,
    config_to_dict,
    dump,
    load_config,
    override,
    parse_config,
)

ROOT = Path(__file__).resolve().parents[1]

FULL = """
seed: 7
model: {preset: small, drop_path: 0.05}
data:
  scenes: 10
  scene_height: 200
  scene_width: 300
  seed: 5
  folder: /data/hr-wsi
  cache: /data/cache
  workers: 5
  batch_size: 3
  crop: 128
  flips: false
  inversion: 0.25
  clean_copies: 0.1
  degradation:
    low_resolution: [100, 200]
    high_resolution: [300, 600]
    noise_scale: [1, 3]
    edge_blur: [0.5, 2.5]
    edge_shift: 1.5
    scale_drift: 0.2
    holes: 0.05
optim: {lr: 3e-4, weight_decay: 0.0, grad_clip: null, ema: 0.999, mixed_precision: false}
schedule: {phase1_steps: 11, phase2_steps: 12, label_refresh: 4, label_steps: 2, label_scenes: 9,
           labels: ground_truth}
losses:
  weights: {grad: 0.25, fusion: 0.0, aux: 0.0}
  options: {regions: 6, fusion_levels: [0, 1, 2], grad_variant: code, fusion_variant: code}
checkpoint: {every: 5, keep: 1}
validation: {every: 6, scenes: 3, seed: 15}
logging: {every: 2, shares_every: 3, tensorboard: false}
"""


def test_full_file_sets_every_field_and_round_trips(tmp_path: Path) -> None:
    config = parse_config(FULL)
    # Each value differs from its default, so a field the parser dropped would show here.
    for section in dataclasses.fields(TrainConfig):
        value = getattr(config, section.name)
        assert value != section.default, section.name
    assert config.optim.lr == 3e-4  # YAML 1.1 alone would read "3e-4" as a string
    assert config.optim.grad_clip is None
    assert config.data.degradation.noise_scale == (1.0, 3.0)
    assert isinstance(config.data.degradation.noise_scale[0], float)
    assert config.losses.options.fusion_levels == (0, 1, 2)
    assert config.schedule.labels == "ground_truth"
    dump(config, tmp_path / "run" / "config.yaml")
    assert load_config(tmp_path / "run" / "config.yaml") == config
    assert parse_config(FULL.replace("seed: 7", "")).seed == TrainConfig().seed


def test_defaults_are_the_papers_values() -> None:
    config = parse_config("{}")
    assert config == TrainConfig()
    assert config.optim.lr == 1e-4
    assert (config.losses.weights.grad, config.losses.weights.fusion) == (0.5, 0.1)
    assert config.schedule.label_steps == 3
    assert config.data.inversion == pytest.approx(1 / 3)
    assert parse_config(json.dumps(config_to_dict(config))) == config  # JSON is YAML too


def test_smoke_config_loads() -> None:
    config = load_config(ROOT / "training" / "configs" / "smoke.yaml")
    assert config.schedule.phase1_steps >= 1 and config.schedule.phase2_steps >= 1
    assert config.checkpoint.every <= config.schedule.phase1_steps + config.schedule.phase2_steps


@pytest.mark.parametrize(("text", "key", "words"), [
    ("seeds: 1", "seeds", "unknown key; known keys: seed, model"),
    ("schedule: {phase1_stepz: 3}", "schedule.phase1_stepz", "known keys: phase1_steps"),
    ("losses: {weights: {gradient: 1}}", "losses.weights.gradient", "known keys: grad, fusion"),
    ("optim: {lr: fast}", "optim.lr", "expected a number, got 'fast'"),
    ("seed: true", "seed", "expected an integer, got True"),
    ("data: {batch_size: 2.0}", "data.batch_size", "expected an integer"),
    ("data: {flips: 1}", "data.flips", "expected true or false"),
    ("data: {folder: 3}", "data.folder", "expected a string"),
    ("optim: {lr: .nan}", "optim.lr", "expected a number"),
    ("model: small", "model", "expected a mapping with keys preset"),
    ("data: {degradation: {edge_blur: [1, 2, 3]}}", "data.degradation.edge_blur",
     "expected a list of 2"),
    ("losses: {options: {fusion_levels: [0, x]}}", "losses.options.fusion_levels[1]",
     "expected an integer"),
    ("losses: {options: {grad_variant: papers}}", "losses.options.grad_variant",
     "expected one of ['paper', 'code']"),
    ("model: {preset: huge}", "model.preset", "must be one of ['base', 'small']"),
    ("schedule: {labels: gt}", "schedule.labels", "expected one of ['self', 'ground_truth']"),
    ("optim: {lr: 0}", "optim.lr", "must be > 0"),
    ("optim: {ema: 1}", "optim.ema", "must be in [0, 1)"),
    ("optim: {grad_clip: -1}", "optim.grad_clip", "must be > 0 or null"),
    ("data: {scenes: 0}", "data.scenes", "must be ≥ 1"),
    ("data: {crop: 1000}", "data.crop", "no larger than the scenes' sides"),
    ("data: {crop: 200}", "data.crop", "a multiple of 128"),
    ("model: {drop_path: 1.5}", "model.drop_path", "in [0, 1) or null"),
    ("model: {correction_filter_radius: -1}", "model.correction_filter_radius", "≥ 0"),
    ("model: {preset: base, correction_filter_radius: 4}", "model.correction_filter_radius",
     "unless the preset is residual"),
    ("model: {preset: base, step_head: 8}", "model.step_head", "unless the preset is residual"),
    ("model: {preset: small, full_resolution_head: 65}", "model.full_resolution_head",
     "from 0 to 64"),
    ("optim: {train_only: decoder}", "optim.train_only", "null or one of"),
    ("model: {preset: small}\noptim: {train_only: step_head}", "optim.train_only",
     "model.step_head > 0"),
    ("schedule: {label_scenes: 0}", "schedule.label_scenes", "≥ 1"),
    ("data: {workers: -1}", "data.workers", "≥ 0"),
    ("data: {clean_copies: 1.5}", "data.clean_copies", "a probability in [0, 1]"),
    ("data: {degradation: {noise_scale: [2, 1]}}", "data.degradation.noise_scale", "min ≤ max"),
    ("data: {degradation: {scale_drift: 1.5}}", "data.degradation.scale_drift",
     "must be in [0, 1)"),
    ("data: {degradation: {high_scale_drift: 1.0}}", "data.degradation.high_scale_drift",
     "must be in [0, 1) or null"),
    ("losses: {weights: {grad: -0.5}}", "losses.weights.grad", "must be ≥ 0"),
    ("losses: {options: {fusion_levels: [1, 1]}}", "losses.options.fusion_levels", "distinct"),
    ("schedule: {phase1_steps: 0, phase2_steps: 0}", "schedule.phase2_steps", "≥ 1"),
    ("checkpoint: {keep: 0}", "checkpoint.keep", "must be ≥ 1"),
    ("logging: {shares_every: -1}", "logging.shares_every", "must be ≥ 0 (0: never)"),
    ("validation: {seed: 1999, scenes: 2}", "validation.seed", "outside the training seeds"),
    # Values that once ended in a raw traceback or never ended: each has an upper bound.
    ("seed: 1000000000000000000000000", "seed", "at most 4294967295"),
    ("data: {seed: 4294967296}", "data.seed", "at most 4294967295"),
    ("validation: {seed: 4294967296}", "validation.seed", "at most 4294967295"),
    ("data: {degradation: {edge_blur: [0, 0]}}", "data.degradation.edge_blur", "> 0"),
    ("data: {degradation: {edge_blur: [1, 1000]}}", "data.degradation.edge_blur", "at most 64"),
    ("data: {degradation: {high_resolution: [768, 100000]}}",
     "data.degradation.high_resolution", "at most 8192"),
    ("losses: {options: {fusion_levels: [7]}}", "losses.options.fusion_levels",
     "levels below 6, the network's Ω levels"),
    ("losses: {options: {fusion_levels: [0, 6]}}", "losses.options.fusion_levels", "below 6"),
    ("data: {scene_height: 50000}", "data.scene_height", "at most 4096"),
    ("data: {scenes: 100000000}", "data.scenes", "at most 100000"),
    ("data: {batch_size: 1000000000}", "data.batch_size", "at most 1024"),
    ("data: {workers: 100000}", "data.workers", "at most 256"),
    ("schedule: {label_steps: 50}", "schedule.label_steps", "at most 8"),
    ("schedule: {label_scenes: 1000000000}", "schedule.label_scenes", "at most 100000"),
    ("schedule: {phase2_steps: 100000000000}", "schedule.phase2_steps", "at most 10000000"),
    ("losses: {options: {regions: 100000}}", "losses.options.regions", "at most 64"),
    ("validation: {scenes: 1000000000}", "validation.scenes", "at most 100000"),
])
def test_bad_value_names_its_key(text: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="bad.yaml")
    assert caught.value.key == key
    assert str(caught.value).startswith(f"bad.yaml: {key}: ")
    assert words in str(caught.value)


@pytest.mark.parametrize(("text", "words"), [
    ("", "empty; write {}"),
    ("# only a comment\n", "empty; write {}"),
    ("[1, 2]", "expected a mapping"),
    ("optim: {lr: 1e-4", "not valid YAML"),
    ("optim:\n  lr: 1.0e-4\n  lr: 2.0e-4\n", "duplicate key 'lr'"),
    ("a: !!python/object:os.system {}", "not valid YAML"),  # safe loading only
])
def test_bad_file_fails_as_a_whole(text: str, words: str) -> None:
    with pytest.raises(InputError, match="^bad.yaml: ") as caught:
        parse_config(text, source="bad.yaml")
    assert words in str(caught.value)


def test_an_alias_bomb_is_refused_with_a_short_message() -> None:
    """308 bytes of YAML whose value prints as 351 MB: the error once repeated all of it."""
    anchors = ['&a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, name in zip("abcdefg", "bcdefgh", strict=True):
        anchors.append(f"&{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    with pytest.raises(ConfigError) as caught:
        parse_config("data: {folder: [" + ", ".join(anchors) + "]}\n", source="bomb.yaml")
    assert str(caught.value).startswith("bomb.yaml: data.folder: expected a string, got [[")
    assert len(str(caught.value)) < 1000


def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.yaml: cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_range_checks_also_guard_configs_made_in_python() -> None:
    with pytest.raises(ConfigError, match="^lr: must be > 0"):
        dataclasses.replace(TrainConfig().optim, lr=-1.0)


def test_override_sets_dotted_keys_with_yaml_values() -> None:
    config = override(parse_config(FULL), [
        "optim.lr=2e-4", "data.folder=null", "data.degradation.edge_blur=[1, 3]",
        "model.preset=base",
    ])
    assert config.optim.lr == 2e-4
    assert config.data.folder is None
    assert config.data.degradation.edge_blur == (1.0, 3.0)
    assert config.model.preset == "base"
    base = parse_config(FULL)
    assert override(base, []) == base
    assert (config.optim.ema, config.data.degradation.noise_scale) == (
        base.optim.ema, base.data.degradation.noise_scale)  # siblings keep their values
    assert (config.seed, config.schedule, config.losses) == (base.seed, base.schedule, base.losses)


@pytest.mark.parametrize(("assignment", "key", "words"), [
    ("optim.lrr=1", "optim.lrr", "unknown key"),
    ("nope.x=1", "nope", "unknown key"),
    ("seed.x=1", "seed", "expected an integer"),
    ("optim.lr", "optim.lr", "expected dotted.key=value"),
    ("optim.lr=[1", "optim.lr", "not valid YAML"),
    ("optim.ema=1.5", "optim.ema", "must be in [0, 1)"),
])
def test_bad_override_names_its_key(assignment: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError, match=f"^override: {re.escape(key)}: ") as caught:
        override(TrainConfig(), [assignment])
    assert words in str(caught.value)
