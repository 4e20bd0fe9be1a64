"""The refinement worker: run by the *external* Python (the one with sddr and torch), never
imported by Blender, so torch never loads inside Blender.

    python worker.py check [--predictor NAME]
    python worker.py refine PHOTO OUTPUT.exr [--mode one-stage|two-stage] [--steps 3]
                     [--weights default] [--predictor NAME] [--device auto]
                     [--no-snap-edges]
    python worker.py frames FOLDER PHOTO... [--weights default] [--predictor NAME]
                     [--device auto] [--no-snap-edges]
    python worker.py video FOLDER VIDEO [--weights default] [--predictor NAME]
                     [--device auto] [--no-snap-edges]

It speaks one JSON object per line on stdout, which `backend.py` reads:
``{"event": "progress", "done": 3, "total": 30}``, ``{"event": "warning", "message": …}``,
``{"event": "done", "path": …, "width": …, "height": …, "polarity": "disparity"}`` (for
frames also ``"files"``, every depth frame written, `path` being the first; for a video also
``"photos"``, the decoded frames written beside them),
``{"event": "check", "python": …, "sddr": …, "torch": …, "device": …, "install_extra": …,
"weights": …, "fetch": …}`` and ``{"event": "error", "message": …}`` (with ``"predictor"``
and ``"fetch"``, the command that gets its weights, when they are missing). Exit status: 0
done, 2 error, 143 terminated (Blender's cancel), so the depth file exists only after a
complete run (sddr writes it atomically); of frames, those written before the end are complete.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import warnings
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]  # the add-on's own modules (props.py, …) must not shadow installed ones

INSTALL = ("python3 -m venv ~/sddr-venv && ~/sddr-venv/bin/pip install torch==2.13.0 "
           "-e '/path/to/sddr[predictors]'")
"""The install from a clone (README): sddr is not published on PyPI."""


def emit(event: str, **fields: object) -> None:
    """One line of the protocol, flushed at once so Blender sees progress as it happens."""
    print(json.dumps({"event": event, **fields}), flush=True)


def check(predictor: str) -> None:
    """What the backend offers: versions, the device `auto` picks, the command that installs
    the `predictors` extra when it is missing (else None), and `predictor`'s cached weights
    (None when not cached) with the command that fetches them."""
    import torch

    import sddr_core
    from sddr_core.predictors import cached_weights, fetch_command

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        device += f" ({torch.cuda.get_device_name(0)})"
    try:
        import transformers  # noqa: F401  (the one package of the extra)
        install_extra = None
    except ImportError:
        install_extra = f"{sys.executable} -m pip install -e '{_checkout()}[predictors]'"
    weights = cached_weights(predictor)
    emit("check", python=sys.executable, sddr=sddr_core.__version__, torch=torch.__version__,
         device=device, install_extra=install_extra, weights=str(weights) if weights else None,
         fetch=fetch_command(predictor))


def _checkout() -> str:
    """The sddr clone this Python runs (an editable install), or a placeholder for it."""
    import sddr_core

    root = Path(sddr_core.__file__).resolve().parents[1]
    return str(root) if (root / "pyproject.toml").is_file() else "/path/to/sddr"


def refine(args: argparse.Namespace) -> None:
    """Photo → refined depth file, with progress per network pass."""
    from sddr_core import DepthPipeline, InputError, load_refiner
    from sddr_core.files.atomic import refuse_overwriting_inputs
    from sddr_core.files.depth_io import check_output, read_image
    from sddr_core.inference.windows import MAX_STEPS, STEPS, passes

    if not 1 <= args.steps <= MAX_STEPS:
        raise InputError(f"--steps {args.steps}: choose 1..{MAX_STEPS} (two-stage steps S; the "
                         f"paper uses {STEPS})")
    check_output(args.output)
    refuse_overwriting_inputs([args.output], {args.photo: "photo"})
    image = read_image(args.photo)
    pipeline = DepthPipeline(load_refiner(args.weights, device=args.device), args.predictor)
    total = passes(args.steps) if args.mode == "two-stage" else 1
    emit("progress", done=0, total=total)
    depth = pipeline(image, mode=args.mode, steps=args.steps, snap_edges=args.snap_edges,
                     progress=lambda done, total, *_: emit("progress", done=done, total=total))
    polarity = pipeline.predictor.polarity
    path = _write_predicted(args.output, depth, polarity, args.predictor)
    emit("done", path=str(path), width=depth.shape[1], height=depth.shape[0],
         polarity=polarity)


def frames(args: argparse.Namespace) -> None:
    """Numbered photo frames → one refined depth frame each, the frames refined as one clip
    (`DepthPipeline.frames`), written as `FOLDER/<photo's name>.png` (16-bit, with sidecar) as
    each is done, with progress per frame."""
    from sddr_core import DepthPipeline, load_refiner
    from sddr_core.files.atomic import refuse_overwriting_inputs
    from sddr_core.files.depth_io import read_image

    folder = Path(args.folder)
    outputs = [folder / f"{Path(photo).stem}.png" for photo in args.photos]
    refuse_overwriting_inputs(outputs, {photo: "photo frame" for photo in args.photos})
    _make_folder(folder)
    pipeline = DepthPipeline(load_refiner(args.weights, device=args.device), args.predictor)
    polarity = pipeline.predictor.polarity
    emit("progress", done=0, total=len(outputs))
    depths = pipeline.frames(_same_size(args.photos, read_image), snap_edges=args.snap_edges)
    for done, (depth, output) in enumerate(zip(depths, outputs, strict=True), start=1):
        _write_predicted(output, depth, polarity, f"{args.predictor}, clip")
        emit("progress", done=done, total=len(outputs))
    emit("done", path=str(outputs[0]), files=[str(output) for output in outputs],
         width=depth.shape[1], height=depth.shape[0], polarity=polarity)


def video(args: argparse.Namespace) -> None:
    """A video file → its frames refined as one clip, as `frames` does, into
    `FOLDER/<video's name>_000001.png`, … (16-bit, with sidecar), each decoded frame also kept
    as `FOLDER/photos/<video's name>_000001.png` (8-bit: the animated mesh's texture, the very
    pixels refined). Progress per frame, of the count the video states (0 when it states
    none). A video damaged after its first frame keeps the frames before the damage, says so
    in a warning and ends as done; one damaged before it, or holding no frame, is an error
    (the reader raises `DamagedClip` at frame 0)."""
    from sddr_core import DepthPipeline, load_refiner
    from sddr_core.files.depth_io import write_image
    from sddr_core.files.video import DamagedClip, clip_info, read_clip, require_av

    require_av()
    source, folder = Path(args.video), Path(args.folder)
    total = clip_info(source).frames or 0
    _make_folder(folder / "photos")
    pipeline = DepthPipeline(load_refiner(args.weights, device=args.device), args.predictor)
    polarity = pipeline.predictor.polarity
    outputs, photos = [], []

    def decoded():
        for frame in read_clip(source):
            photo = folder / "photos" / f"{source.stem}_{frame.index + 1:06d}.png"
            write_image(photo, frame.data)
            photos.append(photo)
            yield frame.data

    emit("progress", done=0, total=total)
    try:
        for depth in pipeline.frames(decoded(), snap_edges=args.snap_edges):
            output = folder / f"{source.stem}_{len(outputs) + 1:06d}.png"
            _write_predicted(output, depth, polarity, f"{args.predictor}, clip")
            outputs.append(output)
            emit("progress", done=len(outputs), total=total)
    except DamagedClip as err:
        if not outputs:
            raise
        emit("warning", message=f"{err}; the {len(outputs)} frames before it are refined")
    emit("done", path=str(outputs[0]), files=[str(output) for output in outputs],
         photos=[str(photo) for photo in photos[:len(outputs)]],
         width=depth.shape[1], height=depth.shape[0], polarity=polarity)


def _write_predicted(path, depth, polarity: str, how: str) -> Path:
    """`depth` written atomically to `path` (16-bit PNG or as its extension says) with a
    sidecar giving the predictor's polarity and units; `how` (the predictor, and "clip" for
    frames) goes into the sidecar's writer."""
    import sddr_core
    from sddr_core.files.sidecar import PREDICTED_UNITS, write_depth_with_meaning

    written, _ = write_depth_with_meaning(
        path, depth, kind=polarity, units=PREDICTED_UNITS[polarity],
        written_by=f"sddr {sddr_core.__version__} Blender worker ({how})")
    return written


def _make_folder(folder: Path) -> None:
    from sddr_core import InputError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot make depth folder '{folder}': {err.strerror or err}") from None


def _same_size(photos: list[str], read):
    """The photos read one at a time; InputError naming the first whose size differs from the
    first photo's."""
    from sddr_core import InputError

    size = None
    for photo in photos:
        image = read(photo)
        size = size or image.shape[:2]
        if image.shape[:2] != size:
            raise InputError(f"photo frame '{photo}' is {image.shape[1]}×{image.shape[0]} but "
                             f"'{photos[0]}' is {size[1]}×{size[0]}: every frame must have "
                             "the same size")
        yield image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="worker.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check_parser = commands.add_parser(
        "check", help="report sddr, torch, the device, the predictors extra and the weights")
    check_parser.add_argument("--predictor", default="depth-anything-v2-small")
    job = commands.add_parser("refine", help="refine a photo's depth into a file")
    job.add_argument("photo")
    job.add_argument("output")
    job.add_argument("--mode", choices=("one-stage", "two-stage"), default="one-stage")
    job.add_argument("--steps", type=int, default=3)
    job.add_argument("--weights", default="default")
    job.add_argument("--predictor", default="depth-anything-v2-small")
    job.add_argument("--device", default="auto")
    job.add_argument("--no-snap-edges", dest="snap_edges", action="store_false")
    clip = commands.add_parser("frames", help="refine numbered photo frames as one clip")
    clip.add_argument("folder")
    clip.add_argument("photos", nargs="+")
    clip.add_argument("--weights", default="default")
    clip.add_argument("--predictor", default="depth-anything-v2-small")
    clip.add_argument("--device", default="auto")
    clip.add_argument("--no-snap-edges", dest="snap_edges", action="store_false")
    movie = commands.add_parser("video", help="refine a video file's frames as one clip")
    movie.add_argument("folder")
    movie.add_argument("video")
    movie.add_argument("--weights", default="default")
    movie.add_argument("--predictor", default="depth-anything-v2-small")
    movie.add_argument("--device", default="auto")
    movie.add_argument("--no-snap-edges", dest="snap_edges", action="store_false")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _terminated)
    warnings.showwarning = lambda message, *_: emit("warning", message=str(message))
    try:
        import sddr_core
        from sddr_core.predictors import MissingWeightsError
    except ImportError as err:
        emit("error", message=f"this Python ({sys.executable}) cannot import sddr ({err}). "
                              f"Install sddr from a clone of its repository: {INSTALL}, then "
                              "choose ~/sddr-venv/bin/python as External Python")
        return 2
    try:
        {"check": lambda: check(args.predictor), "refine": lambda: refine(args),
         "frames": lambda: frames(args), "video": lambda: video(args)}[args.command]()
    except MissingWeightsError as err:
        emit("error", message=str(err), predictor=err.predictor, fetch=err.command)
        return 2
    except sddr_core.SddrError as err:
        emit("error", message=str(err))
        return 2
    return 0


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM (Blender's cancel) unwinds like Ctrl-C, so an atomic write in progress removes
    its temporary file."""
    raise SystemExit(143)


if __name__ == "__main__":
    sys.exit(main())
