"""`sddr refine IMAGE…` and `sddr bench --mode two-stage`, with a tiny model and a stand-in
predictor (no download)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from sddr_core.cli.main import main
from sddr_core.files.depth_io import read_depth
from sddr_core.inference.resolution import MIN_RESOLUTION
from sddr_core.predictors import huggingface as predictors


class BrightnessPredictor:
    """Disparity = the photo's brightness, at the asked resolution: depends on the pixels it
    is given, as a real predictor does."""

    name = "brightness"
    polarity = "disparity"
    training_resolution = 32
    gradient_prior = 0.01

    def __init__(self):
        self.calls = 0
        self.runs = []  # (resolution, long side of the image given)

    def predict(self, image, resolution, region=None):
        self.calls += 1
        self.runs.append((resolution, max(image.shape[:2])))
        gray = image.mean(axis=2).astype(np.float32)
        scale = resolution / max(gray.shape)
        size = (max(8, round(gray.shape[1] * scale)), max(8, round(gray.shape[0] * scale)))
        return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


@pytest.fixture()
def predictor(monkeypatch):
    stand_in = BrightnessPredictor()
    real = predictors.load_predictor

    def load(name, **options):
        return stand_in if name == "brightness" else real(name, **options)

    monkeypatch.setattr(predictors, "load_predictor", load)
    return stand_in


@pytest.fixture()
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    ys, xs = np.mgrid[0:72, 0:100]
    for name, shift in (("a.png", 0), ("b.jpg", 30)):
        rgb = np.stack([(xs + shift) % 256, ys * 3, ((xs - 50) ** 2 + (ys - 36) ** 2 < 400) * 200],
                       axis=-1).astype(np.uint8)
        cv2.imwrite(str(folder / name), rgb[..., ::-1])
    return folder


def refine(weights, *args):
    return main(["refine", *args, "--predictor", "brightness", "--weights", weights,
                 "--device", "cpu"])


@pytest.mark.parametrize("mode", ["one-stage", "two-stage"])
def test_refine_a_folder_of_photos(weights, predictor, photos, tmp_path, mode, capsys):
    out = tmp_path / "out"
    assert refine(weights, str(photos), "-o", str(out), "--mode", mode, "--steps", "1") == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a.png.sddr.json", "b.png",
                                                     "b.png.sddr.json"]
    for name in ("a.png", "b.png"):
        depth = read_depth(out / name)
        assert depth.shape == (72, 100)
        assert depth.max() > 255 and np.all(depth == np.round(depth))  # 16-bit levels
    assert predictor.calls == (2 if mode == "one-stage" else 2 + 4) * 2
    assert "[2/2] b.jpg" in capsys.readouterr().err  # the progress line names the photo


def test_resolution_cap_bounds_every_predictor_run_by_its_regions_size(weights, predictor,
                                                                       photos, tmp_path):
    """Uncapped, Eq. 11 runs the predictor above the pixels of the photo or window it
    predicts; with --resolution-cap 1 no run exceeds them, and the depth changes."""
    def runs(*cap):
        predictor.runs.clear()
        out = tmp_path / f"out{cap}"
        assert refine(weights, str(photos / "a.png"), "-o", str(out), "--mode", "two-stage",
                      "--steps", "1", *cap) == 0
        return list(predictor.runs), read_depth(out / "a.png")

    uncapped, free = runs()
    capped, bounded = runs("--resolution-cap", "1")
    assert any(resolution > side for resolution, side in uncapped)
    assert len(capped) == len(uncapped)
    assert all(resolution <= max(side, MIN_RESOLUTION) for resolution, side in capped)
    assert not np.array_equal(free, bounded)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "fast"])
def test_a_resolution_cap_that_is_no_positive_number_is_refused(weights, predictor, photos,
                                                                tmp_path, capsys, value):
    assert refine(weights, str(photos / "a.png"), "-o", str(tmp_path / "out"),
                  f"--resolution-cap={value}") == 2
    assert "--resolution-cap" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_resolution_cap_is_for_photos_not_pairs(weights, tmp_path, capsys):
    low, high = tmp_path / "low.npy", tmp_path / "high.npy"
    np.save(low, np.ones((8, 8), np.float32))
    np.save(high, np.ones((16, 16), np.float32))
    assert main(["refine", "--low", str(low), "--high", str(high), "-o",
                 str(tmp_path / "out.npy"), "--resolution-cap", "1", "--weights", weights]) == 2
    assert "--resolution-cap is for photos" in capsys.readouterr().err


def test_refine_single_photo_with_format_and_edges(weights, predictor, photos, tmp_path):
    out = tmp_path / "out"
    assert refine(weights, str(photos / "a.png"), "-o", str(out), "--mode", "two-stage",
                  "--steps", "1", "--edges", "--format", "npy") == 0
    assert sorted(p.name for p in out.iterdir()) == ["a-edges.png", "a.npy", "a.npy.sddr.json"]
    assert np.load(out / "a.npy").dtype == np.float32


def test_refine_converts_gray_and_16_bit_photos_with_a_note(weights, predictor, tmp_path):
    gray16 = (np.mgrid[0:64, 0:80][1] * 800).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g.png"), gray16)
    with pytest.warns(UserWarning, match="16-bit gray"):
        assert refine(weights, str(tmp_path / "g.png"), "-o", str(tmp_path / "out")) == 0
    assert (tmp_path / "out" / "g.png").exists()


@pytest.mark.parametrize("args, message", [
    (["nowhere.png"], "no such file"),
    (["--low", "x.npy"], "not both"),
    ([], "IMAGE"),
])
def test_refine_bad_arguments(weights, predictor, photos, tmp_path, capsys, args, message):
    argv = [str(photos / "a.png")] if args and args[0] == "--low" else []
    argv += [str(tmp_path / a) if a.endswith(".png") else a for a in args]
    assert refine(weights, *argv, "-o", str(tmp_path / "out")) == 2
    assert message in capsys.readouterr().err


def test_refine_refuses_photos_that_would_share_an_output_name(weights, predictor, photos,
                                                               tmp_path, capsys):
    cv2.imwrite(str(photos / "a.jpg"), np.zeros((20, 20, 3), np.uint8))
    assert refine(weights, str(photos), "-o", str(tmp_path / "out")) == 2
    assert f"would both write '{tmp_path / 'out' / 'a.png'}'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_edges_of_one_photo_and_depth_of_another_may_not_share_a_file(
        weights, predictor, photos, tmp_path, capsys):
    """`a.png`'s edge map and `a-edges.png`'s depth are both `a-edges.png`."""
    cv2.imwrite(str(photos / "a-edges.png"), cv2.imread(str(photos / "a.png"))[:, ::-1])
    out = tmp_path / "out"
    assert refine(weights, str(photos), "-o", str(out), "--mode", "two-stage", "--steps", "1",
                  "--edges") == 2
    assert f"would both write '{out / 'a-edges.png'}'" in capsys.readouterr().err
    assert predictor.calls == 0 and not out.exists()


def test_output_folder_holding_the_photos_would_overwrite_them(weights, predictor, photos,
                                                               capsys):
    before = (photos / "a.png").read_bytes()
    assert refine(weights, str(photos), "-o", str(photos)) == 2
    assert f"output '{photos / 'a.png'}' is the photo" in capsys.readouterr().err
    assert (photos / "a.png").read_bytes() == before and predictor.calls == 0


@pytest.mark.parametrize("make, message", [
    (lambda path: path.write_text("not a picture"), "not an image format"),
    (lambda path: os.mkfifo(path), "not a regular file"),
])
def test_a_photo_that_is_no_image_is_refused_before_the_models_load(
        weights, photos, tmp_path, monkeypatch, capsys, make, message):
    make(photos / "c.png")
    loads = []
    monkeypatch.setattr(predictors, "load_predictor", lambda *a, **o: loads.append(a))
    assert refine(weights, str(photos), "-o", str(tmp_path / "out")) == 2
    assert f"'{photos / 'c.png'}': {message}" in capsys.readouterr().err
    assert loads == []


def test_output_folder_that_is_a_file_is_refused_before_the_models_load(
        weights, predictor, photos, tmp_path, capsys):
    (tmp_path / "out").write_text("a file")
    assert refine(weights, str(photos), "-o", str(tmp_path / "out")) == 2
    assert f"output folder '{tmp_path / 'out'}': it is a file" in capsys.readouterr().err
    assert predictor.calls == 0


def test_out_size_is_for_pairs_only(weights, predictor, photos, tmp_path, capsys):
    assert refine(weights, str(photos), "-o", str(tmp_path / "out"), "--out-size",
                  "10x10") == 2
    assert "--out-size is for --low/--high pairs" in capsys.readouterr().err


def test_unknown_predictor_lists_the_known_ones(weights, photos, tmp_path, capsys):
    assert main(["refine", str(photos / "a.png"), "-o", str(tmp_path / "out"), "--predictor",
                 "no-such-model", "--weights", weights, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "depth-anything-v2-small" in err and "no-such-model" in err


def test_cancelled_refinement_leaves_no_file(weights, photos, tmp_path, monkeypatch, capsys):
    """A cancel (as ComfyUI or Blender send) mid-way: no output file, earlier ones intact."""
    from sddr_core.inference.pipeline import DepthPipeline

    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"earlier result")
    original = DepthPipeline.depth_and_edges

    def cancelled(self, image, steps, progress=None, cancel=None, inputs=None):
        return original(self, image, steps, progress, lambda: True, inputs)

    monkeypatch.setattr(DepthPipeline, "depth_and_edges", cancelled)
    monkeypatch.setattr(predictors, "load_predictor", lambda name, **o: BrightnessPredictor())
    assert main(["refine", str(photos / "b.jpg"), "-o", str(out), "--predictor", "brightness",
                 "--weights", weights, "--device", "cpu", "--mode", "two-stage"]) == 2
    assert "cancelled" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["b.png"]
    assert (out / "b.png").read_bytes() == b"earlier result"


def test_bench_two_stage_reports_passes_and_ratio(weights, capsys):
    assert main(["bench", "--mode", "two-stage", "--size", "128", "--steps", "2",
                 "--repeats", "1", "--weights", weights, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["one_stage_passes"] == 1 and report["two_stage_passes"] == 14
    assert report["two_stage_seconds"] > 0 and report["one_stage_seconds"] > 0
    assert report["ratio_two_to_one"] == pytest.approx(
        report["two_stage_seconds"] / report["one_stage_seconds"])


def test_a_truncated_photo_is_skipped_and_the_rest_of_the_folder_written(tmp_path):
    """A real `sddr` process with a tiny Depth Anything from an offline cache: the truncated
    PNG passes the up-front check (its first bytes are a PNG's) and once stopped the batch."""
    pytest.importorskip("transformers")
    from tests.test_blender_backend import PREDICTOR, make_backend_fixtures

    backend = make_backend_fixtures(tmp_path)
    good = Path(backend["photo"]).read_bytes()
    folder, out = tmp_path / "photos", tmp_path / "out"
    folder.mkdir()
    for name, data in (("a.png", good), ("b.png", good[: len(good) // 2]), ("c.png", good)):
        (folder / name).write_bytes(data)
    environment = {**os.environ, "HF_HUB_CACHE": backend["hf_cache"], "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "sddr_core.cli.main", "refine", str(folder), "-o", str(out),
         "--weights", backend["weights"], "--predictor", PREDICTOR, "--device", "cpu"],
        cwd=Path(__file__).resolve().parents[1], env=environment, capture_output=True,
        text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a.png.sddr.json", "c.png",
                                                     "c.png.sddr.json"]
    assert f"sddr: error: skipped '{folder / 'b.png'}': cannot read image" in result.stderr
    assert result.stderr.splitlines()[-1] == (f"sddr: error: 1 of 3 photos failed "
                                              f"('{folder / 'b.png'}'); the others were written")


def test_a_batch_whose_every_photo_fails_exits_2_naming_ten_of_them(weights, predictor, photos,
                                                                     tmp_path, capsys):
    good = (photos / "a.png").read_bytes()
    for index in range(12):
        (photos / f"t{index:02}.png").write_bytes(good[:100])
    (photos / "a.png").write_bytes(good[:100])
    (photos / "b.jpg").write_bytes((photos / "b.jpg").read_bytes()[:100])
    assert refine(weights, str(photos), "-o", str(tmp_path / "out")) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("sddr: error: 14 of 14 photos failed ('")
    assert last.count(".png'") + last.count(".jpg'") == 10 and last.endswith(" and 4 more)")


def test_refine_snaps_edges_to_the_photo_unless_switched_off(weights, predictor, photos,
                                                            tmp_path):
    from sddr_core.files.depth_io import read_image
    from sddr_core.maps.edge_snap import snap_edges

    photo = photos / "a.png"
    for folder, option in (("snapped", ()), ("unsnapped", ("--no-snap-edges",))):
        assert refine(weights, str(photo), "-o", str(tmp_path / folder), "--format", "npy",
                      *option) == 0
    snapped, unsnapped = (np.load(tmp_path / folder / "a.npy")
                          for folder in ("snapped", "unsnapped"))
    assert not np.array_equal(snapped, unsnapped)
    assert np.array_equal(snapped, snap_edges(unsnapped, read_image(photo)))


def test_pair_mode_snaps_to_a_given_image(weights, photos, tmp_path, capsys):
    from sddr_core.files.depth_io import read_image
    from sddr_core.maps.edge_snap import snap_edges

    image = read_image(photos / "a.png")
    gray = image.mean(axis=2).astype(np.float32)
    np.save(tmp_path / "low.npy", cv2.resize(gray, (25, 18), interpolation=cv2.INTER_AREA))
    np.save(tmp_path / "high.npy", cv2.resize(gray, (50, 36), interpolation=cv2.INTER_AREA))
    pair = ["refine", "--low", str(tmp_path / "low.npy"), "--high", str(tmp_path / "high.npy"),
            "--weights", weights, "--device", "cpu", "--out-size", "72x100"]
    assert main([*pair, "-o", str(tmp_path / "plain.npy")]) == 0
    assert main([*pair, "-o", str(tmp_path / "snapped.npy"), "--image",
                 str(photos / "a.png")]) == 0
    plain, snapped = np.load(tmp_path / "plain.npy"), np.load(tmp_path / "snapped.npy")
    assert not np.array_equal(snapped, plain)
    assert np.array_equal(snapped, snap_edges(plain, image))
    assert main([*pair, "-o", str(tmp_path / "off.npy"), "--image", str(photos / "a.png"),
                 "--no-snap-edges"]) == 0
    assert np.array_equal(np.load(tmp_path / "off.npy"), plain)
    assert main([*pair, "-o", str(tmp_path / "x.npy"), "--image", str(tmp_path)]) == 2
    assert main(["refine", str(photos / "a.png"), "--image", str(photos / "a.png"), "-o",
                 str(tmp_path / "y"), "--weights", weights]) == 2
    assert "not both" in capsys.readouterr().err
