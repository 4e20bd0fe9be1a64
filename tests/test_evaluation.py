"""`sddr eval` end to end: baselines, the runner, the report files, progress and the CLI."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from sddr_core.cli.main import main
from sddr_core.cli.sample import sample_scene
from sddr_core.errors import InputError
from sddr_core.evaluation import runner
from sddr_core.evaluation.baselines import guided_fusion, resize_prediction
from sddr_core.evaluation.datasets import DepthFolder
from sddr_core.evaluation.metrics import METRIC_KEYS
from sddr_core.evaluation.runner import (
    METHODS,
    evaluate_dataset,
    markdown_table,
    parse_methods,
    write_report,
)
from sddr_core.inference.refiner import Refiner
from sddr_core.maps.edge_snap import snap_edges
from sddr_core.network.model import RefinementNetwork
from tests.tiny import TINY

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PAPER_ORDER = ("delta1", "rel", "ord", "d3r", "boundary_f1", "flying", "sqrel", "rmse", "log10",
               "delta2", "delta3")
PAPER_TITLES = ("δ1", "REL", "ORD", "D³R", "boundary", "flying", "SqRel", "RMSE", "log10", "δ2",
                "δ3")
FAST = {"low_resolution": 32, "high_resolution": 96}  # scenes are 64×96: low really is low
FAST_CLI = ["--low-resolution", "32", "--high-resolution", "96"]


def _write_folder(root: Path, scenes: dict[str, np.ndarray | None]) -> Path:
    """A DepthFolder of 64×96 sample scenes; a None entry gets all-zero (invalid) depth."""
    (root / "images").mkdir(parents=True)
    (root / "depth").mkdir()
    for seed, (name, depth) in enumerate(scenes.items()):
        rgb, scene_depth = sample_scene(64, 96, seed)
        assert cv2.imwrite(str(root / "images" / f"{name}.png"), rgb[..., ::-1].copy())
        np.save(root / "depth" / f"{name}.npy",
                scene_depth if depth is None else depth.astype(np.float32))
    return root


def _is_png(path: Path) -> bool:
    return path.read_bytes().startswith(PNG_SIGNATURE) and cv2.imread(str(path)) is not None


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return _write_folder(tmp_path_factory.mktemp("scenes"), dict.fromkeys(("a", "b", "c")))


@pytest.fixture(scope="module")
def folder_with_empty(tmp_path_factory) -> Path:
    scenes = {"a": None, "empty": np.zeros((64, 96)), "b": None}
    return _write_folder(tmp_path_factory.mktemp("with_empty"), scenes)


@pytest.fixture(scope="module")
def report(folder) -> dict:
    return evaluate_dataset(DepthFolder(folder), ("low", "high", "guided"), seed=0, **FAST)


def _step(height: int, width: int) -> np.ndarray:
    return (np.arange(width) >= width // 2).astype(np.float64)[None].repeat(height, 0)


# ------------------------------------------------------------------------------------ baselines

def test_guided_fusion_sharpens_low_in_low_units():
    size = (64, 96)
    sharp = _step(*size)
    low = cv2.GaussianBlur(cv2.resize(sharp, (24, 16), interpolation=cv2.INTER_AREA),
                           (0, 0), 1.5) * 2.0 + 1.0  # blurred step, values in [1, 3]
    high = 40.0 - 30.0 * sharp + 0.01 * np.random.default_rng(2).standard_normal(size)
    fused = guided_fusion(low, high, size)
    upsampled = resize_prediction(low, size)

    assert fused.shape == size and fused.dtype == np.float32
    span = low.max() - low.min()
    assert low.min() - 0.05 * span <= fused.min() and fused.max() <= low.max() + 0.05 * span
    assert fused[:, :40].mean() < 1.5 and fused[:, -40:].mean() > 2.5  # low's polarity too
    steepest = np.abs(np.diff(fused, axis=1)).max()
    assert steepest > 2.5 * np.abs(np.diff(upsampled, axis=1)).max()


@pytest.mark.parametrize("size", [(100, 150), (20, 30), (30, 120)])
def test_resize_prediction_shapes(size):
    ramp = np.linspace(0, 1, 40 * 60, dtype=np.float32).reshape(40, 60)
    resized = resize_prediction(ramp, size)
    assert resized.shape == size and resized.dtype == np.float32
    assert abs(resized.mean() - ramp.mean()) < 0.02


@pytest.mark.parametrize("size", [(21, 21), (32, 32), (17, 23)])
def test_resize_prediction_does_not_alias_a_checkerboard(size):
    """Point-sampling a 1-px checkerboard gives values near 0 and 1; anti-aliasing gives ~0.5."""
    board = (np.indices((64, 64)).sum(0) % 2).astype(np.float32)
    resized = resize_prediction(board, size)
    assert np.abs(resized - 0.5).max() < 0.1


# --------------------------------------------------------------------------------------- runner

def test_report_structure(report):
    assert set(report) == {"predictor", "methods", "space", "ord_variant", "seed", "evaluated",
                           "skipped", "mean", "images"}
    assert report["methods"] == ["low", "high", "guided"]
    assert report["evaluated"] == 3 and report["skipped"] == []
    assert report["space"] == "disparity"  # the simulator predicts near = large
    assert [image["name"] for image in report["images"]] == ["a", "b", "c"]
    for image in report["images"]:
        assert image["size"] == [64, 96]
        assert image["resolutions"] == {"low": 32, "high": 96}
        assert list(image["metrics"]) == ["low", "high", "guided"]
        for scores in image["metrics"].values():
            assert tuple(scores) == METRIC_KEYS
            assert all(math.isfinite(v) for v in scores.values())


def test_mean_is_the_mean_over_images(report):
    for method, means in report["mean"].items():
        for key in METRIC_KEYS:
            per_image = [image["metrics"][method][key] for image in report["images"]]
            assert means[key] == pytest.approx(np.mean(per_image), rel=1e-12)


def test_high_resolution_beats_low_on_edges(report):
    """The simulator's low prediction is blurred: the high one must score better on D³R."""
    assert report["mean"]["high"]["d3r"] < report["mean"]["low"]["d3r"]


def test_same_seed_same_report_other_seed_other_numbers(folder, report):
    dataset = DepthFolder(folder)
    again = evaluate_dataset(dataset, ("low", "high", "guided"), seed=0, **FAST)
    assert json.dumps(again) == json.dumps(report)
    other = evaluate_dataset(dataset, ("low", "high", "guided"), seed=1, **FAST)
    assert other["seed"] == 1
    assert other["mean"]["high"]["rel"] != report["mean"]["high"]["rel"]
    assert other["images"][0]["metrics"]["low"] != report["images"][0]["metrics"]["low"]


def test_unusable_ground_truth_is_skipped_and_progress_sees_every_image(folder_with_empty):
    calls = []
    with pytest.warns(UserWarning, match="empty: skipped"):
        result = evaluate_dataset(DepthFolder(folder_with_empty), ("low",),
                                  progress=lambda *args: calls.append(args), **FAST)
    assert result["evaluated"] == 2
    assert [image["name"] for image in result["images"]] == ["a", "b"]
    assert [entry["name"] for entry in result["skipped"]] == ["empty"]
    assert "no valid pixel" in result["skipped"][0]["reason"]
    assert calls == [(1, 3, "a"), (2, 3, "b"), (3, 3, "empty")]  # names sorted


def test_figures_one_png_per_evaluated_image(folder_with_empty, tmp_path):
    with pytest.warns(UserWarning, match="empty"):
        evaluate_dataset(DepthFolder(folder_with_empty), ("low", "guided"),
                         figures_dir=tmp_path / "figures", **FAST)
    assert sorted(os.listdir(tmp_path / "figures")) == ["a.png", "b.png"]
    assert all(_is_png(path) for path in (tmp_path / "figures").iterdir())


def test_sddr_methods_with_a_tiny_refiner(folder):
    refiner = Refiner(RefinementNetwork(TINY), device="cpu")
    dataset = [DepthFolder(folder)[0]]
    methods = ("low", "sddr", "sddr-two-stage")
    result = evaluate_dataset(dataset, methods, refiner=refiner, **FAST)
    assert result["methods"] == list(methods)
    for method in methods[1:]:
        assert all(math.isfinite(v) for v in result["mean"][method].values())
    assert result["mean"]["sddr"] != result["mean"]["sddr-two-stage"]


def test_both_sddr_rows_start_from_the_same_inputs(folder, monkeypatch):
    """The one-stage row fuses the shared (low, high); the two-stage row must start from that
    very pair (its step 0), so the rows differ by the windows alone."""
    seen = {}
    refine = Refiner.refine

    def spy_refine(self, low, high, **kwargs):
        seen.setdefault("sddr", (low, high))
        return refine(self, low, high, **kwargs)

    call = runner.DepthPipeline.__call__

    def spy_call(self, image, **kwargs):
        seen["sddr-two-stage"] = kwargs.get("inputs")
        return call(self, image, **kwargs)

    monkeypatch.setattr(Refiner, "refine", spy_refine)
    monkeypatch.setattr(runner.DepthPipeline, "__call__", spy_call)
    refiner = Refiner(RefinementNetwork(TINY), device="cpu")
    evaluate_dataset([DepthFolder(folder)[0]], ("sddr", "sddr-two-stage"), refiner=refiner,
                     **FAST)
    assert seen["sddr-two-stage"] is not None
    for one_stage, two_stage in zip(seen["sddr"], seen["sddr-two-stage"], strict=True):
        np.testing.assert_array_equal(one_stage, two_stage)


@pytest.mark.parametrize("methods", [("sddr", "sddr-snapped", "sddr-two-stage",
                                      "sddr-two-stage-snapped"),
                                     ("sddr-two-stage-snapped", "sddr-snapped")])
def test_snapped_rows_are_the_unsnapped_outputs_snapped_to_the_image(folder, monkeypatch,
                                                                     methods):
    """Each snapped row is its unsnapped row's depth through `snap_edges` with the sample's
    image, whether or not the unsnapped row is asked for too."""
    outputs = []
    method_output = runner._method_output

    def spy(method, *args):
        outputs.append((method, method_output(method, *args)))
        return outputs[-1][1]

    monkeypatch.setattr(runner, "_method_output", spy)
    sample = DepthFolder(folder)[0]
    refiner = Refiner(RefinementNetwork(TINY), device="cpu")
    result = evaluate_dataset([sample], methods, refiner=refiner, **FAST)
    assert result["methods"] == list(methods)
    made = dict(outputs)
    for snapped, unsnapped in runner.SNAPPED.items():
        np.testing.assert_array_equal(made[snapped], snap_edges(made[unsnapped], sample.image))
        assert all(math.isfinite(v) for v in result["mean"][snapped].values())


def test_default_resolutions_follow_the_papers_ratio(folder):
    """Low = r̂ = 448/1920 of the long side (LeReS on 1920-px Middlebury 2021), high = the long
    side: 22 and 96 px on these 64×96 scenes. The simulator is trained at the low size."""
    result = evaluate_dataset([DepthFolder(folder)[0]], ("low",))
    assert result["images"][0]["resolutions"] == {"low": 22, "high": 96}
    sample = DepthFolder(folder)[0]
    assert runner.PREDICTORS["simulated"](sample, 0, 22).training_resolution == 22


def test_sddr_without_refiner_and_unknown_predictor_are_refused(folder):
    dataset = DepthFolder(folder)
    with pytest.raises(InputError, match="sddr.*refiner"):
        evaluate_dataset(dataset, ("low", "sddr"))
    with pytest.raises(InputError, match="'oracle'.*simulated"):
        evaluate_dataset(dataset, ("low",), predictor="oracle")


# -------------------------------------------------------------------------------- parse_methods

def test_parse_methods_keeps_order_and_ignores_whitespace():
    assert parse_methods("guided, low ,high") == ("guided", "low", "high")
    assert parse_methods("sddr") == ("sddr",)


@pytest.mark.parametrize("text", ["low,bogus", "", " , "])
def test_parse_methods_refuses_unknown_or_empty(text):
    with pytest.raises(InputError, match=", ".join(METHODS)) as error:
        parse_methods(text)
    if "bogus" in text:
        assert "bogus" in str(error.value)


# --------------------------------------------------------------------------------- write_report

def test_write_report_files(report, tmp_path):
    written = write_report(report, tmp_path / "out")
    out = tmp_path / "out"
    assert written == [out / "metrics.json", out / "metrics.md", out / "metrics.png"]
    assert json.loads((out / "metrics.json").read_text()) == report
    assert _is_png(out / "metrics.png")

    lines = (out / "metrics.md").read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| method |"))
    titles = [cell.strip() for cell in lines[header].strip("|").split("|")]
    assert [title.split()[0] for title in titles[1:]] == list(PAPER_TITLES)
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[header + 2:]]
    assert [row[0] for row in rows] == ["low", "high", "guided"]
    for method, *cells in rows:
        assert cells == [f"{report['mean'][method][key]:.3f}" for key in PAPER_ORDER]


def test_write_report_stores_nan_as_null(report, tmp_path):
    with_nan = json.loads(json.dumps(report))
    with_nan["mean"]["low"]["ord"] = math.nan
    write_report(with_nan, tmp_path, figures=False)
    loaded = json.loads((tmp_path / "metrics.json").read_text())
    assert loaded["mean"]["low"]["ord"] is None  # strict JSON: NaN is not a JSON value
    assert "| nan |" in (tmp_path / "metrics.md").read_text()
    assert not (tmp_path / "metrics.png").exists()


def test_write_report_failure_leaves_earlier_report_intact(report, tmp_path):
    write_report(report, tmp_path)
    before = (tmp_path / "metrics.json").read_bytes()
    with pytest.raises(TypeError):
        write_report({**report, "refiner": object()}, tmp_path)
    assert (tmp_path / "metrics.json").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["metrics.json", "metrics.md", "metrics.png"]


def test_report_with_every_image_skipped(tmp_path):
    empty = _write_folder(tmp_path / "data", {"flat": np.full((64, 96), 2.0)})
    with pytest.warns(UserWarning, match="constant"):
        result = evaluate_dataset(DepthFolder(empty), ("low", "high"), **FAST)
    assert result["evaluated"] == 0
    assert all(math.isnan(v) for v in result["mean"]["low"].values())
    assert "Mean over 0 images (1 skipped)" in markdown_table(result)
    written = write_report(result, tmp_path / "out")
    assert [path.name for path in written] == ["metrics.json", "metrics.md"]


# ------------------------------------------------------------------------------------------ CLI

def _eval(folder: Path, out: Path, *extra: str) -> int:
    return main(["eval", "--dataset", "folder", str(folder), "-o", str(out), *FAST_CLI, *extra])


def test_cli_eval_writes_report_and_figures(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert _eval(folder, out, "--methods", "low,high,guided", "--limit", "2") == 0
    assert sorted(os.listdir(out)) == ["figures", "metrics.json", "metrics.md", "metrics.png"]
    assert sorted(os.listdir(out / "figures")) == ["a.png", "b.png"]
    stored = json.loads((out / "metrics.json").read_text())
    assert stored["methods"] == ["low", "high", "guided"]
    assert stored["dataset"] == {"kind": "folder", "root": str(folder.resolve())}
    assert stored["weights"] is None
    captured = capsys.readouterr()
    assert "| guided |" in captured.out and "2/2" in captured.err


def test_cli_eval_with_sddr_weights(folder, weights, tmp_path):
    out = tmp_path / "out"
    assert _eval(folder, out, "--methods", "low,sddr", "--weights", weights, "--device", "cpu",
                 "--no-figures", "--limit", "1") == 0
    assert "| sddr |" in (out / "metrics.md").read_text()
    assert json.loads((out / "metrics.json").read_text())["weights"] == weights


def test_cli_eval_options(folder, tmp_path):
    out = tmp_path / "out"
    assert _eval(folder, out, "--methods", "low", "--no-figures", "--limit", "1",
                 "--ord", "ranking", "--seed", "3") == 0
    assert not list(out.rglob("*.png"))
    stored = json.loads((out / "metrics.json").read_text())
    assert stored["evaluated"] == 1 and [i["name"] for i in stored["images"]] == ["a"]
    assert stored["ord_variant"] == "ranking" and stored["seed"] == 3


def test_cli_default_methods_leave_out_sddr_without_weights(folder, tmp_path, monkeypatch):
    monkeypatch.setattr("sddr_core.cli.main._bundled_weights_present", lambda: False)
    out = tmp_path / "out"
    assert _eval(folder, out, "--no-figures", "--limit", "1") == 0
    assert json.loads((out / "metrics.json").read_text())["methods"] == ["low", "high", "guided"]


@pytest.mark.parametrize(("args", "expected"), [
    (["--methods", "bogus"], ["bogus", "low, high, guided, sddr"]),
    (["--limit", "0"], ["--limit 0", "at least 1"]),
])
def test_cli_eval_bad_arguments(folder, tmp_path, capsys, args, expected):
    out = tmp_path / "out"
    assert _eval(folder, out, *args) == 2
    err = capsys.readouterr().err
    assert all(text in err for text in expected)
    assert not out.exists()


def test_cli_eval_negative_seed_is_refused(folder, tmp_path, capsys):
    assert _eval(folder, tmp_path / "out", "--methods", "low", "--seed", "-1") == 2
    assert "--seed" in capsys.readouterr().err


@pytest.mark.parametrize("option, value", [("--low-resolution", "0"),
                                           ("--low-resolution", "100000"),
                                           ("--high-resolution", "16385")])
def test_cli_eval_resolution_out_of_range_is_refused(folder, tmp_path, capsys, option, value):
    """100000 once asked the allocator for 26 GiB (a raw traceback)."""
    out = tmp_path / "out"
    assert main(["eval", "--dataset", "folder", str(folder), "-o", str(out), "--methods", "low",
                 "--no-figures", "--limit", "1", option, value]) == 2
    assert (f"sddr: error: {option} {value}: must be from 8 to 16384 pixels"
            in capsys.readouterr().err)


def test_cli_eval_missing_dataset_names_the_path(tmp_path, capsys):
    missing = tmp_path / "no-such-dataset"
    assert _eval(missing, tmp_path / "out") == 2
    assert str(missing) in capsys.readouterr().err


def test_cli_eval_on_middlebury(tmp_path):
    half = DATA / "middlebury2006-half"
    if not half.is_dir():
        pytest.skip(f"{half} not present")
    out = tmp_path / "out"
    assert main(["eval", "--dataset", "middlebury2006", str(half), "--limit", "1",
                 "--no-figures", "--methods", "low,high", "-o", str(out)]) == 0
    stored = json.loads((out / "metrics.json").read_text())
    assert stored["evaluated"] == 1 and stored["space"] == "disparity"
    for method in ("low", "high"):
        assert all(math.isfinite(stored["mean"][method][key]) for key in METRIC_KEYS)
