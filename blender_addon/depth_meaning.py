"""What the numbers in a depth file mean, in a small JSON sidecar next to it.

A normalised 16-bit PNG says nothing of whether bright is near (disparity) or far (depth), what
its 0..65535 stood for before normalising, or which distances and camera it belongs to; a reader
can only guess. sddr writes `refined.png.sddr.json` beside `refined.png` (the whole file name,
so `refined.png` and `refined.exr` in one folder keep theirs apart; `.sddr.json`, so no other
tool's `photo.jpg.json` is taken for one):

    {"sddr_depth_meaning": 1,           format version
     "kind": "disparity",               or "depth"; null: not known
     "units": "relative",               or "metres" (depth only); null: not known
     "near_bright": true,               larger values are nearer (follows from kind)
     "stored": {"codes": [0, 65535],    the file's integer codes, linearly onto
                "values": [-0.02, 1.03]},  these values; null: the file holds the values
     "distances": {"at_0": 8.0,         relative maps: the metres that values 0 and 1 stand
                   "at_1": 1.5},        for (linear in 1/distance for disparity, in distance
                                        for depth); null: not known
     "fov_degrees": null,               horizontal field of view, when known
     "written_by": "sddr demo 0.1.0"}

numpy and the standard library only, no package imports: the Blender add-on ships an identical
copy (`blender_addon/depth_meaning.py`, kept identical by tests/test_depth_meaning.py), since it
reads these files without sddr. sddr writes them with `sddr_core.files.sidecar`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIDECAR_SUFFIX = ".sddr.json"
VERSION = 1
KINDS = ("disparity", "depth")
UNITS = ("relative", "metres")
MAX_BYTES = 1 << 16
"""A sidecar is a few hundred bytes; anything much larger is not one (and is not read)."""
_FIELDS = ("sddr_depth_meaning", "kind", "units", "near_bright", "stored", "distances",
           "fov_degrees", "written_by")


class SidecarError(ValueError):
    """A sidecar that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class DepthMeaning:
    """What a depth file's values mean; None for what is not known. Checked on construction.

    stored: ((first code, last code), (first value, last value)), or None when the file holds
    the values themselves. distances: (metres at value 0, metres at value 1) of a relative map.
    """

    kind: str | None
    units: str | None
    stored: tuple[tuple[float, float], tuple[float, float]] | None = None
    distances: tuple[float, float] | None = None
    fov_degrees: float | None = None
    written_by: str = ""

    def __post_init__(self) -> None:
        _check_choice("kind", self.kind, KINDS)
        _check_choice("units", self.units, UNITS)
        if self.units == "metres" and self.kind != "depth":
            raise SidecarError(f"units 'metres' need kind 'depth', not {self.kind!r}")
        if self.stored is not None:
            (first, last), values = self.stored
            if not all(_finite_number(v) for v in (first, last, *values)) or first == last:
                raise SidecarError(f"stored: {self.stored!r} needs two distinct codes and two "
                                   "finite values")
        if self.distances is not None:
            if self.units != "relative":
                raise SidecarError("distances are for relative maps (units 'relative')")
            at_0, at_1 = self.distances
            if not all(_finite_number(d) and d > 0 for d in self.distances) or at_0 == at_1:
                raise SidecarError(f"distances: {self.distances!r} must be two different "
                                   "positive finite numbers of metres")
            if (at_1 < at_0) != (self.kind == "disparity"):
                raise SidecarError(f"distances: at_1 {at_1:g} m must be "
                                   f"{'nearer' if self.kind == 'disparity' else 'farther'} "
                                   f"than at_0 {at_0:g} m for kind {self.kind!r}")
        if self.fov_degrees is not None and not (_finite_number(self.fov_degrees)
                                                 and 0 < self.fov_degrees < 180):
            raise SidecarError(f"fov_degrees: {self.fov_degrees!r} is not between 0 and 180")

    @property
    def near_bright(self) -> bool | None:
        """Whether larger values are nearer; None when the kind is not known."""
        return None if self.kind is None else self.kind == "disparity"

    def values(self, stored: np.ndarray) -> np.ndarray:
        """The values the file's `stored` numbers stand for (float64; as they are when the
        file holds the values)."""
        stored = np.asarray(stored, dtype=np.float64)
        if self.stored is None:
            return stored
        (first, last), (low, high) = self.stored
        return low + (stored - first) * ((high - low) / (last - first))

    def to_json(self) -> str:
        return json.dumps({
            "sddr_depth_meaning": VERSION, "kind": self.kind, "units": self.units,
            "near_bright": self.near_bright,
            "stored": None if self.stored is None else {"codes": list(self.stored[0]),
                                                        "values": list(self.stored[1])},
            "distances": None if self.distances is None else {"at_0": self.distances[0],
                                                              "at_1": self.distances[1]},
            "fov_degrees": self.fov_degrees, "written_by": self.written_by,
        }, indent=1) + "\n"


def sidecar_path(depth_path: str | os.PathLike) -> Path:
    """`refined.png` → `refined.png.sddr.json`."""
    path = Path(depth_path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_sidecar(depth_path: str | os.PathLike) -> DepthMeaning | None:
    """The meaning of the depth file at `depth_path` from its sidecar; None when it has none.

    Raises SidecarError, naming the sidecar, when it cannot be read or is malformed: a wrong
    description is worse than none.
    """
    path = sidecar_path(depth_path)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise SidecarError(f"depth sidecar '{path}' cannot be read: "
                           f"{err.strerror or err}") from None
    if len(data) > MAX_BYTES:
        raise SidecarError(f"depth sidecar '{path}' is over {MAX_BYTES} bytes: not a sidecar")
    try:
        return parse(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:  # json's errors and SidecarError alike
        raise SidecarError(f"depth sidecar '{path}' is malformed: {err}") from None


def parse(text: str) -> DepthMeaning:
    """A sidecar's text as a DepthMeaning; SidecarError (or json's ValueError) says what is
    wrong."""
    fields = json.loads(text)
    if not isinstance(fields, dict):
        raise SidecarError("expected a JSON object")
    version = fields.get("sddr_depth_meaning")
    if version != VERSION:
        raise SidecarError(f"sddr_depth_meaning is {version!r}; this reader knows version "
                           f"{VERSION} (a newer sddr wrote it?)")
    unknown = sorted(set(fields) - set(_FIELDS))
    if unknown:
        raise SidecarError(f"unknown field(s) {', '.join(unknown)}")
    meaning = DepthMeaning(
        kind=fields.get("kind"), units=fields.get("units"),
        stored=_pair_of_pairs(fields.get("stored")),
        distances=_pair(fields.get("distances"), "distances", ("at_0", "at_1")),
        fov_degrees=fields.get("fov_degrees"), written_by=str(fields.get("written_by", "")))
    if fields.get("near_bright", meaning.near_bright) != meaning.near_bright:
        raise SidecarError(f"near_bright {fields['near_bright']!r} contradicts kind "
                           f"{meaning.kind!r}")
    return meaning


def _pair_of_pairs(stored) -> tuple[tuple[float, float], tuple[float, float]] | None:
    if stored is None:
        return None
    if not isinstance(stored, dict):
        raise SidecarError(f"stored: expected an object with codes and values, got {stored!r}")
    return (_list_pair(stored.get("codes"), "stored.codes"),
            _list_pair(stored.get("values"), "stored.values"))


def _pair(value, name: str, keys: tuple[str, str]) -> tuple[float, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != set(keys):
        raise SidecarError(f"{name}: expected an object with {' and '.join(keys)}, "
                           f"got {value!r}")
    return value[keys[0]], value[keys[1]]


def _list_pair(value, name: str) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise SidecarError(f"{name}: expected a list of two numbers, got {value!r}")
    return value[0], value[1]


def _finite_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise SidecarError(f"{name}: {value!r} is not one of {', '.join(choices)} (or null)")
