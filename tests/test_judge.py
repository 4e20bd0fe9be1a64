"""`python -m training judge`: the held-out scores and no-harm checks that decide what ships,
on tiny procedural scenes with a tiny random network."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sddr_core.errors import InputError
from sddr_core.evaluation.baselines import resize_prediction
from sddr_core.evaluation.metrics import evaluate
from sddr_core.files.weights import save_network
from sddr_core.inference.refiner import Refiner
from sddr_core.network import RefinementNetwork
from tests.tiny import TINY
from training.checkpoint import load_trained
from training.config import load_config, parse_config
from training.data.cache import cache_folder, read_entry
from training.judge import FRESH_SETS, SceneSet, fresh_set, judge, no_harm, scene_sets

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
model: {preset: small}
data:
  scenes: 4
  scene_height: 128
  scene_width: 160
  crop: 128
  workers: 0
  degradation: {low_resolution: [32, 48], high_resolution: [128, 160]}
validation: {scenes: 2, seed: 5000}
"""
SIZE = (64, 96)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(config path, weights path) of a tiny config and a tiny random network."""
    folder = tmp_path_factory.mktemp("judge")
    torch.manual_seed(0)
    weights = save_network(RefinementNetwork(TINY), folder / "tiny.safetensors")
    config = folder / "tiny.yaml"
    config.write_text(CONFIG)
    return config, weights


def _judge_command(*arguments: str) -> subprocess.CompletedProcess:
    """The command as a user runs it: from the repository root, no PYTHONPATH."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "training", "judge", *arguments], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


def test_command_scores_both_sets_each_labelled_with_its_seeds(files, tmp_path):
    config, weights = files
    result = _judge_command(str(weights), "--config", str(config), "--cache", str(tmp_path),
                            "--fresh", "--scenes", "2", "--one-stage-only",
                            "--no-harm-size", "64x96")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "## validation: 2 scenes (seeds 5000–5001)" in out
    first = fresh_set(0).first_seed
    assert f"## fresh held-out set 0: 2 scenes (seeds {first}–{first + 1})" in out
    validation, fresh = out.split("## fresh held-out")
    for section in (validation, fresh):
        rows = [line.split(" | ")[0] for line in section.splitlines() if line.startswith("| ")]
        assert rows == ["|", "| low input", "| high input", "| guided", f"| {weights}",
                        "| no harm", f"| {weights}"]
    assert "two-stage" not in out


def test_command_refuses_a_fresh_set_that_does_not_exist(files, tmp_path):
    config, weights = files
    result = _judge_command(str(weights), "--config", str(config), "--cache", str(tmp_path),
                            "--fresh", str(FRESH_SETS))
    assert result.returncode != 0
    assert f"fresh set {FRESH_SETS}: choose a whole number 0 to {FRESH_SETS - 1}" in result.stderr


def test_without_fresh_only_the_validation_set_is_scored(files, tmp_path):
    config, weights = files
    result = _judge_command(str(weights), "--config", str(config), "--cache", str(tmp_path),
                            "--scenes", "1", "--one-stage-only", "--no-harm-size", "64x96")
    assert result.returncode == 0, result.stderr
    assert "## validation: 1 scene (seeds 5000–5000)" in result.stdout
    assert "fresh" not in result.stdout


@pytest.mark.parametrize(("arguments", "named"), [
    (("--scenes", "3"), "--scenes 3: choose 1 to 2"),
    (("--scenes", "0"), "--scenes 0: choose 1 to 2"),
    (("--no-harm-size", "64"), "--no-harm-size '64': give HxW"),
    (("--no-harm-size", "8x8"), "--no-harm-size '8x8': each side"),
])
def test_bad_options_exit_2_naming_the_option(files, tmp_path, arguments, named):
    config, weights = files
    result = _judge_command(str(weights), "--config", str(config), "--cache", str(tmp_path),
                            *arguments)
    assert result.returncode == 2
    assert named in result.stderr


def test_scores_are_the_metrics_of_the_refined_cached_inputs(files, tmp_path):
    config_path, weights = files
    config = load_config(config_path)
    scenes = SceneSet("validation", 5000, 1)
    judgement = judge([str(weights)], config, tmp_path, scenes, size=SIZE)
    entry = read_entry(cache_folder(tmp_path, config.data) / "procedural-0005000.safetensors")
    refined = Refiner(load_trained(weights), device="cpu", dtype="fp32").refine(
        entry.low, entry.high, out_size=entry.depth.shape)
    expected = evaluate(refined, entry.depth, entry.valid, space="disparity")
    high = evaluate(resize_prediction(entry.high, entry.depth.shape), entry.depth, entry.valid,
                    space="disparity")
    for key in ("rel", "ord", "d3r", "boundary_f1"):
        assert judgement.scores[str(weights)][key] == pytest.approx(expected[key], nan_ok=True)
        assert judgement.scores["high input"][key] == pytest.approx(high[key], nan_ok=True)
    two_stage = judgement.scores[f"{weights}, two-stage"]
    assert set(two_stage) == set(expected) and np.isfinite(two_stage["rel"])


class _Passes:
    """A stand-in refiner that returns one of its inputs unchanged."""

    def __init__(self, which: str) -> None:
        self.which = which

    def refine(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        return {"low": low, "high": high}[self.which]


def test_no_harm_of_a_refiner_that_returns_its_high_input():
    harm = no_harm(_Passes("high"), [5000, 5001], SIZE)
    assert harm["clean_mean"] == harm["clean_p99"] == harm["clean_edges_invented"] == 0
    assert harm["distorted_output_rel"] == harm["distorted_high_rel"]
    assert harm["distorted_high_rel"] > harm["distorted_low_rel"]  # the distortion shows


def test_no_harm_of_a_refiner_that_returns_its_low_input():
    harm = no_harm(_Passes("low"), [5000, 5001], SIZE)
    assert harm["distorted_output_rel"] == harm["distorted_low_rel"]
    assert harm["clean_mean"] == 0  # on clean copies low is the exact map too


def test_a_set_that_meets_the_training_seeds_is_refused_naming_both():
    data = yaml.safe_load(CONFIG)
    data["data"].update(seed=fresh_set(0).first_seed - 2, scenes=4)
    config = parse_config(yaml.safe_dump(data))
    assert len(scene_sets(config)) == 1  # the validation set alone is fine
    assert len(scene_sets(config, fresh=1)) == 2  # set 1 starts 1,000 seeds later
    with pytest.raises(InputError, match=r"fresh held-out set 0 seeds 3000000–3000015 meet "
                                         r"the config's training seeds 2999998–3000001"):
        scene_sets(config, fresh=0)


def test_the_fresh_seeds_meet_no_shipped_configs_seeds():
    for path in sorted((ROOT / "training" / "configs").glob("*.yaml")):
        config = load_config(path)
        for number in (0, 1, FRESH_SETS - 1):
            fresh = scene_sets(config, fresh=number)[1].seeds  # raises on the training seeds
            validation = scene_sets(config)[0].seeds
            assert fresh.start >= validation.stop or fresh.stop <= validation.start, path
            assert fresh.stop <= 4_000_004  # the sample scene's seeds start there


@pytest.mark.parametrize("number", [-1, FRESH_SETS, 1.5, True])
def test_a_fresh_set_number_out_of_range_is_refused(number):
    with pytest.raises(InputError, match=f"fresh set {number!r}: choose a whole number"):
        fresh_set(number)


def test_fresh_sets_do_not_overlap():
    sets = [fresh_set(number).seeds for number in range(FRESH_SETS)]
    assert all(a.stop <= b.start for a, b in zip(sets[:-1], sets[1:], strict=True))
