"""`sddr bench --photo`: a real `sddr` process times a photo with a transformers predictor and
splits each mode's seconds into predictor, N_r, edge snapping and the rest."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sddr_core.inference.windows import passes
from tests.test_batch import tiny_predictor_folder

ROOT = Path(__file__).resolve().parents[1]


def _bench(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sddr_core.cli.main", "bench", "--photo",
                           "--size", "96", "--steps", "1", *arguments],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def predictor_folder(tmp_path_factory) -> str:
    return str(tiny_predictor_folder(tmp_path_factory.mktemp("predictor") / "da"))


def test_bench_photo_reports_each_mode_split(predictor_folder):
    result = _bench("--predictor", predictor_folder, "--repeats", "2", "--resolution-cap", "1",
                    "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["mode"], report["size"], report["repeats"]) == ("photo", 96, 2)
    assert report["resolution_cap"] == 1.0
    for mode, runs in (("one_stage", 2), ("two_stage", 1 + passes(1))):  # + the low run
        split = report[mode]
        assert split["predictor_runs"] == runs == sum(split["predictor_resolutions"].values())
        assert split["predictor_seconds"] > 0 and split["refiner_seconds"] > 0
        assert split["snapping_seconds"] > 0 and split["rest_seconds"] >= 0
        assert split["predictor_seconds"] + split["refiner_seconds"] + split["snapping_seconds"] \
            + split["rest_seconds"] == pytest.approx(split["seconds"])
        # the low run is at r̂ (518); Eq. 11's runs are capped at the photo's own 96 px or less
        highs = dict(split["predictor_resolutions"])
        assert highs.pop("518") == 1
        assert max(map(int, highs)) <= 96
    assert report["ratio_two_to_one"] == pytest.approx(
        report["two_stage"]["seconds"] / report["one_stage"]["seconds"])


def test_bench_photo_prints_the_split(predictor_folder):
    result = _bench("--predictor", predictor_folder)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{predictor_folder} + N_r (small), 96×96 photo on cpu")
    assert lines[0].endswith("resolution cap none:")  # the default (decision 280)
    assert lines[1].startswith("  one-stage: ") and "predictor" in lines[1] and "N_r" in lines[1]
    assert "snapping" in lines[1]
    assert lines[2].startswith("  two-stage: ") and "(6 runs: " in lines[2]


def test_bench_photo_names_an_unknown_predictor():
    result = _bench("--predictor", "no-such-model")
    assert result.returncode == 2
    assert "predictor 'no-such-model' is not known" in result.stderr


def test_bench_photo_refuses_a_bad_cap_by_name(predictor_folder):
    result = _bench("--predictor", predictor_folder, "--resolution-cap", "0")
    assert result.returncode == 2
    assert "--resolution-cap: 0: choose a number > 0" in result.stderr
