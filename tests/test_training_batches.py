"""The sample plan: a pure function of the sample number, phases, pools and crops."""

import dataclasses

import pytest

from training.config import TrainConfig, parse_config
from training.data.augment import FLIPS
from training.data.batches import Schedule

CONFIG = parse_config("""
seed: 4
model: {preset: small}
data: {scenes: 6, scene_height: 200, scene_width: 300, batch_size: 4, crop: 128}
schedule: {phase1_steps: 5, phase2_steps: 7, label_refresh: 3, label_scenes: 2}
""")
SHAPES = [(200, 300), (200, 300), (160, 260), (200, 300), (128, 128), (300, 200)]


def _schedule(config: TrainConfig = CONFIG) -> Schedule:
    return Schedule(config, SHAPES)


def test_a_plan_depends_on_the_sample_number_alone():
    first, second = _schedule(), _schedule()
    numbers = range(CONFIG.data.batch_size * 12)
    forward = [first.plan(g) for g in numbers]
    backward = [second.plan(g) for g in reversed(numbers)][::-1]
    assert forward == backward


def test_phase_one_visits_every_scene_once_per_epoch():
    schedule = _schedule()
    scenes = [schedule.plan(g).scene for g in range(len(SHAPES) * 3)]
    for epoch in range(3):
        assert sorted(scenes[epoch * len(SHAPES):(epoch + 1) * len(SHAPES)]) == list(
            range(len(SHAPES)))


def test_phase_two_trains_on_the_pool_of_its_refresh():
    schedule = _schedule()
    batch = CONFIG.data.batch_size
    for step in range(CONFIG.schedule.phase1_steps, schedule.total):
        refresh = schedule.refresh_index(step)
        assert refresh == (step - CONFIG.schedule.phase1_steps) // CONFIG.schedule.label_refresh
        pool = schedule.label_pool(refresh)
        assert len(pool) == CONFIG.schedule.label_scenes
        assert {schedule.plan(g).scene for g in range(step * batch, (step + 1) * batch)} <= set(
            pool)
    assert schedule.refresh_index(CONFIG.schedule.phase1_steps - 1) is None
    pools = {tuple(schedule.label_pool(k)) for k in range(3)}
    assert len(pools) > 1  # a fresh draw at each refresh


def test_crops_lie_inside_their_scene_and_use_every_flip():
    schedule = _schedule()
    plans = [schedule.plan(g) for g in range(400)]
    for plan in plans:
        height, width = SHAPES[plan.scene]
        assert 0 <= plan.top <= height - CONFIG.data.crop
        assert 0 <= plan.left <= width - CONFIG.data.crop
    assert {plan.flip for plan in plans} == set(FLIPS)
    no_flips = dataclasses.replace(CONFIG, data=dataclasses.replace(CONFIG.data, flips=False))
    assert {_schedule(no_flips).plan(g).flip for g in range(100)} == {()}


@pytest.mark.parametrize("seed", [5, 6])
def test_another_seed_gives_another_order(seed):
    other = _schedule(dataclasses.replace(CONFIG, seed=seed))
    assert [other.plan(g) for g in range(24)] != [_schedule().plan(g) for g in range(24)]


@pytest.mark.parametrize("clean_copies", [0.0, 1.0])
def test_a_clean_copy_sample_gives_its_target_as_both_inputs(tmp_path, clean_copies):
    from training.data.batches import CropDataset
    from training.data.cache import build_cache, cache_folder, procedural_sources

    config = parse_config(f"""
data: {{scenes: 1, scene_height: 128, scene_width: 160, batch_size: 1, crop: 128,
        inversion: 0.5, clean_copies: {clean_copies}}}
schedule: {{phase1_steps: 6, phase2_steps: 0}}
""")
    sources = procedural_sources(config.data.seed, config.data.scenes)
    entries, skipped = build_cache(cache_folder(tmp_path, config.data), sources, config.data)
    assert not skipped
    dataset = CropDataset(entries, Schedule(config, CropDataset.shapes(entries)))
    signs = set()
    for g in range(6):
        item = dataset[g]
        assert bool(item["mask"].all())
        copied = [bool((item[name] == item["target"]).all()) for name in ("low", "high")]
        assert copied == [clean_copies == 1.0] * 2
        signs.add(float(item["target"].sum().sign()))
    assert signs == {-1.0, 1.0}  # sign inversion still applies, to inputs and target alike


def test_the_cache_folder_changes_with_a_degradation_but_not_with_one_left_null(tmp_path):
    from training.config import override
    from training.data.cache import cache_folder

    config = parse_config("data: {scenes: 1}")
    drifted = override(config, ["data.degradation.high_scale_drift=0.3"])
    wider = override(config, ["data.degradation.scale_drift=0.2"])
    base = cache_folder(tmp_path, config.data)
    # The name the default degradations had before `high_scale_drift` existed: a new option
    # left at null must not orphan the caches on users' disks.
    assert base.name == "scenes-11a016334ce8"
    assert cache_folder(tmp_path, drifted.data) != base
    assert cache_folder(tmp_path, wider.data) not in (base, cache_folder(tmp_path, drifted.data))
