"""Depth-map I/O: exact round trips, channel handling, clear errors, atomic writes."""

from __future__ import annotations

import errno
import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from sddr_core.errors import InputError
from sddr_core.files import depth_io
from sddr_core.files.atomic import atomic_output
from sddr_core.files.depth_io import (
    FORMATS,
    check_image,
    check_output,
    colorize_depth,
    format_for_path,
    read_depth,
    read_image,
    write_depth,
    write_image,
)

SHAPE = (37, 53)  # odd and non-square, to catch transposes and row-order mistakes


def _random_float(seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(SHAPE) * 100).astype(np.float32)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------- round trips

def test_png16_round_trip_is_exact(tmp_path):
    depth = np.random.default_rng(1).integers(0, 65536, SHAPE, dtype=np.uint16)
    depth[0, 0], depth[-1, -1] = 0, 65535
    out = write_depth(tmp_path / "d.png", depth)
    assert out == tmp_path / "d.png"
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    back = read_depth(out)
    assert back.dtype == np.float32 and back.shape == SHAPE
    assert np.array_equal(back, depth.astype(np.float32))


def test_png8_round_trip_is_exact(tmp_path):
    depth = np.random.default_rng(2).integers(0, 256, SHAPE, dtype=np.uint8)
    depth[0, 0], depth[-1, -1] = 0, 255
    out = write_depth(tmp_path / "d.png", depth, format="png8")
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    assert np.array_equal(read_depth(out), depth.astype(np.float32))


@pytest.mark.parametrize("name", ["d.npy", "d.pfm", "d.tiff", "d.tif"])
def test_float_round_trip_is_bit_exact(tmp_path, name):
    depth = _random_float()
    assert (depth < 0).any()
    back = read_depth(write_depth(tmp_path / name, depth))
    assert back.dtype == np.float32 and back.shape == SHAPE
    assert np.array_equal(back, depth)


def _exr_backends() -> list:
    cv2_ok = cv2.haveImageWriter(".exr")
    openexr_ok = importlib.util.find_spec("OpenEXR") is not None
    return [
        pytest.param("cv2", marks=pytest.mark.skipif(
            not cv2_ok, reason=f"OpenCV {cv2.__version__} was built without OpenEXR")),
        pytest.param("openexr", marks=pytest.mark.skipif(
            not openexr_ok, reason="the OpenEXR package is not installed")),
    ]


@pytest.mark.parametrize("backend", _exr_backends())
def test_exr_round_trip_is_bit_exact(tmp_path, monkeypatch, backend):
    monkeypatch.setattr(depth_io, "_exr_backend", lambda p, action: backend)
    depth = _random_float(3)
    back = read_depth(write_depth(tmp_path / "d.exr", depth))
    assert back.dtype == np.float32 and np.array_equal(back, depth)


def test_exr_without_any_codec_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(cv2, "haveImageWriter", lambda ext: False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match="openexr") as e:
        write_depth(tmp_path / "out" / "d.exr", _random_float())
    assert str(tmp_path / "out" / "d.exr") in str(e.value)
    assert not (tmp_path / "out").exists()  # failed before touching the disk


def test_float_to_png16_is_normalised_to_full_range(tmp_path):
    depth = np.linspace(-3.0, 7.0, SHAPE[0] * SHAPE[1]).reshape(SHAPE).astype(np.float32)
    depth[5, 5] = np.nan
    back = read_depth(write_depth(tmp_path / "d.png", depth))
    assert back.min() == 0 and back.max() == 65535
    assert back[0, 0] == 0 and back[-1, -1] == 65535 and back[5, 5] == 0
    assert np.all(np.diff(back.ravel()[6 * SHAPE[1]:]) >= 0)  # order preserved


def test_out_of_range_integers_are_normalised(tmp_path):
    depth = np.arange(SHAPE[0] * SHAPE[1], dtype=np.int32).reshape(SHAPE) - 100
    back = read_depth(write_depth(tmp_path / "d.png", depth, format="png8"))
    assert back.min() == 0 and back.max() == 255


def test_format_for_path():
    assert format_for_path("a/b.PNG") == "png16"
    assert format_for_path("x.tif") == format_for_path("x.tiff") == "tiff"
    assert {format_for_path(f"x.{e}") for e in ("npy", "pfm", "exr")} == {"npy", "pfm", "exr"}
    assert set(FORMATS) == {"png16", "png8", "npy", "pfm", "exr", "tiff"}
    with pytest.raises(InputError, match=r"x\.jpg.*\.png"):
        format_for_path("x.jpg")


# -------------------------------------------------------------------------- multi-channel input

def test_rgb_png_depth_uses_red_channel_with_warning(tmp_path):
    rgb = np.zeros((*SHAPE, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    path = tmp_path / "rgb.png"
    cv2.imwrite(str(path), rgb[..., ::-1])  # cv2 wants BGR
    with pytest.warns(UserWarning, match=r"rgb\.png.*channel 0 \(R\)"):
        back = read_depth(path)
    assert back.shape == SHAPE and np.all(back == 10)


def test_color_pfm_uses_channel_0_with_warning(tmp_path):
    h, w = 3, 4
    rgb = np.random.default_rng(4).standard_normal((h, w, 3)).astype(np.float32)
    path = tmp_path / "c.pfm"  # big-endian (positive scale), rows bottom to top
    path.write_bytes(b"PF\n%d %d\n1.0\n" % (w, h) + rgb[::-1].astype(">f4").tobytes())
    with pytest.warns(UserWarning, match=r"c\.pfm.*3 channels.*channel 0"):
        back = read_depth(path)
    assert np.array_equal(back, rgb[..., 0])


def test_npy_with_single_channel_axis_is_squeezed(tmp_path):
    depth = _random_float()
    np.save(tmp_path / "d.npy", depth[..., None])
    assert np.array_equal(read_depth(tmp_path / "d.npy"), depth)


# ------------------------------------------------------------------------------------- errors

def _assert_input_error(path, match: str, reader=read_depth):
    with pytest.raises(InputError, match=match) as e:
        reader(path)
    assert str(path) in str(e.value)


def test_missing_file(tmp_path):
    _assert_input_error(tmp_path / "nope.png", "no such file")


def test_directory(tmp_path):
    (tmp_path / "d.png").mkdir()
    _assert_input_error(tmp_path / "d.png", "directory")
    (tmp_path / "maps").mkdir()  # no extension: still a folder, not an "unsupported extension"
    _assert_input_error(tmp_path / "maps", "is a directory, not a file")


def test_fifo_is_refused_without_opening_it(tmp_path):
    os.mkfifo(tmp_path / "d.npy")  # opening it would block until a writer comes: never
    _assert_input_error(tmp_path / "d.npy", "not a regular file")
    _assert_input_error(tmp_path / "d.npy", "not a regular file", read_image)


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "d.png"
    path.write_bytes(b"x")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    _assert_input_error(path, "Permission denied")


def test_empty_file(tmp_path):
    (tmp_path / "d.png").write_bytes(b"")
    _assert_input_error(tmp_path / "d.png", "empty")


def test_truncated_png(tmp_path):
    path = write_depth(tmp_path / "d.png", np.full(SHAPE, 1234, np.uint16))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _assert_input_error(path, "truncated")


def test_garbage_png_and_tiff(tmp_path):
    for name in ("g.png", "g.tiff"):
        (tmp_path / name).write_bytes(b"definitely not an image" + b"IEND" * 3)
        _assert_input_error(tmp_path / name, "corrupt")


def test_unsupported_extension(tmp_path):
    path = tmp_path / "d.bmp"
    path.write_bytes(b"BM")
    _assert_input_error(path, r"unsupported extension '\.bmp'.*\.png")


def test_corrupt_npy(tmp_path):
    (tmp_path / "c.npy").write_bytes(b"\x93NUMPY garbage")
    _assert_input_error(tmp_path / "c.npy", r"not a valid \.npy")


@pytest.mark.parametrize("array, match", [
    (np.zeros(5, np.float32), "shape"),
    (np.zeros((2, 3, 4, 5), np.float32), "shape"),
    (np.zeros((2, 3, 7), np.float32), "shape"),
    (np.array([["a", "b"]]), "not numeric"),
    (np.zeros((2, 2), np.complex64), "not numeric"),
])
def test_bad_npy_content(tmp_path, array, match):
    np.save(tmp_path / "b.npy", array)
    _assert_input_error(tmp_path / "b.npy", match)


def test_object_npy_is_refused_without_unpickling(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _assert_input_error(tmp_path / "o.npy", r"not a valid \.npy")


@pytest.mark.parametrize("content, match", [
    (b"P6\n4 3\n-1.0\n" + bytes(48), "malformed PFM header"),
    (b"Pf\nfour 3\n-1.0\n" + bytes(48), "malformed PFM header"),
    (b"Pf\n4 3\n0.0\n" + bytes(48), "malformed PFM header"),
    (b"Pf\n4 3\nnan\n" + bytes(48), "malformed PFM header"),
    (b"Pf\n4 3\n-inf\n" + bytes(48), "malformed PFM header"),
    (b"Pf\n4 3\n-1.0\n" + bytes(47), "48 bytes of pixel data, found 47"),
    (b"PF\n4 3\n-1.0\n" + bytes(48), "144 bytes of pixel data, found 48"),
])
def test_malformed_pfm(tmp_path, content, match):
    (tmp_path / "m.pfm").write_bytes(content)
    _assert_input_error(tmp_path / "m.pfm", match)


def test_write_format_mismatch_and_unknown_format(tmp_path):
    depth = _random_float()
    with pytest.raises(InputError, match=r"d\.npy.*'png16'.*\.png"):
        write_depth(tmp_path / "d.npy", depth, format="png16")
    with pytest.raises(InputError, match=r"unknown format 'jpeg'"):
        write_depth(tmp_path / "d.jpg", depth, format="jpeg")
    with pytest.raises(InputError, match=r"d\.jpg.*unsupported extension"):
        write_depth(tmp_path / "d.jpg", depth)
    assert _files(tmp_path) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_map_with_no_finite_value_is_never_written(tmp_path, fmt):
    path = tmp_path / f"d{depth_io.suffix_for_format(fmt)}"
    with pytest.raises(InputError, match="no finite value"):
        write_depth(path, np.full(SHAPE, np.nan, np.float32), fmt)
    assert _files(tmp_path) == []


def test_constant_and_partly_non_finite_maps_are_written(tmp_path):
    """A constant map is a legitimate file (a flat target); holes stay holes in float formats."""
    write_depth(tmp_path / "c.npy", np.full(SHAPE, 3.0, np.float32))
    holes = _random_float()
    holes[0, 0] = np.nan
    write_depth(tmp_path / "h.pfm", holes)
    assert np.isnan(read_depth(tmp_path / "h.pfm")[0, 0])


def test_check_output_refuses_before_anything_is_computed(tmp_path):
    (tmp_path / "folder.png").mkdir()
    assert check_output(tmp_path / "d.tif") == "tiff"
    assert check_output(tmp_path / "d.png", "png8") == "png8"
    with pytest.raises(InputError, match="unsupported extension '.jpg'"):
        check_output(tmp_path / "d.jpg")
    with pytest.raises(InputError, match="a folder of that name is in the way"):
        check_output(tmp_path / "folder.png")
    assert _files(tmp_path) == ["folder.png"]


def test_check_image_reads_only_the_signature(tmp_path):
    cv2.imwrite(str(tmp_path / "ok.jpg"), np.zeros((8, 8, 3), np.uint8))
    check_image(tmp_path / "ok.jpg")
    (tmp_path / "text.png").write_text("not a picture")
    with pytest.raises(InputError, match=r"'.*text\.png': not an image format"):
        check_image(tmp_path / "text.png")
    with pytest.raises(InputError, match="no such file"):
        check_image(tmp_path / "missing.png")


# ------------------------------------------------------------------------------ atomic writes

def test_failed_write_keeps_earlier_file_and_leaves_no_temp(tmp_path):
    path = write_depth(tmp_path / "d.png", np.full(SHAPE, 7, np.uint16))
    before = path.read_bytes()
    with pytest.raises(InputError, match="shape"):
        write_depth(path, np.zeros((2, 3, 4, 5), np.float32))
    assert path.read_bytes() == before and _files(tmp_path) == ["d.png"]


def test_encoder_failing_mid_write_keeps_earlier_file(tmp_path, monkeypatch):
    path = write_depth(tmp_path / "d.pfm", _random_float())
    before = path.read_bytes()

    def half_then_fail(tmp, arr):
        assert tmp.parent == tmp_path and tmp.suffix == ".pfm" and tmp.name.startswith(".d.")
        tmp.write_bytes(before[:10])
        raise RuntimeError("encoder died")

    monkeypatch.setitem(depth_io._WRITERS, "pfm", half_then_fail)
    with pytest.raises(RuntimeError, match="encoder died"):
        write_depth(path, _random_float(9))
    assert path.read_bytes() == before and _files(tmp_path) == ["d.pfm"]


def test_atomic_output_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_output(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".txt" and not target.exists()
        tmp.write_text("one")
    assert target.read_text() == "one"
    with pytest.raises(KeyboardInterrupt), atomic_output(target) as tmp:
        tmp.write_text("two")
        raise KeyboardInterrupt
    assert target.read_text() == "one" and _files(target.parent) == ["out.txt"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_atomic_output_gives_the_umask_mode_even_when_the_writer_replaced_the_file(tmp_path):
    from safetensors.numpy import save_file

    umask = os.umask(0o027)  # not the usual 0o022, so a default mode cannot pass by chance
    try:
        with atomic_output(tmp_path / "w.safetensors") as tmp:
            save_file({"a": np.zeros(2, np.float32)}, str(tmp))  # the real writer: makes 0o600
        with atomic_output(tmp_path / "d.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(umask)
    for name in ("w.safetensors", "d.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, name


def test_unwritable_folder_names_the_folder(tmp_path):
    (tmp_path / "afile").write_text("I am a file")
    with pytest.raises(InputError, match="output folder") as e:
        write_depth(tmp_path / "afile" / "out.png", np.zeros(SHAPE, np.uint16))
    assert f"'{tmp_path / 'afile'}'" in str(e.value)
    with pytest.raises(InputError, match="output folder") as e:
        write_depth(tmp_path / "afile" / "sub" / "out.png", np.zeros(SHAPE, np.uint16))
    assert str(tmp_path / "afile") in str(e.value)


def test_output_path_that_is_a_directory(tmp_path):
    (tmp_path / "d.png").mkdir()
    with pytest.raises(InputError, match=r"d\.png"):
        write_depth(tmp_path / "d.png", np.zeros(SHAPE, np.uint16))
    assert _files(tmp_path) == ["d.png"]


# ------------------------------------------------------------------------- figures and photos

def test_colorize_depth():
    depth = _random_float()
    depth[0, 0] = np.nan
    rgb = colorize_depth(depth)
    assert rgb.shape == (*SHAPE, 3) and rgb.dtype == np.uint8
    assert np.all(rgb[0, 0] == 0) and rgb.reshape(-1, 3).std(axis=0).min() > 0
    fixed = colorize_depth(np.array([[0.0, 1.0]]), lo=0.0, hi=1.0)
    low, high = fixed[0, 0], fixed[0, 1]
    assert low[2] > low[0] and high[0] > high[2]  # turbo runs from blue to red
    assert np.array_equal(colorize_depth(np.full((2, 2), 5.0)).shape, (2, 2, 3))


def test_write_image_round_trips_rgb_and_keeps_an_earlier_file_on_failure(tmp_path, monkeypatch):
    rgb = np.random.default_rng(6).integers(0, 256, (*SHAPE, 3), dtype=np.uint8)
    path = write_image(tmp_path / "f.png", rgb)
    assert np.array_equal(read_image(path), rgb)  # channel order kept, not swapped
    monkeypatch.setattr(cv2, "imwrite", lambda *args: False)
    with pytest.raises(InputError, match="could not write image"):
        write_image(path, rgb[::-1])
    assert np.array_equal(read_image(path), rgb) and _files(tmp_path) == ["f.png"]


def test_read_image_gray_rgba_and_16bit(tmp_path):
    gray = np.random.default_rng(5).integers(0, 256, SHAPE, dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    with pytest.warns(UserWarning, match="8-bit gray; converted to 8-bit RGB"):
        img = read_image(tmp_path / "g.png")
    assert img.shape == (*SHAPE, 3) and img.dtype == np.uint8
    assert all(np.array_equal(img[..., c], gray) for c in range(3))

    rgba = np.zeros((*SHAPE, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 7
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    with pytest.warns(UserWarning, match="8-bit RGBA"):
        img = read_image(tmp_path / "a.png")
    assert img.shape == (*SHAPE, 3) and np.all(img == [200, 100, 50])

    deep = np.full(SHAPE, 257 * 100, np.uint16)
    deep[0, 0] = 65535
    cv2.imwrite(str(tmp_path / "s.png"), deep)
    with pytest.warns(UserWarning, match="16-bit gray"):
        img = read_image(tmp_path / "s.png")
    assert img.dtype == np.uint8 and img[0, 0, 0] == 255 and img[1, 1, 0] == 100


def test_read_image_errors(tmp_path):
    _assert_input_error(tmp_path / "missing.jpg", "no such file", read_image)
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    _assert_input_error(tmp_path / "bad.jpg", "corrupt", read_image)


def test_write_failure_becomes_an_input_error_naming_the_file(tmp_path):
    target = tmp_path / "out.txt"
    full = pytest.raises(InputError, match=r"'.*out\.txt': No space left on device")
    with full, atomic_output(target) as tmp:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert _files(tmp_path) == []
