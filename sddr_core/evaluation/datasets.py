"""Ground truth for evaluation: Middlebury 2005/2006, Middlebury 2014/2021 and plain folders.

Every reader is a lazy sequence of :class:`Sample`: the constructor only lists the scenes and
checks that their files exist (so a broken dataset fails before a long run starts), and each
item is read from disk when it is asked for. Depth is metric (mm) where the dataset is
calibrated. Readers never drop a sample, even one without valid pixels: the evaluation
decides what to do with those, and counts them.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import InputError
from ..files.depth_io import read_depth, read_image

DATASETS = ("middlebury2006", "middlebury2014", "folder")
_ALIASES = {"middlebury2005": "middlebury2006", "middlebury2021": "middlebury2014"}

# Middlebury 2005/2006 camera: focal length of the full-size images, baseline between views.
MIDDLEBURY2006_FOCAL_PX = 3740.0
MIDDLEBURY2006_BASELINE_MM = 160.0

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
DEPTH_EXTS = (".npy", ".png", ".pfm", ".exr", ".tif", ".tiff")


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value to compare
class Sample:
    """One image with its ground truth; `depth` is 0 wherever `valid` is False."""

    name: str
    image: np.ndarray  # H×W×3 uint8 RGB
    depth: np.ndarray  # H×W float32; mm for calibrated datasets
    valid: np.ndarray  # H×W bool


class Dataset(Sequence[Sample]):
    """Lazy sequence of samples; subclasses list scenes up-front and read one in `_read`."""

    kind: ClassVar[str]
    layout: ClassVar[str]  # the expected folder structure, for error messages
    _names: tuple[str, ...]  # set by each subclass's constructor

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise InputError(f"{self.kind} root '{self.root}' does not exist "
                             f"(expected {self.layout})")
        if not self.root.is_dir():
            raise InputError(f"{self.kind} root '{self.root}' is not a folder "
                             f"(expected {self.layout})")

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]  # no slices
        index = range(len(self._names))[operator.index(index)]
        name = self._names[index]
        try:
            image, depth, valid = self._read(index)
        except InputError as e:
            raise InputError(f"{self.kind} scene '{name}': {e}") from e
        depth = np.where(valid, depth, 0.0).astype(np.float32)
        return Sample(name, image, depth, valid)

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self.root}', {len(self)} scenes)"

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image, depth, valid) of scene `index`; InputErrors get the scene name added."""
        raise NotImplementedError

    def _no_scenes(self, what: str) -> InputError:
        return InputError(f"{self.kind} root '{self.root}' holds no {what} "
                          f"(expected {self.layout})")


# ------------------------------------------------------------------------------------ Middlebury

class _Middlebury(Dataset):
    """Scene discovery shared by the Middlebury layouts: the root is one scene if it holds the
    scene's image, otherwise each non-hidden subfolder is a scene and must be complete."""

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        files = self._files()
        if (self.root / files[0]).is_file():
            self._dirs = [self.root]
        else:
            self._dirs = sorted(p for p in self.root.iterdir()
                                if p.is_dir() and not p.name.startswith("."))
        if not self._dirs:
            raise self._no_scenes("scene folders")
        for folder in self._dirs:
            missing = [f for f in files if not (folder / f).is_file()]
            if missing:
                raise InputError(f"{self.kind} scene '{self._scene_name(folder)}': missing "
                                 f"{', '.join(missing)} in {folder}")
        self._names = tuple(self._scene_name(d) for d in self._dirs)

    @staticmethod
    def _scene_name(folder: Path) -> str:
        return folder.resolve().name if folder.name in ("", ".", "..") else folder.name

    def _files(self) -> tuple[str, ...]:
        """The files every scene needs, its image first."""
        raise NotImplementedError


class Middlebury2006(_Middlebury):
    """Middlebury 2006 (and 2005, same format): ``view{v}.png``, ``disp{v}.png``, ``dmin.txt``.

    Full-, half- and third-size sets all store disparity and dmin in full-size pixels, so
    depth = f·B / (d + dmin) with the full-size f = 3740 px and B = 160 mm holds at every size
    without a scale factor. Disparity is uint8 with 0 = unknown.
    """

    kind = "middlebury2006"
    layout = ("a scene folder holding view1.png, disp1.png and dmin.txt (or view5/disp5), "
              "or a folder of such scene folders")

    def __init__(self, root: str | Path, view: int = 1) -> None:
        if view not in (1, 5):
            raise InputError(f"middlebury2006 view must be 1 or 5 (the two views with ground "
                             f"truth), got {view!r}")
        self.view = view
        super().__init__(root)

    def _files(self) -> tuple[str, ...]:
        return f"view{self.view}.png", f"disp{self.view}.png", "dmin.txt"

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        folder = self._dirs[index]
        image_name, disp_name, _ = self._files()
        _require_gray8_png(folder / disp_name)
        image, disparity = _read_aligned(folder / image_name, folder / disp_name)
        dmin_path = folder / "dmin.txt"
        dmin = _number(_read_text(dmin_path), f"'{dmin_path}'")
        valid = disparity > 0
        with np.errstate(divide="ignore"):
            depth = MIDDLEBURY2006_FOCAL_PX * MIDDLEBURY2006_BASELINE_MM / (
                disparity.astype(np.float64) + dmin)
        return image, depth, valid


class Middlebury2014(_Middlebury):
    """Middlebury 2014 (and 2021, same format): ``im0.png``, ``disp0.pfm``, ``calib.txt``.

    depth = baseline · f / (d + doffs) in mm, f = cam0[0][0]; inf marks unknown disparity.
    The calibration belongs to the image size it ships with, so no size factor is needed.
    """

    kind = "middlebury2014"
    layout = ("a scene folder holding im0.png, disp0.pfm and calib.txt, "
              "or a folder of such scene folders")

    def _files(self) -> tuple[str, ...]:
        return "im0.png", "disp0.pfm", "calib.txt"

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        folder = self._dirs[index]
        image, disparity = _read_aligned(folder / "im0.png", folder / "disp0.pfm")
        focal, doffs, baseline = _read_calib(folder / "calib.txt")
        d = disparity.astype(np.float64)
        valid = np.isfinite(d) & (d > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = baseline * focal / (d + doffs)
        return image, depth, valid


def _read_calib(path: Path) -> tuple[float, float, float]:
    """(f, doffs, baseline) from a Middlebury 2014 calib.txt of ``key=value`` lines, where
    ``cam0=[f 0 cx; 0 f cy; 0 0 1]``. Parsed by hand: the file is data, never code."""
    entries: dict[str, str] = {}
    for line in _read_text(path).splitlines():
        key, sep, value = line.partition("=")
        if sep:
            entries[key.strip()] = value.strip()
    missing = [key for key in ("cam0", "doffs", "baseline") if key not in entries]
    if missing:
        raise InputError(f"'{path}' is missing {', '.join(repr(k) for k in missing)} "
                         "(a Middlebury calib.txt has cam0=, doffs= and baseline= lines)")
    cam0 = entries["cam0"]
    rows = [row.split() for row in cam0.strip("[]").split(";")]
    if not cam0.startswith("[") or [len(row) for row in rows] != [3, 3, 3]:
        raise InputError(f"'cam0' in '{path}' should be a 3x3 matrix "
                         f"'[f 0 cx; 0 f cy; 0 0 1]', found {cam0!r}")
    focal = _number(rows[0][0], f"'cam0' f in '{path}'")
    doffs, baseline = (_number(entries[k], f"'{k}' in '{path}'") for k in ("doffs", "baseline"))
    for key, value in (("cam0", focal), ("baseline", baseline)):
        if value <= 0:
            raise InputError(f"'{key}' in '{path}' must be positive, found {value}")
    return focal, doffs, baseline


def _number(text: str, where: str) -> float:
    """`text` as a finite float, or an InputError saying `where` the number was expected."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(f"{where} should be a single number, found {text.strip()[:40]!r}")
    return value


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read '{path}': {e}") from e


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES = {0: "gray", 2: "RGB", 3: "palette", 4: "gray+alpha", 6: "RGBA"}


def _require_gray8_png(path: Path) -> None:
    """Middlebury 2005/2006 disparity is one uint8 channel. `read_depth` would quietly take
    channel 0 of a colour PNG (a visualisation saved by mistake), so check the PNG header."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError as e:
        raise InputError(f"cannot read disparity '{path}': {e.strerror or e}") from e
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return  # not a PNG at all: read_depth says so with its own message
    bits, colour = head[24], head[25]
    if (bits, colour) != (8, 0):
        raise InputError(f"disparity '{path}' must be an 8-bit single-channel PNG, found "
                         f"{bits}-bit {_PNG_COLOUR_TYPES.get(colour, f'type {colour}')}")


# -------------------------------------------------------------------------------- plain folders

class DepthFolder(Dataset):
    """``root/images/<stem>.png|jpg|jpeg`` with ``root/depth/<stem>.<ext>`` (ext: npy, png,
    pfm, exr, tif, tiff; any positive units) and optional ``root/masks/<stem>.png``.

    valid = finite & > 0 & (mask nonzero). With ``disparity=True`` the files hold disparity and
    depth = 1/disparity where it is > 0: depth up to scale, which is all an affine-invariant
    evaluation needs. An image without exactly one ground-truth file is an error, or with
    ``skip_incomplete=True`` (training on large, imperfect datasets) left out and listed in
    `incomplete` as (name, reason).
    """

    kind = "folder"
    layout = ("images/<name>.png|jpg|jpeg with depth/<name>.npy|png|pfm|exr|tif|tiff "
              "and optional masks/<name>.png")

    def __init__(self, root: str | Path, disparity: bool = False,
                 skip_incomplete: bool = False) -> None:
        super().__init__(root)
        self.disparity = disparity
        self.incomplete: list[tuple[str, str]] = []
        for sub in ("images", "depth"):
            if not (self.root / sub).is_dir():
                raise InputError(f"folder root '{self.root}' has no '{sub}' subfolder "
                                 f"(expected {self.layout})")
        images = _files_by_stem(self.root / "images", IMAGE_EXTS)
        depths = _files_by_stem(self.root / "depth", DEPTH_EXTS)
        if not images:
            raise self._no_scenes("images")
        self._items: list[tuple[Path, Path, Path | None]] = []
        names: list[str] = []
        for stem, found in sorted(images.items()):
            if len(found) > 1:
                raise InputError(f"folder '{self.root / 'images'}' has several images named "
                                 f"'{stem}': {', '.join(p.name for p in found)}")
            gt = depths.get(stem, [])
            problem = None
            if not gt:
                exts = ",".join(ext[1:] for ext in DEPTH_EXTS)
                problem = (f"image '{found[0]}' has no ground truth: expected "
                           f"{self.root / 'depth' / stem}.{{{exts}}}")
            elif len(gt) > 1:
                problem = (f"image '{found[0]}' has several ground-truth files, keep one: "
                           f"{', '.join(str(p) for p in gt)}")
            if problem and not skip_incomplete:
                raise InputError(problem)
            if problem:
                self.incomplete.append((stem, problem))
                continue
            mask = self.root / "masks" / f"{stem}.png"
            self._items.append((found[0], gt[0], mask if mask.is_file() else None))
            names.append(stem)
        if not self._items:
            raise self._no_scenes("images with ground truth")
        self._names = tuple(names)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image_path, depth_path, mask_path = self._items[index]
        image, depth = _read_aligned(image_path, depth_path)
        if self.disparity:
            with np.errstate(divide="ignore", over="ignore"):
                depth = 1.0 / depth  # 0 and negative disparity become inf or < 0: invalid
        valid = np.isfinite(depth) & (depth > 0)
        if mask_path is not None:
            valid &= _read_aligned(image_path, mask_path, image)[1] != 0
        return image, depth, valid


def _files_by_stem(folder: Path, exts: tuple[str, ...]) -> dict[str, list[Path]]:
    """Non-hidden files of `folder` with one of `exts` (any case), grouped by stem."""
    grouped: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts:
            grouped.setdefault(p.stem, []).append(p)
    return grouped


# ------------------------------------------------------------------------------------- shared

def _read_aligned(image_path: Path, gt_path: Path,
                  image: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The photo (read unless given) and a ground-truth map that must match it pixel for pixel:
    resampling ground truth would invent values at depth edges, so a mismatch is an error."""
    if image is None:
        image = read_image(image_path)
    gt = read_depth(gt_path)
    if gt.shape != image.shape[:2]:
        raise InputError(f"'{gt_path}' is {gt.shape[1]}x{gt.shape[0]} but its image "
                         f"'{image_path}' is {image.shape[1]}x{image.shape[0]} (width x height); "
                         "ground truth and masks must have the image's size")
    return image, gt


_READERS: dict[str, type[Dataset]] = {
    "middlebury2006": Middlebury2006, "middlebury2014": Middlebury2014, "folder": DepthFolder}


def open_dataset(kind: str, root: str | Path, **options: Any) -> Dataset:
    """The reader for `kind` (one of DATASETS, or the aliases middlebury2005/middlebury2021);
    `options` go to its constructor (``view=`` for Middlebury 2006, ``disparity=`` for
    folders)."""
    key = kind.lower()
    reader = _READERS.get(_ALIASES.get(key, key))
    if reader is None:
        raise InputError(f"unknown dataset kind '{kind}' (known: {', '.join(DATASETS)}, and "
                         f"the aliases {', '.join(_ALIASES)})")
    return reader(root, **options)
