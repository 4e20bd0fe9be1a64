"""Depth maps and photos in and out of Blender images.

Depth is always read as float with colourspace Non-Color (set right after loading, before the
pixels are read: a 16-bit PNG otherwise comes back sRGB-linearised) and rows flipped, since
Blender stores pixels bottom-up. PNG (8/16-bit), OpenEXR, TIFF and JPEG go through Blender's own
loader, `.npy` through numpy (no pickles). The values are sddr's (`sddr_core.files.depth_io.
read_depth`, pinned to this by tests/test_blender_addon.py): integer images give their codes
(0..65535 for 16 bits, where Blender gives code/65535), and a sidecar (`depth_meaning`) maps
them onto the values they stand for.
"""

import os
import struct
from pathlib import Path

import bpy
import numpy as np

from .depth_meaning import DepthMeaning, SidecarError, read_sidecar
from .sequence import FrameSequence

NUMPY_SUFFIXES = (".npy",)
IMAGE_SUFFIXES = (".png", ".exr", ".tif", ".tiff", ".jpg", ".jpeg")
_sizes: dict[tuple[str, float], tuple[int, int]] = {}


class DepthFileError(ValueError):
    """A depth or image file that cannot be used; the message names the file and the problem."""


def resolve(path: str, what: str) -> Path:
    """An existing file for a (possibly blend-relative, '//') path setting."""
    if not path:
        raise DepthFileError(f"no {what} set")
    resolved = Path(bpy.path.abspath(path))
    if not resolved.is_file():
        raise DepthFileError(f"{what} '{resolved}' does not exist")
    return resolved


def read_meaning(path: str) -> DepthMeaning | None:
    """What the depth file's values mean, from its sidecar; None when it has none."""
    try:
        return read_sidecar(resolve(path, "depth file"))
    except SidecarError as err:
        raise DepthFileError(str(err)) from None


def read_depth(path: str) -> np.ndarray:
    """The depth map in `path` as float32 H×W (first channel of a colour file), as the values
    its sidecar says the stored numbers stand for, or as stored when it has none."""
    stored = _read_stored(path)
    meaning = read_meaning(path)
    return stored if meaning is None else meaning.values(stored).astype(np.float32)


def _read_stored(path: str) -> np.ndarray:
    file = resolve(path, "depth file")
    suffix = file.suffix.lower()
    if suffix in NUMPY_SUFFIXES:
        try:
            depth = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DepthFileError(f"depth file '{file}' is not a readable .npy array: "
                                 f"{err}") from None
        if depth.ndim == 3 and 1 <= depth.shape[-1] <= 4:  # sddr's rule: the first channel
            depth = depth[..., 0]
        if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
            raise DepthFileError(f"depth file '{file}' holds a {depth.dtype} array of shape "
                                 f"{depth.shape}, not a 2-D map of numbers")
        return depth.astype(np.float32)
    if suffix not in IMAGE_SUFFIXES:
        raise DepthFileError(f"depth file '{file}': {suffix or 'no'} extension is not readable "
                             f"here (use {', '.join(IMAGE_SUFFIXES + NUMPY_SUFFIXES)}; "
                             "`sddr refine --format exr` writes EXR)")
    image = _load(file, "depth file")
    try:
        image.colorspace_settings.name = "Non-Color"
        values = pixels(image)[..., 0].copy()
    finally:
        bpy.data.images.remove(image)
    bits = _bits(file)
    return values if bits is None else np.round(values * (2**bits - 1)).astype(np.float32)


def _bits(file: Path) -> int | None:
    try:
        return integer_bits(file)
    except (OSError, struct.error) as err:
        raise DepthFileError(f"depth file '{file}' has an unreadable header: {err}") from None


def integer_bits(file: Path) -> int | None:
    """Bits per sample of a PNG, JPEG or integer TIFF (whose samples Blender scales to 0..1),
    from its header; None for float files (EXR, float TIFF), whose values Blender keeps."""
    with open(file, "rb") as stream:
        head = stream.read(26)
        if head[:8] == b"\x89PNG\r\n\x1a\n":
            return 8 if head[25] == 3 else head[24]  # a palette's colours have 8 bits
        if head[:2] == b"\xff\xd8":
            return 8
        order = {b"II": "<", b"MM": ">"}.get(head[:2])
        if order is None:
            return None
        tags = _tiff_tags(stream, order, struct.unpack(order + "I", head[4:8])[0], (258, 339))
    return None if tags.get(339, 1) == 3 else tags.get(258)  # SampleFormat 3: IEEE float


def _tiff_tags(stream, order: str, offset: int, wanted: tuple[int, ...],
               base: int = 0) -> dict[int, int]:
    """First value of each `wanted` SHORT tag in the first directory of the TIFF structure that
    starts at `base` in the file (a TIFF file, or the Exif block of a JPEG or PNG)."""
    stream.seek(base + offset)
    (count,) = struct.unpack(order + "H", stream.read(2))
    entries = [struct.unpack(order + "HHI4s", stream.read(12)) for _ in range(count)]
    tags = {}
    for tag, _, number, value in entries:
        if tag in wanted:
            if number > 2:  # more than fits in the entry: it holds their offset
                stream.seek(base + struct.unpack(order + "I", value)[0])
                value = stream.read(2)
            tags[tag] = struct.unpack(order + "H", value[:2])[0]
    return tags


def load_photo(path: str) -> bpy.types.Image:
    """The photo as a Blender image, upright by its EXIF orientation (an already loaded one is
    reused).

    Blender's loader ignores a JPEG's or PNG's EXIF orientation, while sddr (OpenCV) and every
    photo viewer turn the picture upright by it, so depth made from a phone photo is upright:
    textured with the stored pixels, a mesh would be sideways or upside down (silently so when
    the photo is square or turned by 180°). A turned photo becomes a packed upright copy.
    """
    file = resolve(path, "image file")
    for image in bpy.data.images:
        if image.get(UPRIGHT_KEY) == str(file) or (
                image.filepath and Path(bpy.path.abspath(image.filepath)) == file):
            return image
    image = _load(file, "image file")
    try:
        orientation = photo_orientation(file)
    except (OSError, struct.error):
        orientation = 1  # no readable EXIF: as stored, as OpenCV would read it
    if orientation == 1:
        return image
    upright = upright_pixels(pixels(image), orientation)
    height, width = upright.shape[:2]
    copy = bpy.data.images.new(image.name, width, height, alpha=False)
    copy.colorspace_settings.name = image.colorspace_settings.name
    copy.pixels.foreach_set(np.ascontiguousarray(upright[::-1]).ravel())
    copy.pack()
    copy[UPRIGHT_KEY] = str(file)
    bpy.data.images.remove(image)
    return copy


UPRIGHT_KEY = "sddr_upright_of"
"""Custom property of an upright copy: the photo file it was made from."""


def upright_pixels(stored: np.ndarray, orientation: int) -> np.ndarray:
    """H×W×C pixels (top row first) as the EXIF `orientation` (1–8) says to show them."""
    mirrored = stored[:, ::-1] if orientation in (2, 4, 5, 7) else stored
    turns = {1: 0, 2: 0, 3: 2, 4: 2, 5: 1, 6: -1, 7: -1, 8: 1}[orientation]  # 90° anticlockwise
    return np.rot90(mirrored, turns)


def photo_orientation(file: Path) -> int:
    """The EXIF orientation (1–8) of a JPEG (APP1 Exif) or PNG (eXIf chunk); 1 without one."""
    with open(file, "rb") as stream:
        head = stream.read(8)
        if head[:2] == b"\xff\xd8":
            start = _jpeg_exif(stream)
        elif head == b"\x89PNG\r\n\x1a\n":
            start = _png_exif(stream)
        else:
            return 1
        if start is None:
            return 1
        stream.seek(start)
        order = {b"II": "<", b"MM": ">"}.get(stream.read(2))
        if order is None:
            return 1
        stream.seek(start + 4)
        (offset,) = struct.unpack(order + "I", stream.read(4))
        value = _tiff_tags(stream, order, offset, (274,), base=start).get(274, 1)
    return value if 1 <= value <= 8 else 1


def _jpeg_exif(stream) -> int | None:
    """Where a JPEG's Exif TIFF block starts (after SOI, read up to the image data)."""
    stream.seek(2)
    while True:
        marker = stream.read(4)
        if len(marker) < 4 or marker[0] != 0xFF or marker[1] in (0xD9, 0xDA):
            return None
        (length,) = struct.unpack(">H", marker[2:])
        if marker[1] == 0xE1 and stream.read(6) == b"Exif\0\0":
            return stream.tell()
        stream.seek(stream.tell() - (6 if marker[1] == 0xE1 else 0) + length - 2)


def _png_exif(stream) -> int | None:
    """Where a PNG's eXIf chunk (a TIFF block) starts, after the 8-byte signature."""
    while True:
        header = stream.read(8)
        if len(header) < 8 or header[4:] in (b"IDAT", b"IEND"):
            return None
        (length,) = struct.unpack(">I", header[:4])
        if header[4:] == b"eXIf":
            return stream.tell()
        stream.seek(length + 4, os.SEEK_CUR)  # the data and its CRC


def pixels(image: bpy.types.Image) -> np.ndarray:
    """The image's pixels as float32 H×W×4, top row first."""
    width, height = image.size
    values = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(values)
    return values.reshape(height, width, 4)[::-1]


def float_image(name: str, values: np.ndarray) -> bpy.types.Image:
    """A packed 32-bit float, Non-Color image of `values` (H×W, top row first)."""
    height, width = values.shape
    image = bpy.data.images.new(name, width, height, float_buffer=True, alpha=False)
    image.colorspace_settings.name = "Non-Color"
    rgba = np.ones((height, width, 4), dtype=np.float32)
    rgba[..., :3] = values[::-1, :, None]
    image.pixels.foreach_set(rgba.ravel())
    image.pack()
    return image


def sample_values(path: str) -> tuple[float, float]:
    """(offset, gain) such that `read_depth`'s value = offset + gain·sample, where sample is what
    Blender's image texture gives for the file read as Non-Color: code/(2^bits − 1) for an
    integer file, the stored value for a float one."""
    file = resolve(path, "depth file")
    bits = _bits(file)
    top = 1.0 if bits is None else float(2**bits - 1)
    meaning = read_meaning(path)
    low, high = (0.0, top) if meaning is None else meaning.values(np.array([0.0, top]))
    return float(low), float(high - low)


def load_sequence(frames: FrameSequence, what: str, *, data: bool) -> bpy.types.Image:
    """`frames` as one Blender image sequence; `data` (depth) reads them as Non-Color."""
    image = _load(frames.files[0], what)
    image.source = "SEQUENCE"
    if data:
        image.colorspace_settings.name = "Non-Color"
    return image


def check_sizes(frames: FrameSequence, what: str,
                size: tuple[int, int] | None = None, against: str = "") -> tuple[int, int]:
    """The frames' common (width, height): `size` (what `against` names) when given, else the
    first frame's. DepthFileError names the first file of another size or one not readable."""
    against = against or f"the first, '{frames.files[0].name}',"
    for file in frames.files:
        found = image_size(str(file))
        if found is None:
            raise DepthFileError(f"{what}: '{file}' is not a readable image")
        size = size or found
        if found != size:
            raise DepthFileError(f"{what}: '{file}' is {found[0]}×{found[1]} but {against} is "
                                 f"{size[0]}×{size[1]}: every frame must have the same size")
    return size


def image_size(path: str) -> tuple[int, int] | None:
    """(width, height) of an image or `.npy` file without making a datablock (the panel shows
    the vertex count from it); None when it cannot be read. Cached per file and change time."""
    try:
        file = resolve(path, "file")
        key = (str(file), os.stat(file).st_mtime)
        if key not in _sizes:
            if file.suffix.lower() in NUMPY_SUFFIXES:
                shape = np.load(file, mmap_mode="r", allow_pickle=False).shape
                _sizes[key] = (shape[1], shape[0])
            else:
                import imbuf

                _sizes[key] = tuple(imbuf.load(str(file)).size)
        return _sizes[key]
    except (DepthFileError, OSError, ValueError, IndexError):
        return None


def _load(file: Path, what: str) -> bpy.types.Image:
    try:
        image = bpy.data.images.load(str(file), check_existing=False)
    except RuntimeError as err:
        raise DepthFileError(f"{what} '{file}' is not a readable image: {err}") from None
    if image.size[0] == 0 or image.size[1] == 0:
        bpy.data.images.remove(image)
        raise DepthFileError(f"{what} '{file}' is not a readable image")
    return image
