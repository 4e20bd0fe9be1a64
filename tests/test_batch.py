"""Batch jobs without Ray: folder pairs, a predictor from a local model folder, the manifest,
leftover temporary files, and `--engine ray` where Ray is not installed."""

import json
import os
import sys

import cv2
import numpy as np
import pytest
import torch

from sddr_core.batch.job import RefineSettings, pair_items
from sddr_core.batch.manifest import FOLDER, Manifest
from sddr_core.cli.main import main
from sddr_core.errors import InputError, WeightsError
from sddr_core.files.atomic import remove_leftovers
from sddr_core.files.depth_io import read_depth, write_depth


def write_pairs(folder, names, size=(40, 56), seed=0):
    """low/NAME.npy (a quarter of the size) and high/NAME.npy: random smooth depth fields."""
    rng = np.random.default_rng(seed)
    for name in names:
        depth = cv2.GaussianBlur(rng.random(size, dtype=np.float32), (0, 0), 3) + 1
        low = cv2.resize(depth, (size[1] // 4, size[0] // 4), interpolation=cv2.INTER_AREA)
        write_depth(folder / "low" / f"{name}.npy", low)
        write_depth(folder / "high" / f"{name}.npy", depth)
    return folder / "low", folder / "high"


def refine_folders(weights, low, high, out, *extra):
    return main(["refine", "--low", str(low), "--high", str(high), "-o", str(out),
                 "--weights", weights, "--device", "cpu", *extra])


# ------------------------------------------------------------------------------ folder pairs

def test_folder_pairs_are_matched_by_name_and_each_refined(weights, tmp_path, capsys):
    low, high = write_pairs(tmp_path, ["a", "b", "c"])
    assert refine_folders(weights, low, high, tmp_path / "out", "--format", "npy") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a.npy", "a.npy.sddr.json", "b.npy", "b.npy.sddr.json", "c.npy", "c.npy.sddr.json"]
    for name in "abc":  # each output is its own pair's refinement, at high's size
        single = tmp_path / f"single-{name}.npy"
        assert main(["refine", "--low", str(low / f"{name}.npy"), "--high",
                     str(high / f"{name}.npy"), "-o", str(single), "--weights", weights,
                     "--device", "cpu"]) == 0
        assert np.array_equal(read_depth(single), read_depth(tmp_path / "out" / f"{name}.npy"))
    assert "a.npy" in capsys.readouterr().out


def test_a_file_without_partner_a_corrupt_pair_and_a_mismatched_one_are_reported(
        weights, tmp_path, capsys):
    low, high = write_pairs(tmp_path, ["a", "b", "c", "d"])
    (low / "only-low.npy").write_bytes((low / "a.npy").read_bytes())
    (high / "b.npy").write_bytes(b"not a depth map")
    write_depth(high / "c.npy", np.random.default_rng(1).random((90, 30), dtype=np.float32))
    assert refine_folders(weights, low, high, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert f"skipped '{low / 'only-low.npy'}': no file named only-low.* in the --high" in err
    assert "skipped 'b': " in err and "skipped 'c': low is 10×14 and high is 90×30" in err
    assert err.splitlines()[-1] == (f"sddr: error: 3 of 5 inputs failed ('b', 'c', "
                                    f"'{low / 'only-low.npy'}'); the others were written")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a.png", "a.png.sddr.json", "d.png", "d.png.sddr.json"]


@pytest.mark.parametrize(("setup", "message"), [
    (lambda low, high: (low / "a.png").write_bytes(b""), "holds both 'a.npy' and 'a.png'"),
    (lambda low, high: [p.unlink() for p in high.iterdir()], "holds no depth maps"),
])
def test_ambiguous_or_empty_folders_are_refused(tmp_path, setup, message):
    low, high = write_pairs(tmp_path, ["a"])
    setup(low, high)
    with pytest.raises(InputError, match=message):
        pair_items(low, high, tmp_path / "out", "npy")


def test_a_file_and_a_folder_are_not_a_pair(weights, tmp_path, capsys):
    low, high = write_pairs(tmp_path, ["a"])
    assert refine_folders(weights, low / "a.npy", high, tmp_path / "out.npy") == 2
    assert f"cannot read depth map '{high}': is a directory" in capsys.readouterr().err


def test_engine_options_need_the_ray_engine(weights, tmp_path, capsys):
    low, high = write_pairs(tmp_path, ["a"])
    assert refine_folders(weights, low, high, tmp_path / "out", "--workers", "2") == 2
    assert "--address and --workers are for --engine ray" in capsys.readouterr().err


def test_engine_ray_without_ray_says_how_to_install_it(weights, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does when it is missing
    low, high = write_pairs(tmp_path, ["a"])
    assert refine_folders(weights, low, high, tmp_path / "out", "--engine", "ray") == 2
    assert "pip install -e '/path/to/sddr[distributed]'" in capsys.readouterr().err
    assert not (tmp_path / "out" / "a.png").exists()


# ---------------------------------------------------------------------------------- manifest

def test_the_manifest_counts_only_finished_items_with_the_same_settings(weights, tmp_path):
    low, high = write_pairs(tmp_path, ["a", "b", "c"])
    items, _ = pair_items(low, high, tmp_path / "out", "npy")
    items = [item.absolute() for item in items]
    settings = RefineSettings("pairs", weights=weights, format="npy")
    manifest = Manifest(tmp_path / "out", settings.key())
    for item in items:
        write_depth(item.outputs[0], np.ones((4, 4), np.float32))
        (tmp_path / "out" / (os.path.basename(item.outputs[0]) + ".sddr.json")).write_text("{}")
        manifest.record(item)
    assert manifest.finished(items) == set(items)
    # a changed setting, a changed input, a deleted output: not finished
    other = RefineSettings("pairs", weights=weights, format="npy", mode="two-stage")
    assert Manifest(tmp_path / "out", other.key()).finished(items) == set()
    capped = RefineSettings("pairs", weights=weights, format="npy", resolution_cap=1.0)
    assert Manifest(tmp_path / "out", capped.key()).finished(items) == set()
    write_depth(items[0].inputs[1], np.ones((40, 56), np.float32))
    os.unlink(items[1].outputs[0])
    assert manifest.finished(items) == {items[2]}


def test_a_manifest_line_cut_short_by_a_crash_is_ignored(tmp_path):
    low, high = write_pairs(tmp_path, ["a", "b"])
    items, _ = pair_items(low, high, tmp_path / "out", "npy")
    items = [item.absolute() for item in items]
    manifest = Manifest(tmp_path / "out", "k")
    for item in items:
        for path in item.written():
            path.parent.mkdir(exist_ok=True)
            path.write_text("x")
        manifest.record(item)
    part = next((tmp_path / "out" / FOLDER).glob("*.jsonl"))
    lines = part.read_text().splitlines()
    part.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])
    assert manifest.finished(items) == {items[0]}
    assert json.loads(lines[0])["inputs"] == list(items[0].inputs)


def test_leftover_temporary_files_of_the_outputs_are_removed_and_nothing_else(tmp_path):
    names = [".a.tmp-0123abcd.png", ".a.png.sddr.tmp-89abcdef.json", ".b.tmp-0123abcd.png",
             "a.png", ".a.tmp-notahex.png"]
    for name in names:
        (tmp_path / name).write_text("x")
    assert remove_leftovers([tmp_path / "a.png", tmp_path / "a.png.sddr.json"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".a.tmp-notahex.png", ".b.tmp-0123abcd.png", "a.png"]


# ----------------------------------------------------------------- predictor from a folder

def tiny_predictor_folder(folder, **config):
    """A seeded tiny random Depth Anything saved with save_pretrained into `folder`."""
    from tests.test_predictors import _tiny_config

    transformers = pytest.importorskip("transformers")
    model_config = _tiny_config("depth-anything-v2-small")
    for key, value in config.items():
        setattr(model_config, key, value)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.AutoModelForDepthEstimation.from_config(model_config)
    model.save_pretrained(folder)
    return folder


def test_a_model_folder_is_a_predictor_with_its_family_recipe(tmp_path):
    from sddr_core.predictors import load_predictor

    predictor = load_predictor(str(tiny_predictor_folder(tmp_path / "da")), device="cpu")
    assert (predictor.polarity, predictor.training_resolution) == ("disparity", 518)
    depth = predictor.predict(np.zeros((30, 40, 3), np.uint8), 56)
    assert depth.ndim == 2 and max(depth.shape) >= 28
    metric = load_predictor(str(tiny_predictor_folder(
        tmp_path / "metric", depth_estimation_type="metric")), device="cpu")
    assert metric.polarity == "depth"


@pytest.mark.parametrize(("change", "error", "message"), [
    (lambda f: (f / "config.json").unlink(), InputError, "no readable config.json"),
    (lambda f: (f / "config.json").write_text('{"model_type": "bert"}'), InputError,
     "model_type 'bert' is not one sddr can run"),
    (lambda f: (f / "model.safetensors").rename(f / "pytorch_model.bin"), WeightsError,
     "has no .safetensors weights"),
])
def test_an_unusable_model_folder_is_refused_naming_it(tmp_path, change, error, message):
    from sddr_core.predictors import load_predictor

    folder = tiny_predictor_folder(tmp_path / "da")
    change(folder)
    with pytest.raises(error, match=message) as info:
        load_predictor(str(folder), device="cpu")
    assert str(folder) in str(info.value)


def test_refine_photos_with_a_predictor_folder(weights, tmp_path, capsys):
    folder = tiny_predictor_folder(tmp_path / "da")
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 256, (30, 40, 3), np.uint8))
    assert main(["refine", str(photo), "-o", str(tmp_path / "out"), "--predictor", str(folder),
                 "--weights", weights, "--device", "cpu"]) == 0
    sidecar = json.loads((tmp_path / "out" / "p.png.sddr.json").read_text())
    assert sidecar["kind"] == "disparity" and str(folder) in sidecar["written_by"]


class FakeCluster:
    """What `pool_shape` reads of Ray: its live nodes' resources."""

    def __init__(self, *nodes: dict) -> None:
        self._nodes = [{"Alive": True, "Resources": node} for node in nodes]
        self._nodes.append({"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}})  # gone

    def nodes(self) -> list[dict]:
        return self._nodes


@pytest.mark.parametrize("nodes, device, workers, shape", [
    ([{"CPU": 8.0}], "auto", None, (8, 1, 0)),  # one worker per CPU
    ([{"CPU": 8.0}], "cpu", 2, (2, 4, 0)),  # an equal share of whole CPUs
    ([{"CPU": 2.0}], "cpu", 4, (4, 0.5, 0)),  # more workers than CPUs: a fraction each
    ([{"CPU": 2.0}], "cpu", 3, (3, 0.5, 0)),  # 2/3 would fit only twice on a 2-CPU node
    ([{"CPU": 1.0}, {"CPU": 1.0}], "cpu", 1, (1, 1, 0)),  # 2 CPUs, but no node has both
    ([{"CPU": 1.0}, {"CPU": 1.0}], "cpu", 3, (3, 0.5, 0)),
    ([{"CPU": 16.0, "GPU": 1.0}], "auto", None, (1, 1, 1)),  # one worker per GPU
    ([{"CPU": 16.0, "GPU": 1.0}], "auto", 2, (2, 1, 0.5)),  # two share the GPU
    ([{"CPU": 16.0, "GPU": 1.0}], "cpu", None, (16, 1, 0)),  # --device cpu leaves GPUs alone
    ([{"CPU": 4.0, "GPU": 2.0}, {"CPU": 4.0, "GPU": 2.0}], "cuda", 6, (6, 1, 0.5)),
    ([{"CPU": 1.0, "GPU": 1.0}], "auto", 7, (7, 0.1428, 0.1428)),  # k of 1/k fit in one
])
def test_a_pool_asks_for_the_largest_shares_that_fit_on_the_nodes(nodes, device, workers,
                                                                  shape):
    """An actor that fits on no node would wait forever, and its items with it."""
    from sddr_core.batch.ray_cluster import pool_shape

    count, cpus, gpus = pool_shape(FakeCluster(*nodes), device, workers)
    assert (count, cpus, gpus) == shape
    for resource, share in (("CPU", cpus), ("GPU", gpus)):
        if share:
            assert sum(int(node.get(resource, 0) / share + 1e-9) for node in nodes) >= count


@pytest.mark.parametrize("nodes, device, workers", [
    ([{"GPU": 1.0}], "cpu", 2),  # no CPU at all
    ([{"CPU": 2.0}], "cpu", 17),  # more than 8 workers to a CPU
    ([{"CPU": 64.0, "GPU": 1.0}], "auto", 9),  # more than 8 to a GPU
])
def test_a_pool_the_cluster_cannot_hold_is_refused_by_name(nodes, device, workers):
    """Rather than waiting forever, or starting thousands of model-holding processes."""
    from sddr_core.batch.ray_cluster import pool_shape

    with pytest.raises(InputError, match=f"--workers {workers}: .* at most 8 workers"):
        pool_shape(FakeCluster(*nodes), device, workers)
    if workers > 2:  # one worker fewer is shared out
        assert pool_shape(FakeCluster(*nodes), device, workers - 1)[0] == workers - 1
