"""Depth maps and photos in and out of Blender images.

Depth is always read as float with colourspace Non-Color (set right after loading, before the
pixels are read: a 16-bit PNG otherwise comes back sRGB-linearised) and rows flipped, since
Blender stores pixels bottom-up. PNG (8/16-bit), OpenEXR, TIFF and JPEG go through Blender's own
loader, `.npy` through numpy (no pickles).
"""

import os
from pathlib import Path

import bpy
import numpy as np

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


def read_depth(path: str) -> np.ndarray:
    """The depth map in `path` as float32 H×W (first channel of a colour file)."""
    file = resolve(path, "depth file")
    suffix = file.suffix.lower()
    if suffix in NUMPY_SUFFIXES:
        try:
            depth = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DepthFileError(f"depth file '{file}' is not a readable .npy array: "
                                 f"{err}") from None
        if depth.ndim == 3 and depth.shape[-1] in (3, 4):
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
        return pixels(image)[..., 0].copy()
    finally:
        bpy.data.images.remove(image)


def load_photo(path: str) -> bpy.types.Image:
    """The photo as a Blender image (an already loaded one is reused)."""
    file = resolve(path, "image file")
    for image in bpy.data.images:
        if image.filepath and Path(bpy.path.abspath(image.filepath)) == file:
            return image
    return _load(file, "image file")


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
