"""Dataset readers: depth formulas against hand values, validity, and errors that name the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from sddr_core.errors import InputError
from sddr_core.evaluation.datasets import (
    DATASETS,
    DepthFolder,
    Middlebury2006,
    Middlebury2014,
    Sample,
    open_dataset,
)
from sddr_core.files.depth_io import read_depth, write_depth

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HALF = DATA / "middlebury2006-half"
MOTORCYCLE_CALIB = """cam0=[3979.911 0 1244.772; 0 3979.911 1019.507; 0 0 1]
cam1=[3979.911 0 1369.115; 0 3979.911 1019.507; 0 0 1]
doffs=124.343
baseline=193.001
width=2964
height=1988
ndisp=270
"""


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def _rgb(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def _scene2006(folder: Path, disparity: np.ndarray, dmin: str = "80") -> Path:
    folder.mkdir(parents=True)
    _write_rgb(folder / "view1.png", _rgb(disparity.shape))
    assert cv2.imwrite(str(folder / "disp1.png"), disparity)
    (folder / "dmin.txt").write_text(dmin + "\n")
    return folder


# A third-size scene: 7x9 with unknown (0) pixels; values in full-size units like the real ones.
DISP = np.arange(7 * 9, dtype=np.uint8).reshape(7, 9) * 4
DISP[3, 4] = 0


def _check_sample(sample: Sample, shape: tuple[int, int]) -> None:
    assert sample.image.shape == (*shape, 3) and sample.image.dtype == np.uint8
    assert sample.depth.shape == shape and sample.depth.dtype == np.float32
    assert sample.valid.shape == shape and sample.valid.dtype == bool
    assert np.all(sample.depth[~sample.valid] == 0) and np.all(sample.depth[sample.valid] > 0)


# ------------------------------------------------------------------------ Middlebury 2006, real

@pytest.fixture(scope="module")
def half():
    if not HALF.is_dir():
        pytest.skip(f"dev data not found at {HALF}")
    return Middlebury2006(HALF)


def test_middlebury2006_half_set(half):
    assert len(half) == 12 and list(half.names) == sorted(half.names)
    assert half.names[0] == "aloe"
    aloe = half[0]
    assert aloe.name == "aloe"
    _check_sample(aloe, (555, 641))
    disparity = read_depth(HALF / "aloe" / "disp1.png")  # full-size units, dmin = 270
    np.testing.assert_allclose(aloe.depth[aloe.valid],
                               3740 * 160 / (disparity[aloe.valid] + 270), rtol=1e-6)
    assert 1100 < aloe.depth[aloe.valid].min() < aloe.depth.max() < 2200  # mm
    assert aloe.valid.mean() > 0.8


def test_full_size_aloe_is_the_half_size_scene_in_the_same_units(half):
    """benchmarks/results.py reads ../shared/data/aloe-full as a Middlebury 2006 scene with the
    half-size Aloe's dmin. That holds only if the full-size disparity is the same crop in the
    same (full-size pixel) units: at half size it must match the half-size file."""
    full = DATA / "aloe-full" / "aloeGT.png"
    if not full.is_file():
        pytest.skip(f"dev data not found at {full}")
    disparity = read_depth(full)
    assert disparity.shape == (1110, 1282)
    small = cv2.resize(disparity, (641, 555), interpolation=cv2.INTER_NEAREST)
    reference = read_depth(HALF / "aloe" / "disp1.png")
    known = (small > 0) & (reference > 0)
    assert known.mean() > 0.9
    assert np.abs(small[known] - reference[known]).mean() < 1.0  # disparity levels
    assert np.median(small[known] / reference[known]) == pytest.approx(1.0, abs=0.01)


def test_middlebury2006_view5(half):
    right = Middlebury2006(HALF / "aloe", view=5)
    assert right.names == ("aloe",)
    sample = right[0]
    assert sample.valid.mean() > 0.8
    assert not np.array_equal(sample.image, half[0].image)


# ------------------------------------------------------------------- Middlebury 2006, synthetic

def test_middlebury2006_depth_formula(tmp_path):
    _scene2006(tmp_path / "scenes" / "toy", DISP)
    sample = Middlebury2006(tmp_path / "scenes")[0]
    _check_sample(sample, DISP.shape)
    assert sample.name == "toy"
    np.testing.assert_array_equal(sample.valid, DISP > 0)
    # Hand values: f·B / (d + dmin) with no third-size factor.
    assert sample.depth[0, 1] == pytest.approx(3740 * 160 / (4 + 80))
    assert sample.depth[6, 8] == pytest.approx(3740 * 160 / (248 + 80))
    assert sample.depth[3, 4] == 0 and sample.depth[0, 0] == 0


def test_middlebury2006_single_scene_root_and_sorting(tmp_path):
    single = Middlebury2006(_scene2006(tmp_path / "one", DISP))
    assert single.names == ("one",) and len(single) == 1
    for name in ("b", "a", "c"):
        _scene2006(tmp_path / "many" / name, DISP)
    (tmp_path / "many" / ".cache").mkdir()
    many = Middlebury2006(tmp_path / "many")
    assert many.names == ("a", "b", "c")
    assert [s.name for s in many] == ["a", "b", "c"]
    assert many[-1].name == "c"
    with pytest.raises(IndexError):
        many[3]


@pytest.mark.parametrize("missing", ["view1.png", "disp1.png", "dmin.txt"])
def test_middlebury2006_missing_file_names_scene_and_file(tmp_path, missing):
    _scene2006(tmp_path / "root" / "aloe", DISP)
    _scene2006(tmp_path / "root" / "baby1", DISP)
    (tmp_path / "root" / "baby1" / missing).unlink()
    with pytest.raises(InputError, match=rf"scene 'baby1': missing {missing}"):
        Middlebury2006(tmp_path / "root")


@pytest.mark.parametrize("dmin", ["", "abc", "80 90", "nan"])
def test_middlebury2006_garbage_dmin(tmp_path, dmin):
    reader = Middlebury2006(_scene2006(tmp_path / "toy", DISP, dmin=dmin))
    with pytest.raises(InputError, match=r"scene 'toy'.*dmin\.txt"):
        reader[0]


def test_middlebury2006_disparity_checks(tmp_path):
    folder = _scene2006(tmp_path / "toy", DISP)
    reader = Middlebury2006(folder)
    assert cv2.imwrite(str(folder / "disp1.png"), cv2.merge([DISP] * 3))
    with pytest.raises(InputError, match=r"scene 'toy'.*disp1\.png.*8-bit single-channel.*RGB"):
        reader[0]
    assert cv2.imwrite(str(folder / "disp1.png"), DISP[:, :-1])
    with pytest.raises(InputError, match=r"disp1\.png' is 8x7 but .*view1\.png' is 9x7"):
        reader[0]
    (folder / "disp1.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(InputError, match=r"scene 'toy'.*disp1\.png"):
        reader[0]


def test_middlebury2006_bad_view_and_roots(tmp_path):
    with pytest.raises(InputError, match="view must be 1 or 5"):
        Middlebury2006(tmp_path, view=2)
    with pytest.raises(InputError, match="does not exist.*view1.png"):
        Middlebury2006(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InputError, match="is not a folder"):
        Middlebury2006(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no scene folders.*view1.png, disp1.png"):
        Middlebury2006(tmp_path / "empty")


# ------------------------------------------------------------------------------- Middlebury 2014

@pytest.fixture(scope="module")
def motorcycle(tmp_path_factory):
    left, _, disparity = data.stereo_motorcycle()
    folder = tmp_path_factory.mktemp("mb2014") / "Motorcycle"
    folder.mkdir()
    _write_rgb(folder / "im0.png", left)
    write_depth(folder / "disp0.pfm", disparity, format="pfm")
    (folder / "calib.txt").write_text(MOTORCYCLE_CALIB)
    return folder, left, disparity


def test_middlebury2014_depth_formula(motorcycle):
    folder, left, disparity = motorcycle
    reader = Middlebury2014(folder.parent)
    assert reader.names == ("Motorcycle",)
    sample = reader[0]
    _check_sample(sample, (500, 741))
    np.testing.assert_array_equal(sample.image, left)
    known = np.isfinite(disparity)
    assert 0.05 < 1 - known.mean() < 0.1  # the fixture really has inf holes
    np.testing.assert_array_equal(sample.valid, known)
    expected = 193.001 * 3979.911 / (disparity[known].astype(np.float64) + 124.343)
    np.testing.assert_allclose(sample.depth[known], expected, rtol=1e-6)


@pytest.mark.parametrize("key", ["cam0", "doffs", "baseline"])
def test_middlebury2014_missing_calib_key(tmp_path, motorcycle, key):
    scene = _copy_with_calib(motorcycle[0], tmp_path / "scene", _calib_without(key))
    with pytest.raises(InputError, match=rf"scene 'scene'.*calib\.txt' is missing '{key}'"):
        Middlebury2014(scene)[0]


@pytest.mark.parametrize("line", ["cam0=[3979.911 0 1244.772]", "cam0=3979.911",
                                  "cam0=[x 0 1; 0 1 1; 0 0 1]", "baseline=abc", "baseline=-5"])
def test_middlebury2014_malformed_calib(tmp_path, motorcycle, line):
    calib = _calib_without(line.split("=")[0]) + "\n" + line
    scene = _copy_with_calib(motorcycle[0], tmp_path / "scene", calib)
    reader = Middlebury2014(scene)
    with pytest.raises(InputError, match=rf"scene 'scene'.*{line.split('=')[0]}.*calib\.txt"):
        reader[0]


def _calib_without(key: str) -> str:
    return "\n".join(x for x in MOTORCYCLE_CALIB.splitlines() if not x.startswith(key + "="))


def _copy_with_calib(source: Path, scene: Path, calib: str) -> Path:
    scene.mkdir()
    for name in ("im0.png", "disp0.pfm"):
        shutil.copyfile(source / name, scene / name)
    (scene / "calib.txt").write_text(calib)
    return scene


# ---------------------------------------------------------------------------------- DepthFolder

@pytest.fixture
def folder(tmp_path):
    """Three images (RGBA png, gray jpg, RGB png) with npy, 16-bit png and pfm depth."""
    for sub in ("images", "depth", "masks"):
        (tmp_path / sub).mkdir()
    shape = (6, 8)
    rgba = np.dstack([_rgb(shape, 1), np.full(shape, 7, np.uint8)])
    assert cv2.imwrite(str(tmp_path / "images" / "a.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    assert cv2.imwrite(str(tmp_path / "images" / "b.jpg"), np.full(shape, 90, np.uint8))
    _write_rgb(tmp_path / "images" / "c.png", _rgb(shape, 2))
    depth_a = np.linspace(0.5, 3.0, 48, dtype=np.float32).reshape(shape)
    depth_a[0, 0], depth_a[0, 1], depth_a[0, 2] = np.nan, np.inf, -1.0
    np.save(tmp_path / "depth" / "a.npy", depth_a)
    depth_b = np.arange(48, dtype=np.uint16).reshape(shape) * 1000
    assert cv2.imwrite(str(tmp_path / "depth" / "b.png"), depth_b)
    write_depth(tmp_path / "depth" / "c.pfm", np.full(shape, 2.5, np.float32))
    mask = np.ones(shape, np.uint8) * 255
    mask[5, :] = 0
    assert cv2.imwrite(str(tmp_path / "masks" / "a.png"), mask)
    return tmp_path, rgba, depth_a, depth_b


def test_depth_folder_reads_all_formats(folder):
    root, rgba, depth_a, depth_b = folder
    reader = DepthFolder(root)
    assert reader.names == ("a", "b", "c")
    with pytest.warns(UserWarning, match="RGBA; converted"):
        a = reader[0]
    with pytest.warns(UserWarning, match="gray; converted"):
        b = reader[1]
    c = reader[2]
    for sample in (a, b, c):
        _check_sample(sample, (6, 8))
    np.testing.assert_array_equal(a.image, rgba[..., :3])  # alpha dropped, RGB order kept
    expected_valid = np.isfinite(depth_a) & (depth_a > 0)
    expected_valid[5, :] = False  # masked out
    np.testing.assert_array_equal(a.valid, expected_valid)
    np.testing.assert_array_equal(a.depth[a.valid], depth_a[a.valid])
    assert np.all(b.image == 90)  # gray replicated to three channels
    np.testing.assert_array_equal(b.depth, depth_b)  # 16-bit values as stored
    np.testing.assert_array_equal(b.valid, depth_b > 0)  # no mask file: all positive values
    assert c.valid.all() and np.all(c.depth == 2.5)


def test_depth_folder_disparity(folder):
    root, _, _, depth_b = folder
    with pytest.warns(UserWarning, match="gray; converted"):
        b = DepthFolder(root, disparity=True)[1]
    np.testing.assert_array_equal(b.valid, depth_b > 0)
    np.testing.assert_allclose(b.depth[b.valid], 1.0 / depth_b[depth_b > 0], rtol=1e-6)
    assert b.depth[0, 0] == 0


def test_depth_folder_errors(folder):
    root = folder[0]
    (root / "images" / "d.jpeg").write_bytes((root / "images" / "b.jpg").read_bytes())
    with pytest.raises(InputError, match=r"d\.jpeg' has no ground truth: expected .*depth/d\."):
        DepthFolder(root)
    np.save(root / "depth" / "d.npy", np.ones((6, 9), np.float32))
    reader = DepthFolder(root)
    with pytest.raises(InputError, match=r"scene 'd'.*d\.npy' is 9x6 but .*d\.jpeg' is 8x6"), \
            pytest.warns(UserWarning, match="gray; converted"):
        reader[3]
    np.save(root / "depth" / "c.npy", np.ones((6, 8), np.float32))
    with pytest.raises(InputError, match=r"c\.png' has several ground-truth.*c\.npy.*c\.pfm"):
        DepthFolder(root)


def test_depth_folder_layout_errors(tmp_path):
    with pytest.raises(InputError, match="has no 'images' subfolder.*depth/<name>"):
        DepthFolder(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "depth").mkdir()
    (tmp_path / "images" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="holds no images"):
        DepthFolder(tmp_path)


# ---------------------------------------------------------------------------------- open_dataset

def test_open_dataset_kinds_and_aliases(tmp_path, folder):
    scene = _scene2006(tmp_path / "mb", DISP)
    assert DATASETS == ("middlebury2006", "middlebury2014", "folder")
    assert isinstance(open_dataset("middlebury2005", scene), Middlebury2006)
    assert isinstance(open_dataset("middlebury2006", scene, view=1), Middlebury2006)
    assert isinstance(open_dataset("folder", folder[0], disparity=True), DepthFolder)
    with pytest.raises(InputError, match="middlebury2014 root .* holds no scene folders"):
        open_dataset("middlebury2021", scene)
    with pytest.raises(InputError, match="unknown dataset kind 'kitti'.*middlebury2006, "
                                         "middlebury2014, folder"):
        open_dataset("kitti", scene)
