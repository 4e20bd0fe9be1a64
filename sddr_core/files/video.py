"""Clips in and out: the frames of a video file or of a folder of numbered images, one at a
time, and a lossless 16-bit depth video.

Video goes through PyAV (the `video` extra; ComfyUI ships the same library), whose wheels
carry their own FFmpeg, so no system FFmpeg is needed (decision 240). Readers yield one
`Frame` at a time and keep none, so a clip of any length fits in memory. A damaged video
(truncated, or bytes FFmpeg cannot decode) yields the frames before the damage, then raises
`DamagedClip` naming the file and the frame. A depth clip is stored as 16-bit codes on one
value range for the whole clip (`ClipCodes`), never per frame, which would flicker.
"""

from __future__ import annotations

import contextlib
import fractions
import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .atomic import atomic_output
from .depth_io import PHOTO_EXTENSIONS, READ_EXTENSIONS, read_depth, read_image

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v")
INSTALL = 'pip install "sddr[video]"'
TOP = 65535
"""The largest 16-bit code."""
MARGIN = 0.5
"""Head room of a clip's code range on each side of its first frame's range, in units of
that range: the clip's later frames drift (clip mode follows the inputs' scale slowly)."""
TIME_BASE = fractions.Fraction(1, 1000)
"""Timestamps of a written depth video: milliseconds, Matroska's own unit."""
LATE_FRAMES = 2
"""A video whose decoded frames end more than this many frame periods before its stated
duration was cut short."""


@dataclass(frozen=True)
class Frame:
    """One frame of a clip: its place in decode order, its time in seconds from the start of
    the source (None for a folder's frames), its pixels (the readers give H×W×3 uint8 RGB,
    or H×W float32 depth; a caller may pair them) and where it came from (a file, or the
    video and frame number)."""

    index: int
    time: float | None
    data: Any
    source: str


class DamagedClip(InputError):
    """A clip's source stopped being readable at frame `index` (the frames before it are
    good)."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index


def is_video(path: str | Path) -> bool:
    """Whether `path` names a video file by its extension."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def read_clip(path: str | Path, *, depth: bool = False) -> Iterator[Frame]:
    """The frames of a video file or of a folder of numbered images, in order; RGB, or depth
    maps with `depth=True`. Raises InputError for a source that cannot be a clip,
    `DamagedClip` after the last good frame of a damaged one."""
    source = Path(path)
    if source.is_dir():
        return read_frame_folder(source, depth=depth)
    if is_video(source) and source.is_file():
        return read_video(source, depth=depth)
    raise InputError(f"clip '{source}': not a video file ({', '.join(VIDEO_SUFFIXES)}) nor a "
                     "folder of numbered frames")


@dataclass(frozen=True)
class ClipInfo:
    """What a source says of its clip before it is read: its frame count and average rate
    (frames per second), None where it does not say."""

    frames: int | None
    rate: float | None


def clip_info(path: str | Path, *, depth: bool = False) -> ClipInfo:
    """The frame count and rate of the clip `read_clip(path)` reads, as far as it says."""
    source = Path(path)
    if source.is_dir():
        return ClipInfo(len(frame_files(source, depth=depth)), None)
    with _open_video(source) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate) if stream.average_rate else None
        frames = stream.frames or None
        if frames is None and container.duration and rate:
            frames = round(container.duration / 1e6 * rate)
        return ClipInfo(frames, rate)


def frame_files(folder: Path, *, depth: bool = False) -> list[Path]:
    """The frame files of `folder`, ordered by the last number in their names (`f9.png`
    before `f10.png`); every file must carry one."""
    suffixes = READ_EXTENSIONS if depth else PHOTO_EXTENSIONS
    files = [p for p in folder.iterdir() if p.suffix.lower() in suffixes
             and not p.name.startswith(".") and p.is_file()]
    if not files:
        raise InputError(f"folder '{folder}' holds no frames ({', '.join(suffixes)})")
    numbered = []
    for file in files:
        numbers = re.findall(r"\d+", file.stem)
        if not numbers:
            raise InputError(f"frame '{file}' has no number in its name: name a clip's frames "
                             "by their order (frame_0001.png, …)")
        numbered.append((int(numbers[-1]), file.name, file))
    return [file for *_, file in sorted(numbered)]


def read_frame_folder(folder: Path, *, depth: bool = False) -> Iterator[Frame]:
    """The frames of `folder` (`frame_files`), one at a time; a frame of another size than
    the first is refused, naming its file."""
    size = None
    for index, file in enumerate(frame_files(folder, depth=depth)):
        data = read_depth(file) if depth else read_image(file)
        size = size or data.shape[:2]
        if data.shape[:2] != size:
            raise DamagedClip(f"frame '{file}' is {data.shape[1]}×{data.shape[0]}, but the "
                              f"clip's frames are {size[1]}×{size[0]} (width×height)", index)
        yield Frame(index, None, data, str(file))


def read_video(path: Path, *, depth: bool = False) -> Iterator[Frame]:
    """The frames of a video in decode order with their timestamps (kept as they are, so a
    variable frame rate comes through); depth videos give their codes as float32.

    A video whose decoding fails, or whose frames end well before its stated length or count
    (a truncated file), raises `DamagedClip` after its last good frame.
    """
    av = require_av()
    with _open_video(path) as container:
        stream = container.streams.video[0]
        period = 1 / float(stream.average_rate) if stream.average_rate else None
        index, times = 0, []
        try:
            for decoded in container.decode(stream):
                data = (decoded.to_ndarray(format="gray16le").astype(np.float32) if depth
                        else decoded.to_ndarray(format="rgb24"))
                times.append(decoded.time)
                yield Frame(index, decoded.time, data, f"{path} frame {index}")
                index += 1
        except av.FFmpegError as err:
            raise DamagedClip(f"video '{path}' is damaged at frame {index} (decoding failed: "
                              f"{err}); the frames before it were read", index) from None
        expected = stream.frames or None
        cut = expected is not None and index < expected
        if not cut and container.duration and times and None not in times:
            gaps = np.diff(times)
            step = max(period or 0, statistics.median(gaps) if len(gaps) else 0)
            cut = container.duration / 1e6 - times[-1] > LATE_FRAMES * step > 0
        if cut or index == 0:
            said = f" of {expected}" if expected else ""
            raise DamagedClip(f"video '{path}' ends at frame {index}{said} before its stated "
                              "end: it is truncated or damaged; the frames before it were "
                              "read", index)


def require_av() -> Any:
    """The PyAV module, or InputError saying how to install it (call it before a long run)."""
    try:
        import av
    except ImportError:
        raise InputError(f"reading and writing video needs PyAV, the 'video' extra: {INSTALL}"
                         ) from None
    return av


@contextlib.contextmanager
def _open_video(path: Path) -> Iterator[Any]:
    """The container of a readable video with a video stream, or InputError naming it."""
    av = require_av()
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        raise InputError(f"cannot read video '{path}': {err}") from None
    with container:
        if not container.streams.video:
            raise InputError(f"cannot read video '{path}': it holds no video stream (damaged "
                             "or truncated before its first frame?)")
        yield container


@dataclass(frozen=True)
class ClipCodes:
    """One linear map of a clip's depth values onto 16-bit codes 0..65535: `low` at 0,
    `high` at `TOP`."""

    low: float
    high: float

    @classmethod
    def around(cls, depth: np.ndarray) -> ClipCodes:
        """The range of the finite values of `depth` (a clip's first frame), widened by
        `MARGIN` of it on each side."""
        finite = depth[np.isfinite(depth)]
        low, high = float(finite.min()), float(finite.max())
        span = high - low if high > low else max(abs(high), 1.0)
        return cls(low - MARGIN * span, high + MARGIN * span)

    @property
    def stored(self) -> tuple[tuple[int, int], tuple[float, float]]:
        """The mapping as a depth sidecar records it (`DepthMeaning.stored`)."""
        return (0, TOP), (self.low, self.high)

    def codes(self, depth: np.ndarray) -> tuple[np.ndarray, int]:
        """(H×W uint16 codes of `depth`, how many finite values fell outside the range and
        were clipped); non-finite values become 0."""
        unit = (np.asarray(depth, np.float64) - self.low) / (self.high - self.low)
        finite = np.isfinite(unit)
        clipped = int(np.count_nonzero(finite & ((unit < 0) | (unit > 1))))
        unit = np.where(finite, np.clip(unit, 0, 1), 0)
        return np.round(unit * TOP).astype(np.uint16), clipped

    def values(self, codes: np.ndarray) -> np.ndarray:
        """The float32 depth values that `codes` stand for."""
        return (self.low + np.asarray(codes, np.float64) * ((self.high - self.low) / TOP)
                ).astype(np.float32)


def check_depth_video(path: str | Path, name: str) -> Path:
    """`path` as a depth video's, or InputError naming it (as `name`) unless it is a .mkv
    file, the container `DepthVideoWriter` writes."""
    if Path(path).suffix.lower() != ".mkv":
        raise InputError(f"{name} '{path}': must be a .mkv file (FFV1, 16-bit gray)")
    return Path(path)


class DepthVideoWriter:
    """A lossless depth video: FFV1 in Matroska, 16-bit gray (`gray16le`), timestamps in ms.

    Use as a context manager; the file appears at `path` only when the block completes
    (`atomic_output`). Frames without a time get `index / rate`.
    """

    def __init__(self, path: str | Path, rate: float = 24.0):
        self.path, self.rate = check_depth_video(path, "depth video"), rate
        self._stack = contextlib.ExitStack()
        self._stream: Any = None
        self._last = -1

    def __enter__(self) -> DepthVideoWriter:
        av = require_av()
        tmp = self._stack.enter_context(atomic_output(self.path))
        self._container = self._stack.enter_context(av.open(str(tmp), "w", format="matroska"))
        return self

    def write(self, codes: np.ndarray, index: int, time: float | None) -> None:
        """Add one frame of uint16 `codes` (H×W)."""
        if self._stream is None:
            stream = self._container.add_stream("ffv1", rate=fractions.Fraction(self.rate))
            stream.height, stream.width = codes.shape
            stream.pix_fmt = "gray16le"
            stream.time_base = stream.codec_context.time_base = TIME_BASE
            self._stream = stream
        frame = require_av().VideoFrame.from_ndarray(np.ascontiguousarray(codes, np.uint16),
                                              format="gray16le")
        seconds = index / self.rate if time is None else time
        frame.pts = max(round(seconds / TIME_BASE), self._last + 1)  # strictly increasing
        frame.time_base = TIME_BASE
        self._last = frame.pts
        self._container.mux(self._stream.encode(frame))

    def __exit__(self, kind, error, traceback) -> bool | None:
        if kind is None and self._stream is not None:
            self._container.mux(self._stream.encode(None))
        return self._stack.__exit__(kind, error, traceback)
