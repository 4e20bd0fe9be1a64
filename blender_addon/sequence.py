"""Numbered frames on disk (`shot_0001.png`, `shot_0002.png`, …) as one sequence, in the
standard library only, so it is tested outside Blender.

An animated mesh reads its depth frames through a Blender image sequence, which finds frame f
by writing f into the first file's name with the same zero padding; so a sequence here is
exactly what Blender will find: one prefix and suffix, numbers written with the first file's
padding, and no number missing between the first and the last.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)(?P<suffix>\.[^.]+)$")
"""The last run of digits before the extension is the frame number."""
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v")
"""Video files the worker decodes (sddr's own list: Refine Frames takes one as photo frames)."""


class FrameError(ValueError):
    """Frames that cannot be used as one sequence; the message names the files."""


@dataclass(frozen=True)
class FrameSequence:
    """Numbered frames in one folder: `files[i]` is frame `first + i`."""

    files: tuple[Path, ...]
    first: int

    @property
    def last(self) -> int:
        return self.first + len(self.files) - 1

    def __len__(self) -> int:
        return len(self.files)


def is_video(path: str | Path) -> bool:
    """Whether `path` names a video file by its extension."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def find_frames(path: str | Path, suffixes: tuple[str, ...], what: str) -> FrameSequence:
    """The sequence that `path` (a folder, or one numbered file in it) belongs to.

    `suffixes`: the file extensions the frames may have (lower case, with the dot); `what`
    names the frames in messages ("depth frames"). A folder must hold one sequence of such
    files; a file picks the sequence it is part of. A single numbered file is a one-frame
    sequence.

    Raises FrameError when nothing numbered is there, a folder holds several sequences, a
    number is missing, or a number is padded differently from the first file's.
    """
    path = Path(path)
    if path.is_dir():
        folder, chosen = path, None
    elif path.is_file():
        folder, chosen = path.parent, _pattern(path, what)
        if path.suffix.lower() not in suffixes:
            raise FrameError(f"{what} '{path}': {path.suffix or 'no'} extension is not usable "
                             f"here (use {', '.join(suffixes)})")
    else:
        raise FrameError(f"{what} '{path}' does not exist")
    groups: dict[tuple[str, str], list[tuple[int, str, Path]]] = {}
    for file in folder.iterdir():
        match = _NUMBERED.match(file.name)
        if match and file.suffix.lower() in suffixes and file.is_file():
            key = (match["prefix"], match["suffix"])
            groups.setdefault(key, []).append((int(match["number"]), match["number"], file))
    if chosen is None:
        if not groups:
            raise FrameError(f"{what}: folder '{folder}' holds no numbered "
                             f"{'/'.join(suffixes)} files (like frame_0001{suffixes[0]})")
        if len(groups) > 1:
            names = ", ".join(sorted(f"{p}#{s}" for p, s in groups))
            raise FrameError(f"{what}: folder '{folder}' holds several numbered sequences "
                             f"({names}); choose one of their files instead of the folder")
        (chosen,) = groups
    frames = sorted(groups[chosen])
    return _checked(frames, folder, what)


def _pattern(file: Path, what: str) -> tuple[str, str]:
    match = _NUMBERED.match(file.name)
    if match is None:
        raise FrameError(f"{what} '{file}' has no frame number in its name (like "
                         f"frame_0001{file.suffix})")
    return match["prefix"], match["suffix"]


def _checked(frames: list[tuple[int, str, Path]], folder: Path, what: str) -> FrameSequence:
    """The frames as a sequence Blender reads the same way, or FrameError saying why not."""
    first, first_digits, first_file = frames[0]
    width = len(first_digits)
    for number, digits, file in frames:
        if digits != f"{number:0{width}d}":
            raise FrameError(f"{what}: '{file.name}' is numbered unlike '{first_file.name}' "
                             f"(write every number with {width} digits, zero-padded)")
    numbers = {number for number, _, _ in frames}  # one file each: the padding is fixed
    missing = sorted(set(range(first, frames[-1][0] + 1)) - numbers)
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
        raise FrameError(f"{what}: frames {first}…{frames[-1][0]} in '{folder}' miss "
                         f"{len(missing)} number(s): {shown}; a sequence must have no gap")
    return FrameSequence(tuple(file for _, _, file in frames), first)
