"""Reading and writing depth maps (and photos and figures), with errors that name the file.

Every reader returns a float32 HxW array; every writer goes through :func:`atomic_output`, so a
failed write never leaves a half-written file or clobbers an earlier one.

EXR: OpenCV reads and writes EXR only when it was built with OpenEXR *and* the environment
variable ``OPENCV_IO_ENABLE_OPENEXR`` is set (it is off by default because the OpenEXR copy
bundled with OpenCV 4 is old). We set it below, before ``cv2`` is imported. The
opencv-python 5.x wheels are built without OpenEXR at all, so there we fall back to the
``OpenEXR`` package (``pip install openexr``) when it is installed.
"""

from __future__ import annotations

import importlib.util
import io
import math
import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # must precede the first EXR use in cv2
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(2**27))  # must precede cv2's load
import cv2

from ..errors import InputError
from .atomic import atomic_output

MAX_PIXELS = int(os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"])
"""Largest image read: 2²⁷ (134 megapixels: a 102-megapixel camera's photos fit) unless the
environment sets OPENCV_IO_MAX_IMAGE_PIXELS. A 16000×16000 PNG of 250 kB (a decompression
bomb) once decoded into 768 MB and failed in the allocator 78 s later. PNG sizes are checked
here from the header; OpenCV refuses other formats beyond it before decoding them, when this
module set the budget before cv2 loaded (`sddr_core` imports it first; a host that loaded
cv2 earlier keeps OpenCV's own budget, 2³⁰ pixels)."""

FORMATS = ("png16", "png8", "npy", "pfm", "exr", "tiff")

_WRITE_EXTS = {".png": "png16", ".npy": "npy", ".pfm": "pfm", ".exr": "exr",
               ".tif": "tiff", ".tiff": "tiff"}
_EXT_FORMATS = {"png16": {".png"}, "png8": {".png"}, "npy": {".npy"}, "pfm": {".pfm"},
                "exr": {".exr"}, "tiff": {".tif", ".tiff"}}
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the chunk every complete PNG ends with
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"  # then IHDR: length, "IHDR", width, height (big-endian)


def suffix_for_format(fmt: str) -> str:
    """The file extension a depth map in `fmt` gets when we choose its name."""
    if fmt not in _EXT_FORMATS:
        raise InputError(f"unknown depth format {fmt!r} (choose from {', '.join(FORMATS)})")
    return min(_EXT_FORMATS[fmt], key=len)


def format_for_path(path: str | os.PathLike) -> str:
    """The write format implied by the extension of ``path`` (``.png`` means 16-bit PNG)."""
    fmt = _WRITE_EXTS.get(Path(path).suffix.lower())
    if fmt is None:
        raise InputError(f"cannot write depth map '{path}': unsupported extension "
                         f"'{Path(path).suffix}' (supported: {', '.join(_WRITE_EXTS)})")
    return fmt


# --------------------------------------------------------------------------------------- reading

def read_depth(path: str | os.PathLike) -> np.ndarray:
    """Read a depth map as float32 HxW; integer PNG/TIFF/JPEG values are returned as-is.

    Multi-channel files (a depth map saved as RGB, a colour PFM/EXR) give their first channel in
    the file's own channel order (R for RGB, although OpenCV decodes BGR), with a warning.
    """
    p = Path(path)
    data = _read_bytes(p, "depth map")
    reader = _DEPTH_READERS.get(p.suffix.lower())
    if reader is None:
        raise InputError(f"cannot read depth map '{p}': unsupported extension '{p.suffix}' "
                         f"(supported: {', '.join(_DEPTH_READERS)})")
    return _single_channel(reader(p, data), p)


PHOTO_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
"""Extensions taken for photos when a folder is read (lower case, with the dot)."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a photo as RGB uint8 HxWx3 (gray is repeated, alpha dropped, 16-bit scaled down,
    each with a warning that says so).

    OpenCV's ``IMREAD_COLOR`` does these conversions, and applies the EXIF orientation.
    """
    p = Path(path)
    data = _read_bytes(p, "image")
    stored = _decode(p, data, cv2.IMREAD_UNCHANGED, "image")
    channels = 1 if stored.ndim == 2 else stored.shape[2]
    if stored.dtype != np.uint8 or channels != 3:
        kind = {1: "gray", 2: "gray+alpha", 4: "RGBA"}.get(channels, f"{channels}-channel")
        bits = stored.dtype.itemsize * 8
        warnings.warn(f"image '{p}' is {bits}-bit {kind}; converted to 8-bit RGB", stacklevel=2)
    return _decode(p, data, cv2.IMREAD_COLOR, "image")


def write_image(path: str | os.PathLike, rgb: np.ndarray, params: tuple[int, ...] = ()) -> Path:
    """Write an RGB uint8 HxWx3 image (a photo, a figure) atomically, in the format its
    extension names; `params` are OpenCV's (e.g. ``(cv2.IMWRITE_JPEG_QUALITY, 85)``).

    A failed encode raises InputError and leaves an earlier file as it was (unchecked,
    `cv2.imwrite` would leave the empty temporary file to be moved into place).
    """
    p = Path(path)
    with atomic_output(p) as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(rgb[..., ::-1]), list(params)):
            raise InputError(f"could not write image '{p}'")
    return p


def check_image(path: str | os.PathLike) -> None:
    """Refuse a photo that is missing, not a regular file, or not in a format OpenCV knows,
    from its first bytes only: so a folder of photos can be checked before any model loads."""
    p = Path(path)
    _check_regular_file(p, "image")
    try:
        known = cv2.haveImageReader(str(p))
    except cv2.error:
        known = False
    if not known:
        raise InputError(f"cannot read image '{p}': not an image format OpenCV can read")


def _check_regular_file(p: Path, what: str) -> None:
    """Missing files, folders and special files (a FIFO would block the read forever) are
    refused before anything opens them."""
    try:
        status = p.stat()
    except FileNotFoundError:
        raise InputError(f"cannot read {what} '{p}': no such file") from None
    except OSError as e:
        raise InputError(f"cannot read {what} '{p}': {e.strerror or e}") from e
    if stat.S_ISDIR(status.st_mode):
        raise InputError(f"cannot read {what} '{p}': is a directory, not a file")
    if not stat.S_ISREG(status.st_mode):
        raise InputError(f"cannot read {what} '{p}': not a regular file (a FIFO, socket or "
                         "device)")
    if status.st_size == 0:
        raise InputError(f"cannot read {what} '{p}': file is empty")


def _read_bytes(p: Path, what: str) -> bytes:
    """The whole file, or an InputError saying why not (decoding from memory keeps cv2 quiet
    about paths and lets us check the bytes ourselves)."""
    _check_regular_file(p, what)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {what} '{p}': {e.strerror or e}") from e
    if not data:
        raise InputError(f"cannot read {what} '{p}': file is empty")
    return data


def _decode(p: Path, data: bytes, flags: int, what: str) -> np.ndarray:
    """Decode with OpenCV; 3/4-channel results are returned in RGB(A) order."""
    # libpng may decode a truncated PNG partially without an error: demand its final chunk.
    if p.suffix.lower() == ".png" and _PNG_IEND not in data:
        raise InputError(f"cannot read {what} '{p}': truncated or corrupt PNG (no IEND chunk)")
    too_large = (f"cannot read {what} '{p}': it has more than {MAX_PIXELS:,} pixels, the most "
                 "sddr reads (it would exhaust memory); scale it down first")
    if data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR":
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        if width * height > MAX_PIXELS:
            raise InputError(too_large)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as e:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(e):  # OpenCV's own budget, for other formats
            raise InputError(too_large) from None
        raise InputError(f"cannot read {what} '{p}': OpenCV cannot decode it ({e})") from e
    if img is None:
        raise InputError(f"cannot read {what} '{p}': corrupt, truncated or not an image")
    if img.ndim == 3 and img.shape[2] in (3, 4):
        img = img[..., [2, 1, 0, 3][: img.shape[2]]]
    return img


def _read_cv2(p: Path, data: bytes) -> np.ndarray:
    return _decode(p, data, cv2.IMREAD_UNCHANGED, "depth map")


def _read_npy(p: Path, data: bytes) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:  # numpy raises ValueError, EOFError, OSError... for bad files
        raise InputError(f"cannot read depth map '{p}': not a valid .npy file ({e})") from e


_PFM_HEADER = re.compile(rb"(PF|Pf)\s+(\d+)\s+(\d+)\s+(\S+)\s")


def _read_pfm(p: Path, data: bytes) -> np.ndarray:
    """PFM: 'PF' (RGB) or 'Pf' (gray), width height, scale (< 0: little-endian), then float32
    rows from bottom to top."""
    m = _PFM_HEADER.match(data)
    try:
        scale = float(m.group(4)) if m else 0.0
    except ValueError:
        scale = 0.0
    if not m or scale == 0.0 or not math.isfinite(scale):
        raise InputError(f"cannot read depth map '{p}': malformed PFM header "
                         f"(expected 'Pf' or 'PF', width, height, finite non-zero scale)")
    channels = 3 if m.group(1) == b"PF" else 1
    w, h = int(m.group(2)), int(m.group(3))
    expected, found = w * h * channels * 4, len(data) - m.end()
    if found != expected:
        raise InputError(f"cannot read depth map '{p}': PFM of {w}x{h}x{channels} needs "
                         f"{expected} bytes of pixel data, found {found}")
    pixels = np.frombuffer(data, "<f4" if scale < 0 else ">f4", offset=m.end())
    return pixels.reshape((h, w, channels) if channels > 1 else (h, w))[::-1]


def _read_exr(p: Path, data: bytes) -> np.ndarray:
    if _exr_backend(p, "read") == "cv2":
        return _read_cv2(p, data)
    import OpenEXR

    try:
        with OpenEXR.File(str(p), separate_channels=True) as f:
            chans = {name: c.pixels for name, c in f.channels().items()}
    except Exception as e:
        raise InputError(f"cannot read depth map '{p}': not a readable EXR file ({e})") from e
    names = ([n for n in ("R", "G", "B", "A", "Y", "Z") if n in chans] or sorted(chans))[:4]
    return np.dstack([chans[n] for n in names]) if len(names) > 1 else chans[names[0]]


def _single_channel(arr: np.ndarray, p: Path) -> np.ndarray:
    """Check shape and type; take channel 0 of multi-channel data (warning); make float32."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    elif arr.ndim == 3 and 2 <= arr.shape[2] <= 4:
        name = "R" if arr.shape[2] >= 3 else "the first"
        warnings.warn(f"depth map '{p}' has {arr.shape[2]} channels; using channel 0 ({name})",
                      stacklevel=3)
        arr = arr[..., 0]
    _check_plane(arr, p, "read", "a non-empty HxW or HxWxC (C <= 4) array")
    return np.array(arr, dtype=np.float32, order="C")


def _check_plane(arr: np.ndarray, p: Path, action: str, expected: str) -> None:
    """A depth map is one non-empty 2-D plane of integer or float values."""
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(f"cannot {action} depth map '{p}': expected {expected}, "
                         f"got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"cannot {action} depth map '{p}': values are not numeric ({arr.dtype})")


_DEPTH_READERS = {".png": _read_cv2, ".jpg": _read_cv2, ".jpeg": _read_cv2, ".tif": _read_cv2,
                  ".tiff": _read_cv2, ".exr": _read_exr, ".npy": _read_npy, ".pfm": _read_pfm}
READ_EXTENSIONS = tuple(_DEPTH_READERS)
"""File extensions `read_depth` reads (lower case, with the dot)."""


# --------------------------------------------------------------------------------------- writing

def write_depth(path: str | os.PathLike, depth: np.ndarray, format: str | None = None) -> Path:
    """Write ``depth`` (HxW) atomically and return the path.

    ``format`` defaults to the one implied by the extension; one that disagrees with the
    extension is an error (``png8`` and ``png16`` both go to ``.png``).

    - png16 / png8: integer arrays whose values fit 0..65535 / 0..255 are written exactly;
      anything else is min-max normalised over its finite values to the full range, and
      non-finite values (NaN, inf) become 0.
    - npy, pfm, exr, tiff: float32, so float32 input round-trips bit-exactly.

    A map with no finite value at all is refused: it holds no depth, whatever the format.
    """
    p = Path(path)
    fmt = check_output(p, format)
    arr = _prepare(np.asarray(depth), fmt, p)
    if fmt == "exr" and _exr_backend(p, "write") == "openexr":
        # Imported before the temporary file exists: a signal landing inside an extension's
        # import comes out as "ImportError: initialization failed", not as the interruption.
        importlib.import_module("OpenEXR")
    with atomic_output(p) as tmp:
        _WRITERS[fmt](tmp, arr)
    return p


def check_output(path: str | os.PathLike, format: str | None = None) -> str:
    """The format `write_depth(path, ..., format)` would use, or the InputError it would raise
    about the name, the format or a folder in the way: so a caller can check before a long run.
    """
    p = Path(path)
    if format is None:
        format = format_for_path(p)
    elif format not in FORMATS:
        raise InputError(f"cannot write depth map '{p}': unknown format '{format}' "
                         f"(supported: {', '.join(FORMATS)})")
    elif p.suffix.lower() not in _EXT_FORMATS[format]:
        raise InputError(f"cannot write depth map '{p}': format '{format}' needs the extension "
                         f"{' or '.join(sorted(_EXT_FORMATS[format]))}, not '{p.suffix}'")
    if p.is_dir():
        raise InputError(f"cannot write depth map '{p}': a folder of that name is in the way")
    existing = next(folder for folder in p.absolute().parents if folder.exists())
    if not existing.is_dir():
        raise InputError(f"cannot write output folder '{existing}': it is a file, not a folder")
    if format == "exr":
        _exr_backend(p, "write")
    return format


def _prepare(arr: np.ndarray, fmt: str, p: Path) -> np.ndarray:
    """Validate and convert to the dtype that will be stored."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    _check_plane(arr, p, "write", "a non-empty HxW array")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).any():
        raise InputError(f"cannot write depth map '{p}': it holds no finite value "
                         "(all NaN or infinite)")
    if fmt in ("png16", "png8"):
        mapping = stored_range(arr, fmt)
        dtype = np.uint16 if fmt == "png16" else np.uint8
        if mapping is None:
            return arr.astype(dtype)
        (_, top), (low, high) = mapping
        return np.round(_unit_range(arr, low, high)[0] * top).astype(dtype)
    return np.asarray(arr, dtype=np.float32)


def stored_range(depth: np.ndarray, format: str):
    """How `write_depth` stores `depth` in `format`: ((0, top code), (value at 0, value at
    top)) when it normalises the values onto a PNG's codes (min-max over the finite values),
    or None when the file holds the values themselves (float formats, and integers that fit
    the PNG). What a sidecar records (`sidecar.write_depth_with_meaning`)."""
    if format not in ("png16", "png8"):
        return None
    arr = np.asarray(depth)
    top = 65535 if format == "png16" else 255
    if np.issubdtype(arr.dtype, np.integer) and arr.min() >= 0 and arr.max() <= top:
        return None
    finite = arr[np.isfinite(arr)].astype(np.float64)
    return (0, top), (float(finite.min()), float(finite.max()))


def _unit_range(depth: np.ndarray, lo: float | None = None, hi: float | None = None):
    """Map ``depth`` linearly from [lo, hi] (default: its finite min and max) onto [0, 1],
    clipped, with 0 where it is not finite; returns the float64 result and the finite mask."""
    d = np.asarray(depth, dtype=np.float64)
    finite = np.isfinite(d)
    if not finite.any():
        return np.zeros(d.shape), finite
    lo = d[finite].min() if lo is None else float(lo)
    hi = d[finite].max() if hi is None else float(hi)
    scale = 1.0 / (hi - lo) if hi > lo else 0.0
    with np.errstate(invalid="ignore"):
        return np.where(finite, np.clip((d - lo) * scale, 0.0, 1.0), 0.0), finite


def _encode_cv2(tmp: Path, arr: np.ndarray, params: tuple[int, ...] = ()) -> None:
    try:
        ok, buf = cv2.imencode(tmp.suffix, arr, list(params))
    except cv2.error as e:
        raise InputError(f"cannot encode depth map as '{tmp.suffix}': {e}") from e
    if not ok:
        raise InputError(f"cannot encode depth map as '{tmp.suffix}'")
    tmp.write_bytes(buf.tobytes())


def _write_npy(tmp: Path, arr: np.ndarray) -> None:
    with open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def _write_pfm(tmp: Path, arr: np.ndarray) -> None:
    """Grayscale little-endian PFM (negative scale), rows bottom to top."""
    h, w = arr.shape
    pixels = np.ascontiguousarray(arr[::-1], "<f4").tobytes()
    tmp.write_bytes(b"Pf\n%d %d\n-1.0\n" % (w, h) + pixels)


def _write_exr(tmp: Path, arr: np.ndarray) -> None:
    if _exr_backend(tmp, "write") == "cv2":
        return _encode_cv2(tmp, arr, (cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_FLOAT))
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"Y": np.ascontiguousarray(arr)}) as f:
        try:
            f.write(str(tmp))
        except RuntimeError as e:  # OpenEXR's word for a failed write (a full disk, a quota)
            raise OSError(f"OpenEXR: {e}") from e


_WRITERS = {"png16": _encode_cv2, "png8": _encode_cv2, "npy": _write_npy, "pfm": _write_pfm,
            "exr": _write_exr, "tiff": _encode_cv2}


def _exr_backend(p: Path, action: str) -> str:
    """'cv2' if this OpenCV has the EXR codec, else 'openexr' if that package is installed."""
    if cv2.haveImageWriter(".exr"):
        return "cv2"
    if importlib.util.find_spec("OpenEXR") is not None:
        return "openexr"
    raise InputError(f"cannot {action} EXR '{p}': this OpenCV ({cv2.__version__}) was built "
                     "without OpenEXR (as the opencv-python 5.x wheels are); install the "
                     "'openexr' package or opencv-python-headless<5, or use .tiff/.pfm/.npy")


# ---------------------------------------------------------------------------------------- figures

def colorize_depth(depth: np.ndarray, lo: float | None = None,
                   hi: float | None = None) -> np.ndarray:
    """RGB uint8 HxWx3 rendering with the Turbo colormap over [lo, hi] (default: min..max of the
    finite values); NaN and inf are black. For figures, not for storing depth."""
    d = np.asarray(depth)
    if d.ndim != 2:
        raise InputError(f"colorize_depth expects an HxW array, got shape {d.shape}")
    unit, finite = _unit_range(d, lo, hi)
    bgr = cv2.applyColorMap(np.round(unit * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb[~finite] = 0
    return rgb
