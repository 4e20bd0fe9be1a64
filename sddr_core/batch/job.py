"""What a batch job is: its settings, and its items (one input each with the files it writes).

The same items are run by `sddr refine`'s own loop and by the Ray engine, so both write the
same files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..files.atomic import refuse_overwriting_inputs
from ..files.depth_io import READ_EXTENSIONS, check_output, suffix_for_format
from ..files.depth_meaning import sidecar_path
from ..inference.resolution import check_cap
from ..inference.windows import STEPS

KINDS = ("photos", "pairs")


@dataclass(frozen=True)
class Item:
    """One input of a job: `name` as reports show it, `inputs` (a photo; or low, high depth
    maps and optionally their photo), and `outputs` (the depth file, then the edge file when
    asked)."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def written(self) -> list[Path]:
        """Every file the item leaves, the depth file's sidecar included."""
        depth, *edges = map(Path, self.outputs)
        return [depth, sidecar_path(depth), *edges]

    def absolute(self) -> Item:
        """The item with absolute paths, as a Ray worker (which does not run in the caller's
        folder) and the manifest need them."""
        return dataclasses.replace(self, inputs=tuple(map(os.path.abspath, self.inputs)),
                                   outputs=tuple(map(os.path.abspath, self.outputs)))


def predictor_for_workers(predictor: str) -> str:
    """A predictor reference as a Ray worker sees it: a model folder as its absolute path (a
    worker runs in another folder), a predictor's name as given."""
    return os.path.abspath(predictor) if Path(predictor).is_dir() else predictor


@dataclass(frozen=True)
class RefineSettings:
    """How every item of a job is refined. `kind` "photos" runs `predictor` on each photo;
    "pairs" fuses given low/high maps (`out_size` (height, width) or None for high's size)."""

    kind: str
    weights: str = "default"
    predictor: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    mode: str = "one-stage"
    steps: int = STEPS
    edges: bool = False
    snap_edges: bool = True
    format: str = "png16"
    out_size: tuple[int, int] | None = None
    resolution_cap: float | None = None
    """Photos: no predictor run above this multiple of its region's long side (None: Eq. 11)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"kind {self.kind!r}: choose from {', '.join(KINDS)}")
        if self.kind == "photos" and not self.predictor:
            raise InputError("a photo job needs a predictor")
        check_cap(self.resolution_cap)

    def key(self) -> str:
        """A short digest of every setting: a manifest line counts only for the same ones.
        An uncapped job leaves `resolution_cap` out, so the manifests of jobs run before the
        setting existed still count."""
        settings = dataclasses.asdict(self)
        if settings["resolution_cap"] is None:
            del settings["resolution_cap"]
        text = json.dumps(settings, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def photo_items(photos: list[Path], out: Path, fmt: str, edges: bool) -> list[Item]:
    """An item per photo writing OUT/STEM.EXT (and OUT/STEM-edges.png). Two photos that would
    write the same file, or an output that is one of the photos, are refused."""
    items = []
    for photo in photos:
        depth = out / (photo.stem + suffix_for_format(fmt))
        outputs = (depth, out / f"{photo.stem}-edges.png") if edges else (depth,)
        items.append(Item(str(photo), (str(photo),), tuple(map(str, outputs))))
    _check_outputs(items, fmt, "photos", "photo")
    return items


def pair_items(low: Path, high: Path, out: Path,
               fmt: str) -> tuple[list[Item], list[tuple[str, str]]]:
    """An item per file name stem found in both folders, writing OUT/STEM.EXT; and (file, why)
    for each file found in one folder only (the batch reports it and goes on)."""
    lows, highs = _depth_files(low, "--low"), _depth_files(high, "--high")
    items = [Item(stem, (str(lows[stem]), str(highs[stem])),
                  (str(out / (stem + suffix_for_format(fmt))),))
             for stem in sorted(lows.keys() & highs.keys())]
    unmatched = [(str(files[stem]), f"no file named {stem}.* in the {other} folder '{folder}'")
                 for files, other, folder in ((lows, "--high", high), (highs, "--low", low))
                 for stem in sorted(files.keys() - (lows.keys() & highs.keys()))]
    if not items:
        raise InputError(f"folders '{low}' and '{high}' share no file names: pairs are matched "
                         "by name (low/a.png with high/a.png)")
    _check_outputs(items, fmt, "pairs", "input")
    return items, unmatched


def _depth_files(folder: Path, option: str) -> dict[str, Path]:
    """Stem → depth file of a folder (hidden files and folders left out); one file per stem."""
    if not folder.is_dir():
        raise InputError(f"{option} '{folder}' is not a folder")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in READ_EXTENSIONS \
                or path.is_dir():
            continue
        if path.stem in files:
            raise InputError(f"{option} folder '{folder}' holds both '{files[path.stem].name}' "
                             f"and '{path.name}'; pairs are matched by name, so keep one")
        files[path.stem] = path
    if not files:
        raise InputError(f"{option} folder '{folder}' holds no depth maps "
                         f"({', '.join(READ_EXTENSIONS)})")
    return files


def _check_outputs(items: list[Item], fmt: str, what: str, input_kind: str) -> None:
    """Each output as `write_depth` would check it; no file written by two items; no output
    that is an input."""
    owners: dict[str, str] = {}
    for item in items:
        check_output(item.outputs[0], fmt)
        for target in map(str, item.written()):
            if target in owners:
                raise InputError(f"{what} '{owners[target]}' and '{item.name}' would both "
                                 f"write '{target}'; refine them into different folders")
            owners[target] = item.name
    refuse_overwriting_inputs(owners, {path: input_kind for item in items
                                       for path in item.inputs})
