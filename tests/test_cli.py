"""The `sddr` command line end to end, with a tiny random model saved to a file."""

import json
import os

import cv2
import numpy as np
import pytest
import torch

from sddr_core.cli.main import main
from sddr_core.files.depth_io import read_depth, write_depth
from sddr_core.inference.refiner import load_refiner
from sddr_core.maps.gradients import gradient_magnitude


def write_pair(folder):
    """(low.npy, high.pfm, the depth they come from): a ramp with a disc in front."""
    ys, xs = np.mgrid[0:120, 0:160].astype(np.float32)
    depth = 2.0 + ys / 120 + (np.hypot(xs - 80, ys - 60) < 25)
    low_path, high_path = folder / "low.npy", folder / "high.pfm"
    write_depth(low_path, depth[::4, ::4].copy())
    write_depth(high_path, depth)
    return str(low_path), str(high_path), depth


@pytest.fixture()
def pair(tmp_path):
    return write_pair(tmp_path)


@pytest.mark.parametrize("suffix", [".png", ".npy", ".pfm", ".tiff", ".exr"])
def test_refine_writes_every_format(weights, pair, tmp_path, suffix):
    low, high, depth = pair
    out = tmp_path / f"refined{suffix}"
    assert main(["refine", "--low", low, "--high", high, "-o", str(out),
                 "--weights", weights, "--device", "cpu"]) == 0
    refined = read_depth(out)
    assert refined.shape == depth.shape
    assert np.isfinite(refined).all()


def test_refine_out_size_and_explicit_format(weights, pair, tmp_path):
    low, high, _ = pair
    out = tmp_path / "refined.png"
    assert main(["refine", "--low", low, "--high", high, "-o", str(out), "--format", "png8",
                 "--out-size", "50x70", "--weights", weights, "--device", "cpu"]) == 0
    refined = read_depth(out)
    assert refined.shape == (50, 70)
    assert refined.max() <= 255


def test_refine_applies_the_cores_aspect_rule(weights, tmp_path, capsys):
    """The pairs of tests/test_refiner.py's aspect tests: warned and refined, or refused."""
    ys, xs = np.mgrid[0:80, 0:160].astype(np.float32)
    depth = 2.0 + ys / 80 + xs / 160
    paths = {}
    for name, array in {"low": depth[::2, :112:2], "high": depth[:, :120],
                        "wide": depth}.items():
        paths[name] = str(tmp_path / f"{name}.npy")
        write_depth(paths[name], np.ascontiguousarray(array))
    out = tmp_path / "out.npy"
    arguments = ["-o", str(out), "--weights", weights, "--device", "cpu"]
    with pytest.warns(UserWarning, match="low is 40×56 and high is 80×120: their aspect "
                      "ratios differ"):
        assert main(["refine", "--low", paths["low"], "--high", paths["high"], *arguments]) == 0
    assert read_depth(out).shape == (80, 120)
    out.unlink()
    assert main(["refine", "--low", paths["low"], "--high", paths["wide"], *arguments]) == 2
    assert "sddr: error: low is 40×56 and high is 80×160: their aspect ratios differ " \
        "(1.400 vs 2.000) by more than 10%" in capsys.readouterr().err
    assert not out.exists()


def test_refine_missing_input_names_the_file(weights, pair, tmp_path, capsys):
    _, high, _ = pair
    missing = str(tmp_path / "nope.png")
    out = tmp_path / "out.npy"
    assert main(["refine", "--low", missing, "--high", high, "-o", str(out),
                 "--weights", weights]) == 2
    err = capsys.readouterr().err
    assert "nope.png" in err and "no such file" in err
    assert not out.exists()


def test_failed_refine_leaves_earlier_output_intact(weights, pair, tmp_path, capsys):
    low, high, _ = pair
    out = tmp_path / "out.npy"
    assert main(["refine", "--low", low, "--high", high, "-o", str(out),
                 "--weights", weights]) == 0
    before = out.read_bytes()
    constant = tmp_path / "constant.npy"
    np.save(constant, np.ones((30, 40), np.float32))
    assert main(["refine", "--low", str(constant), "--high", high, "-o", str(out),
                 "--weights", weights]) == 2
    assert "constant" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == sorted(["low.npy", "high.pfm", "out.npy",
                                                   "out.npy.sddr.json", "constant.npy"])


def test_refine_unwritable_output_folder(weights, pair, tmp_path, capsys):
    low, high, _ = pair
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    assert main(["refine", "--low", low, "--high", high, "-o", str(blocker / "out.png"),
                 "--weights", weights]) == 2
    assert "afile" in capsys.readouterr().err


def test_refine_bad_out_size_and_wrong_weights(weights, pair, tmp_path, capsys):
    low, high, _ = pair
    out = str(tmp_path / "o.npy")
    assert main(["refine", "--low", low, "--high", high, "-o", out, "--out-size", "big",
                 "--weights", weights]) == 2
    assert "--out-size" in capsys.readouterr().err
    not_weights = tmp_path / "junk.safetensors"
    not_weights.write_bytes(b"\x00" * 64)
    assert main(["refine", "--low", low, "--high", high, "-o", out,
                 "--weights", str(not_weights)]) == 2
    assert "junk.safetensors" in capsys.readouterr().err


def test_demo_with_weights_writes_all_outputs(weights, tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--weights", weights, "--device", "cpu"]) == 0
    names = sorted(os.listdir(out))
    assert names == ["comparison.png", "high.png", "high.png.sddr.json", "image.png", "low.png",
                     "low.png.sddr.json", "refined.png", "refined.png.sddr.json"]
    refined, high = read_depth(out / "refined.png"), read_depth(out / "high.png")
    assert refined.shape == high.shape
    assert refined.max() > refined.min()


def test_demo_on_the_bundled_weights_sharpens_the_low_input(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--device", "cpu"]) == 0
    refined, low = read_depth(out / "refined.png"), read_depth(out / "low.png")
    # The refined map is at the high input's size and its edges are steeper than the low
    # input's up-sampled to it (the low input is blurred; the refiner takes edges from the high
    # one): the 99th percentile of ∇, where the edges are, is 1.55× on the sample.
    low_up = cv2.resize(low, refined.shape[::-1], interpolation=cv2.INTER_CUBIC)
    assert _edge_steepness(refined) > 1.3 * _edge_steepness(low_up)


def test_demo_two_stage_leaves_fewer_flying_pixels_than_one_stage(tmp_path):
    """--mode two-stage refines the sample scene coarse to fine: fewer of the pixels beside
    its depth edges float between their sides (0.46 one-stage, 0.20 two-stage when written)."""
    from sddr_core.cli.demo import sample_inputs
    from sddr_core.evaluation.boundaries import flying_pixel_rate

    exact = sample_inputs()[3]
    rates = {}
    for mode in ("one-stage", "two-stage"):
        assert main(["demo", "-o", str(tmp_path / mode), "--mode", mode]) == 0
        refined = read_depth(tmp_path / mode / "refined.png")
        rates[mode] = flying_pixel_rate(refined, exact, space="disparity")
    assert rates["two-stage"] < 0.7 * rates["one-stage"], rates
    assert main(["demo", "-o", str(tmp_path / "x"), "--mode", "three-stage"]) == 2


def test_demo_without_bundled_weights_explains(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sddr_core.files.weights.BUNDLED_DIR", tmp_path)
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out)]) == 2
    assert "missing from this installation" in capsys.readouterr().err
    assert not out.exists()


def _edge_steepness(depth: np.ndarray) -> float:
    """99th percentile of the paper's ∇ (`gradient_magnitude`, range-normalised)."""
    return float(np.percentile(gradient_magnitude(depth), 99))


def test_info_lists_presets(capsys):
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "preset small" in text and "preset base" in text and "M parameters" in text
    assert "predictor depth-anything-v2-small" in text


def test_bench_json_reports_time_flops_and_ratio(weights, capsys):
    threads = torch.get_num_threads()
    try:
        assert main(["--threads", "1", "bench", "--weights", weights, "--size", "128",
                     "--repeats", "1", "--json"]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads(capsys.readouterr().out)
    assert report["threads"] == 1
    assert report["median_seconds"] > 0
    assert report["gflops_per_refinement"] > 0
    assert report["matmul_gflops_per_second"] > 0
    ratio = report["achieved_gflops_per_second"] / report["matmul_gflops_per_second"]
    assert report["ratio_to_matmul"] == pytest.approx(ratio)
    assert report["peak_memory_mb"] > 0


def test_bench_batch_refines_a_stack_per_call(weights, capsys):
    """--batch B times one refine of B pairs: images per second counts all B, and the
    FLOPs stay those of one refinement."""
    assert main(["bench", "--weights", weights, "--size", "64", "--repeats", "1",
                 "--json"]) == 0
    single = json.loads(capsys.readouterr().out)
    assert main(["bench", "--weights", weights, "--size", "64", "--repeats", "1",
                 "--batch", "3", "--json"]) == 0
    stacked = json.loads(capsys.readouterr().out)
    assert (single["batch"], stacked["batch"]) == (1, 3)
    assert stacked["images_per_second"] == pytest.approx(3 / stacked["median_seconds"])
    assert stacked["gflops_per_refinement"] == pytest.approx(single["gflops_per_refinement"])


def test_bench_names_the_shipped_files_preset_filter_and_head(capsys):
    """The bundled file is `small` plus a correction filter and a step head, not a "custom"
    architecture."""
    assert main(["bench", "--weights", "default", "--size", "64", "--repeats", "1",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    shipped = load_refiner("default").config
    assert report["architecture"] == "small"
    assert report["correction_filter_radius"] == shipped.correction_filter_radius > 0
    assert report["step_head"] == shipped.step_head > 0
    assert main(["bench", "--preset", "base", "--size", "64", "--repeats", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["architecture"], report["correction_filter_radius"],
            report["step_head"]) == ("base", 0, 0)


def test_bench_names_a_head_run_twice_as_the_same_preset(tmp_path, capsys):
    """`step_head_passes` is a setting of the head, not another architecture."""
    import dataclasses

    from sddr_core.files.weights import load_network, save_network
    from sddr_core.network import RefinementNetwork

    shipped = load_network("default")
    twice = RefinementNetwork(dataclasses.replace(shipped.config, step_head_passes=2))
    twice.load_state_dict(shipped.state_dict())
    save_network(twice, tmp_path / "twice.safetensors")
    assert main(["bench", "--weights", str(tmp_path / "twice.safetensors"), "--size", "64",
                 "--repeats", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["architecture"], report["step_head"], report["step_head_passes"]) == (
        "small", shipped.config.step_head, 2)


def test_bench_times_edge_snapping_when_asked(weights, capsys):
    assert main(["bench", "--weights", weights, "--size", "128", "--repeats", "1",
                 "--snap-edges"]) == 0
    assert "edge snapping: median" in capsys.readouterr().out
    assert main(["bench", "--weights", weights, "--size", "128", "--repeats", "1",
                 "--json"]) == 0
    assert "snap_seconds" not in json.loads(capsys.readouterr().out)
    assert main(["bench", "--weights", weights, "--size", "128", "--repeats", "1",
                 "--snap-edges", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["snap_seconds"] > 0
    assert report["snap_ratio_to_refine"] == report["snap_seconds"] / report["median_seconds"]
