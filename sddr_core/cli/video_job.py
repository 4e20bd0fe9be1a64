"""`sddr refine` on a clip: a video file or a folder of numbered frames, refined in clip mode
one frame at a time into numbered depth frames (and a lossless depth video), resumable.

Each frame is written atomically with its sidecar, so an interrupted run leaves only complete
frames; the clip record `clip.sddr.json` in the output folder holds the run's settings, the
clip's 16-bit code range and the source's timestamps. A rerun with the same settings skips
the finished frames and restores the clip state from the last one written (decision 242), so
it continues the clip as if it had not stopped. With `--engine ray` the predictor runs on a
Ray cluster's workers and the frames come back in order to this process's loop (decision 310).
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..batch.job import predictor_for_workers
from ..batch.ray_cluster import import_ray
from ..errors import InputError
from ..files.atomic import atomic_output, refuse_overwriting_inputs
from ..files.depth_io import check_output, read_depth, suffix_for_format, write_depth
from ..files.depth_meaning import DepthMeaning, sidecar_path
from ..files.sidecar import PREDICTED_UNITS, write_sidecar
from ..files.video import (
    ClipCodes,
    DamagedClip,
    DepthVideoWriter,
    Frame,
    check_depth_video,
    clip_info,
    is_video,
    read_clip,
    require_av,
)
from ..inference.clip import ClipState
from ..inference.pipeline import DepthPipeline
from ..inference.refiner import Refiner
from .terminate import Terminated

RECORD = "clip.sddr.json"
CLIP_FORMATS = ("png16", "exr", "npy", "pfm", "tiff")
DEFAULT_RATE = 24.0
"""Frame rate of the depth video of a folder's frames, which carry no timestamps."""

RefineFrame = Callable[[Frame, ClipState], np.ndarray]


@dataclass(frozen=True)
class ClipOutput:
    """Where and how a clip's depth goes: numbered frames `folder/000000.png`… in `format`
    (with sidecars saying `kind` and `units`), and a depth video at `video` if given."""

    folder: Path
    format: str
    video: Path | None
    kind: str | None
    units: str | None
    written_by: str

    def frame(self, index: int) -> Path:
        return self.folder / f"{index:06d}{suffix_for_format(self.format)}"


def run_clip(frames: Iterator[Frame], refine: RefineFrame, output: ClipOutput, *,
             settings: dict, total: int | None, rate: float | None, device: torch.device,
             label: str) -> int:
    """Refine `frames` in order with `refine(frame, state)` and write them; the exit status
    (0, or 1 when the source was damaged after some frames: those are kept and the error
    printed). `settings` (JSON-able) must equal a previous run's for it to be continued.

    Raises InputError when the output folder holds another run's clip, or the source is
    damaged before its first frame.
    """
    record = _start(output.folder, settings)
    done = _finished(output)
    codes = ClipCodes(*record["codes"]) if record.get("codes") else None
    state = ClipState()
    if done:
        state.previous = torch.from_numpy(_values(output, done - 1, codes)).to(device)
        state.frames = done
    times: list[float | None] = []
    clipped, damage = 0, None
    bar = tqdm(total=total, initial=done, unit="frame", desc=label, file=sys.stderr)
    try:
        with _video(output, rate) as video:
            try:
                for frame in frames:
                    times.append(frame.time)
                    if frame.index < done:
                        if video is not None:
                            video.write(codes.codes(_values(output, frame.index, codes))[0],
                                        frame.index, frame.time)
                        continue
                    depth = refine(frame, state)
                    if codes is None:
                        codes = ClipCodes.around(depth)
                        _write_record(output.folder, {**record, "codes": [codes.low, codes.high]})
                    stored, outside = codes.codes(depth)
                    clipped += outside
                    _write_frame(output, frame.index, depth, stored, codes)
                    if video is not None:
                        video.write(stored, frame.index, frame.time)
                    bar.update(1)
                bar.total = len(times)  # the source's count may have been an estimate
            except DamagedClip as err:
                if err.index == 0:
                    raise
                damage = str(err)
    except (KeyboardInterrupt, Terminated):
        print(f"\nsddr: {_finished(output)} frames are in '{output.folder}'; run the same "
              "command again to continue", file=sys.stderr)
        raise
    finally:
        bar.close()
        written = _finished(output)
        _write_record(output.folder, {**record, "codes": codes and [codes.low, codes.high],
                                      "frames": written, "times": times[:written],
                                      "damaged": damage})
    return _report(output, written, codes, clipped, damage)


def _start(folder: Path, settings: dict) -> dict:
    """The clip record of a run with `settings` in `folder`: a previous run's (to continue)
    or a new one. Another run's record is refused, naming what differs."""
    path = folder / RECORD
    if not path.is_file():
        if folder.is_dir() and any(folder.glob("[0-9]*.sddr.json")):
            raise InputError(f"output folder '{folder}' holds depth frames but no "
                             f"{RECORD}: choose an empty folder")
        record = {"sddr_clip": 1, "settings": settings, "codes": None}
        _write_record(folder, record)
        return record
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"clip record '{path}' cannot be read: {err}") from None
    previous = record.get("settings", {})
    differ = sorted(key for key in {**previous, **settings}
                    if previous.get(key) != settings.get(key))
    if differ:
        raise InputError(f"output folder '{folder}' holds a clip refined with other "
                         f"settings ({', '.join(differ)} differ): give another folder, or the "
                         "same settings to continue it")
    return record


def _finished(output: ClipOutput) -> int:
    """How many frames from the first on are complete (the frame and its sidecar, written
    after it)."""
    done = 0
    while sidecar_path(output.frame(done)).is_file() and output.frame(done).is_file():
        done += 1
    return done


def _values(output: ClipOutput, index: int, codes: ClipCodes) -> np.ndarray:
    """The depth values of finished frame `index`, as written (16-bit PNGs through `codes`)."""
    stored = read_depth(output.frame(index))
    return codes.values(stored) if output.format == "png16" else stored


def _write_frame(output: ClipOutput, index: int, depth: np.ndarray, stored: np.ndarray,
                 codes: ClipCodes) -> None:
    """Frame `index` (16-bit codes in a PNG, else the values) and then its sidecar."""
    path = output.frame(index)
    png = output.format == "png16"
    write_depth(path, stored if png else depth, output.format)
    write_sidecar(path, DepthMeaning(output.kind, output.units, codes.stored if png else None,
                                     written_by=output.written_by))


def _write_record(folder: Path, record: dict) -> None:
    with atomic_output(folder / RECORD) as tmp:
        tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")


def _video(output: ClipOutput, rate: float | None):
    """The depth video writer, or a stand-in block yielding None when none is asked for."""
    if output.video is None:
        return nullcontext()
    return DepthVideoWriter(output.video, rate or DEFAULT_RATE)


def _report(output: ClipOutput, frames: int, codes: ClipCodes, clipped: int,
            damage: str | None) -> int:
    """Write the depth video's sidecar and print what was written; the exit status."""
    print(f"wrote {frames} frames to '{output.folder}' ({RECORD} holds their timestamps)")
    if output.video is not None:
        write_sidecar(output.video, DepthMeaning(output.kind, output.units, codes.stored,
                                                 written_by=output.written_by))
        print(f"wrote {output.video}")
    if clipped:
        print(f"sddr: warning: {clipped} depth values fell outside the clip's 16-bit range "
              f"(its first frame's, widened by half on each side) and were clipped; "
              "--format exr or npy keeps them", file=sys.stderr)
    if damage:
        print(f"sddr: error: {damage}; the {frames} frames before it were refined and written",
              file=sys.stderr)
        return 1
    return 0


def refine_clip_command(args, load: Callable[[], Refiner], version: str) -> int:
    """`sddr refine` with a video, `--clip` folders or a `--depth-video`: check the arguments
    (before any model loads), then `run_clip` on photos with the predictor, or on
    `--low`/`--high` depth pairs."""
    for given, why in ((args.mode != "one-stage", "--mode two-stage"),
                       (args.edges, "--edges"), (args.image, "--image")):
        if given:
            raise InputError(f"{why} is not available for a clip (clip mode is one-stage, "
                             "one frame after the other)")
    if args.snap_edges:
        raise InputError("--snap-edges is not available for a clip: a rerun continues the "
                         "clip from the frames written, which must be N_r's own output")
    fmt = args.format or "png16"
    if fmt not in CLIP_FORMATS:
        raise InputError(f"--format {fmt}: a clip's frames are written as "
                         f"{', '.join(CLIP_FORMATS)} (8 bits are too few for depth)")
    sources = [args.low, args.high] if args.low or args.high else list(args.images)
    if len(sources) != (2 if args.low or args.high else 1) or None in sources:
        raise InputError("a clip is one video or folder of frames (IMAGE), or a --low and a "
                         "--high video or folder of depth frames, not more")
    if args.resolution_cap is not None and args.low:
        raise InputError("--resolution-cap is for photos: --low/--high clips are refined "
                         "without running a predictor")
    if args.out_size and not args.low:
        raise InputError("--out-size is for --low/--high clips; a photo's depth keeps the "
                         "photo's size")
    if args.engine == "ray":
        if args.low or args.high:
            raise InputError("--engine ray spreads a clip's predictor runs over a cluster; "
                             "--low/--high clips have none (refine them without it)")
        import_ray()
    folder = Path(args.output)
    check_output(folder / f"000000{suffix_for_format(fmt)}", fmt)
    if args.depth_video or any(is_video(source) for source in sources):
        require_av()
    video = check_depth_video(args.depth_video, "--depth-video") if args.depth_video else None
    refuse_overwriting_inputs([video] if video else [],
                              {source: "clip input" for source in sources})
    pairs = args.low is not None
    infos = [clip_info(source, depth=pairs) for source in sources]
    settings = {"sources": [str(Path(s).resolve()) for s in sources], "format": fmt,
                "weights": args.weights, "predictor": None if pairs else args.predictor,
                "dtype": args.dtype, "out_size": args.out_size and list(args.out_size),
                "resolution_cap": args.resolution_cap}
    _start(folder, settings)  # another run's clip in the folder is refused before the load
    refiner = load()
    with ExitStack() as stack:
        if pairs:
            frames = _pairs(read_clip(args.low, depth=True), read_clip(args.high, depth=True))
            kind = units = None

            def refine(frame: Frame, state: ClipState) -> np.ndarray:
                return next(refiner.refine_clip([frame.data], args.out_size, state=state))
        elif args.engine == "ray":
            frames, kind, refine = _predicted_on_ray(args, stack, refiner, sources[0], folder,
                                                     fmt)
        else:
            pipeline = DepthPipeline(refiner, args.predictor,
                                     resolution_cap=args.resolution_cap)
            frames = read_clip(sources[0])
            kind = pipeline.predictor.polarity

            def refine(frame: Frame, state: ClipState) -> np.ndarray:
                # unsnapped: a rerun restores the clip state from the frames written
                return next(pipeline.frames([frame.data], state=state, snap_edges=False))

        units = kind and PREDICTED_UNITS[kind]
        output = ClipOutput(folder, fmt, video, kind, units, f"sddr refine {version}")
        return run_clip(frames, refine, output, settings=settings, total=infos[0].frames,
                        rate=infos[0].rate, device=refiner.device,
                        label=Path(sources[0]).name)


def _predicted_on_ray(args, stack: ExitStack, refiner: Refiner, source: str, folder: Path,
                      fmt: str) -> tuple[Iterator[Frame], str, RefineFrame]:
    """The clip's frames with their predictions made ahead on Ray (the pool lives as long
    as `stack`), the predictor's polarity, and the refinement of one predicted frame: what
    `DepthPipeline.frames` does after its predictor runs, so the frames are the same."""
    from ..batch.ray_clip import ClipPredictors

    pool = stack.enter_context(ClipPredictors(predictor_for_workers(args.predictor),
                                              device=args.device,
                                              address=args.address, workers=args.workers,
                                              resolution_cap=args.resolution_cap))
    finished = _finished(ClipOutput(folder, fmt, None, None, None, ""))  # reads frame names
    frames = pool.predictions(read_clip(source), skip=finished)

    def refine(frame: Frame, state: ClipState) -> np.ndarray:
        low, high, size = frame.data
        return next(refiner.refine_clip([(low, high)], size, state=state))
    return frames, pool.polarity, refine


def _pairs(lows: Iterator[Frame], highs: Iterator[Frame]) -> Iterator[Frame]:
    """Frames whose data is the (low, high) pair of the two clips' frames at one index."""
    for low, high in itertools.zip_longest(lows, highs):
        if low is None or high is None:
            shorter = "--low" if low is None else "--high"
            raise InputError(f"{shorter} clip ends at frame {(high or low).index}, before the "
                             "other one: the two must have the same frames")
        yield Frame(low.index, low.time, (low.data, high.data), low.source)
