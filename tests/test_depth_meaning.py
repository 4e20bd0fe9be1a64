"""Depth sidecars (sddr_core/files/depth_meaning.py, sidecar.py) and the robust range rule that
sddr and the Blender add-on share (sddr_core/maps/robust_range.py)."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from blender_addon.file_meaning import settings_from_meaning
from blender_addon.geometry import distances
from sddr_core.cli.main import main
from sddr_core.cli.sample import sample_scene
from sddr_core.errors import InputError
from sddr_core.files import depth_io
from sddr_core.files.depth_io import read_depth
from sddr_core.files.depth_meaning import SidecarError, read_sidecar, sidecar_path
from sddr_core.files.sidecar import write_depth_with_meaning
from sddr_core.maps import normalise
from sddr_core.maps.robust_range import SAMPLE_PIXELS, robust_range

ROOT = Path(__file__).resolve().parents[1]
SHARED = {"sddr_core/files/depth_meaning.py": "blender_addon/depth_meaning.py",
          "sddr_core/maps/robust_range.py": "blender_addon/robust_range.py"}
"""sddr's torch-free modules and the copies the Blender add-on ships (it cannot import sddr)."""
DEMO = {"kind": "disparity", "units": "relative", "written_by": "test",
        "distances": (8.0, 1.5)}


@pytest.mark.parametrize("source, copy", SHARED.items())
def test_the_add_on_ships_identical_copies_that_import_nothing_of_sddr(source, copy):
    assert (ROOT / copy).read_bytes() == (ROOT / source).read_bytes(), f"cp {source} {copy}"
    tree = ast.parse((ROOT / source).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.level == 0}
    assert not any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree))
    assert imported <= {"__future__", "json", "math", "os", "dataclasses", "pathlib", "numpy"}


# --------------------------------------------------------------------------- robust range

@pytest.mark.parametrize("shape", [(20, 30), (300, 301), (512, 512)])
def test_numpy_and_torch_robust_ranges_agree_exactly(shape):
    rng = np.random.default_rng(0)
    depth = rng.normal(5.0, 1.0, shape).astype(np.float32)
    depth.flat[rng.choice(depth.size, 40, replace=False)] = 1e6  # outliers to leave out
    mostly_flat = np.full(shape, 2.0, np.float32)
    mostly_flat[0, :3] = (1.0, 3.0, 4.0)
    for map_ in (depth, mostly_flat):
        low, high = normalise.robust_range(torch.from_numpy(map_)[None])
        assert robust_range(map_) == (low.item(), high.item())
    if depth.size > SAMPLE_PIXELS:  # the subsample leaves the outliers out too
        assert robust_range(depth)[1] < 1e6


def test_robust_range_leaves_non_finite_values_out_and_refuses_none():
    depth = np.arange(2000.0).reshape(40, 50)
    depth[0, 0] = np.nan
    assert robust_range(depth) == (2.0, 1998.0)
    with pytest.raises(ValueError, match="no finite value"):
        robust_range(np.full((4, 4), np.inf))


# ------------------------------------------------------------------------------- sidecars

def test_png_sidecar_maps_the_codes_back_onto_the_values(tmp_path):
    values = np.linspace(-0.03, 1.04, 48 * 64, dtype=np.float32).reshape(48, 64)
    path, side = write_depth_with_meaning(tmp_path / "d.png", values, **DEMO)
    assert side == tmp_path / "d.png.sddr.json" == sidecar_path(path)
    meaning = read_sidecar(path)
    assert meaning.stored == ((0, 65535), (pytest.approx(-0.03), pytest.approx(1.04)))
    back = meaning.values(read_depth(path))
    assert np.abs(back - values).max() <= 1.07 / 65535  # one code's width
    assert (meaning.kind, meaning.near_bright, meaning.distances) == ("disparity", True,
                                                                      (8.0, 1.5))


def test_float_files_hold_their_values_and_say_so(tmp_path):
    values = np.random.default_rng(1).uniform(1, 5, (8, 9)).astype(np.float32)
    path, _ = write_depth_with_meaning(tmp_path / "d.npy", values, kind="depth", units="metres",
                                       written_by="test")
    meaning = read_sidecar(path)
    assert meaning.stored is None and meaning.units == "metres"
    np.testing.assert_array_equal(meaning.values(read_depth(path)), values)


def test_a_missing_sidecar_is_no_meaning_not_an_error(tmp_path):
    assert read_sidecar(tmp_path / "plain.png") is None


@pytest.mark.parametrize("fields, message", [
    ("not json", "malformed"),
    ([1, 2], "a JSON object"),
    ({"sddr_depth_meaning": 2}, "knows version 1"),
    ({"sddr_depth_meaning": 1, "colour": "red"}, "unknown field"),
    ({"sddr_depth_meaning": 1, "kind": "height"}, "not one of disparity, depth"),
    ({"sddr_depth_meaning": 1, "kind": "disparity", "units": "metres"}, "need kind 'depth'"),
    ({"sddr_depth_meaning": 1, "kind": "disparity", "near_bright": False}, "contradicts"),
    ({"sddr_depth_meaning": 1, "kind": "disparity", "units": "relative",
      "distances": {"at_0": 1.0, "at_1": 8.0}}, "must be nearer"),
    ({"sddr_depth_meaning": 1, "stored": {"codes": [0, 0], "values": [0, 1]}}, "distinct"),
    ({"sddr_depth_meaning": 1, "fov_degrees": 200}, "between 0 and 180"),
    ({"sddr_depth_meaning": 1, "fov_degrees": "wide"}, "between 0 and 180"),
])
def test_a_malformed_sidecar_is_refused_naming_the_file(tmp_path, fields, message):
    side = tmp_path / "d.png.sddr.json"
    side.write_text(fields if isinstance(fields, str) else json.dumps(fields))
    with pytest.raises(SidecarError, match=rf"depth sidecar '.*d\.png\.sddr\.json' .*{message}"):
        read_sidecar(tmp_path / "d.png")


def test_a_contradictory_description_writes_nothing(tmp_path):
    with pytest.raises(InputError, match="cannot describe depth map .*need kind 'depth'"):
        write_depth_with_meaning(tmp_path / "d.png", np.eye(4), kind="disparity",
                                 units="metres", written_by="test")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rewrite_leaves_no_stale_sidecar(tmp_path, monkeypatch):
    """The old sidecar would describe the new values wrongly; the old file keeps none."""
    path, side = write_depth_with_meaning(tmp_path / "d.png", np.eye(4), **DEMO)
    before = path.read_bytes()

    def disk_full(tmp, arr):
        raise OSError(28, "No space left on device")

    monkeypatch.setitem(depth_io._WRITERS, "png16", disk_full)
    with pytest.raises(InputError, match="No space left"):
        write_depth_with_meaning(path, 5 * np.eye(4), **DEMO)
    assert path.read_bytes() == before and not side.exists()


# ------------------------------------------------------------------ sddr demo → settings

def test_demo_sidecars_give_the_sample_scene_distances(tmp_path):
    """refined.png read through its sidecar, and its settings (what the add-on fills), put
    the sample scene's pixels near their true distances: median error 2.0 % (measured)."""
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--device", "cpu"]) == 0
    _, depth = sample_scene()
    for name in ("low", "high", "refined"):
        meaning = read_sidecar(out / f"{name}.png")
        assert (meaning.kind, meaning.units, meaning.fov_degrees) == ("disparity", "relative",
                                                                      None)
        assert meaning.distances == (float(depth.max()), float(depth.min()))
    meaning = read_sidecar(out / "refined.png")
    values = meaning.values(read_depth(out / "refined.png"))
    settings = settings_from_meaning(meaning, values)
    assert settings["depth_kind"] == "DISPARITY" and "fov" not in settings
    z = distances(values, settings["depth_kind"], near=settings["near"], far=settings["far"])
    error = np.median(np.abs(z - depth) / depth)
    assert error < 0.05, error
