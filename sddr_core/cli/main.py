"""The `sddr` command line: refine, demo, eval, info, bench.

Every failure prints `sddr: error: …` and exits with status 2 (130 after Ctrl-C, 143 after
SIGTERM); arguments are checked before any model loads, and outputs are written atomically, so
an interrupted run leaves no partial file. A batch of photos (or of --low/--high folder
pairs) goes on past an input that fails (a truncated file): it is reported and skipped, and the
run exits with status 1 when some inputs failed, 2 when all did. `--engine ray` runs a batch, or
a clip's predictor runs, on a Ray cluster (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import warnings
from pathlib import Path

import torch

from .. import __version__
from ..batch.job import Item, RefineSettings, pair_items, photo_items, predictor_for_workers
from ..batch.work import ItemRefiner
from ..errors import InputError, SddrError
from ..files.atomic import refuse_overwriting_inputs
from ..files.depth_io import (
    FORMATS,
    PHOTO_EXTENSIONS,
    check_image,
    check_output,
)
from ..files.video import is_video
from ..files.weights import BUNDLED, BUNDLED_DIR
from ..inference.pipeline import MODES
from ..inference.refiner import Refiner, build_refiner, load_refiner, parameter_count
from ..inference.resolution import check_cap
from ..inference.windows import MAX_STEPS, STEPS, passes
from ..network.config import PRESETS
from .terminate import Terminated, sigterm_raises

DEFAULT_PREDICTOR = "depth-anything-v2-small"
MAX_OUT_SIDE = 16384
"""Largest `--out-size` side: a 16384² float32 map is 1 GiB, and larger ones exhaust memory
only after the whole refinement has run."""
MAX_BENCH_SIDE = 8192
"""Largest `bench --size`: the sample scene and its predictions at 8192² take about 4 GiB."""
FAILED_NAMED = 10
"""Failed photos a batch's closing line names; the others are counted (each was reported as
it failed)."""
THREADS_PER_CPU = 4
"""`--threads` above this many per CPU only slow torch down; tens of thousands crash OpenMP."""
ENGINES = ("local", "ray")


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or an argument error already printed
        return int(exit_.code or 0)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    python_format = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *rest: f"sddr: warning: {message}\n"
    try:
        with sigterm_raises():
            return args.run(args)
    except SddrError as err:
        return _fail(str(err), 2)
    except OSError as err:  # the environment failed (a download, a device): no traceback
        return _fail(str(err), 2)
    except KeyboardInterrupt:
        return _fail("interrupted; no partial output was left", 130)
    except Terminated:
        return _fail("terminated (SIGTERM); no partial output was left", 128 + signal.SIGTERM)
    finally:
        warnings.formatwarning = python_format


def _fail(message: str, status: int) -> int:
    print(f"sddr: error: {message}", file=sys.stderr)
    return status


class _Parser(argparse.ArgumentParser):
    """argparse with the same `sddr: error: …` line (and status 2) as every other failure."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"sddr: error: {message}\n")


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _int_in(low: int, high: int, why: str = ""):
    """An argparse type: a whole number from `low` to `high`."""
    def parse(text: str) -> int:
        value = _whole_number(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}{why}")
        return value
    return parse


def _threads(text: str) -> int:
    cpus = os.cpu_count() or 1
    return _int_in(1, THREADS_PER_CPU * cpus,
                   f" ({THREADS_PER_CPU} per CPU; this machine has {cpus})")(text)


def _resolution_cap(text: str) -> float:
    """An argparse type: a cap `check_cap` accepts (a multiple of a region's long side)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    try:
        return check_cap(value)
    except InputError:
        raise argparse.ArgumentTypeError(f"{text}: choose a number > 0 (a multiple of the "
                                         "long side of the photo or window predicted)") from None


def _steps(text: str) -> int:
    value = _whole_number(text)
    if not 1 <= value <= MAX_STEPS:
        work = ""
        if value > MAX_STEPS:  # `passes` sums term by term: bound what it is asked
            count = passes(min(value, 1000))
            work = f" would run {'over ' if value > 1000 else ''}{count:,} network passes;"
        raise argparse.ArgumentTypeError(
            f"{value}{work} choose 1..{MAX_STEPS} ({passes(MAX_STEPS)} passes at most; "
            f"the paper uses {STEPS})")
    return value


def _out_size(text: str) -> tuple[int, int]:
    sides = text.lower().split("x")
    if len(sides) != 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not HEIGHTxWIDTH (e.g. 2160x3840)")
    side = _int_in(1, MAX_OUT_SIDE, " pixels per side")
    try:
        return side(sides[0]), side(sides[1])
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None


def _heights(text: str) -> tuple[int, ...]:
    side = _int_in(16, MAX_BENCH_SIDE, " pixels")
    return tuple(side(part) for part in text.split(","))


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sddr", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--threads", type=_threads,
                        help="CPU threads for torch (default: torch's choice)")
    commands = parser.add_subparsers(dest="command", required=True)

    def runtime_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--weights", default="default",
                       help="bundled name, .safetensors path, or hf://owner/repo/file@revision")
        p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
        p.add_argument("--dtype", default="auto", help="auto, fp32, fp16 or bf16")

    refine = commands.add_parser(
        "refine", help="depth of photos (IMAGE… with a predictor), or fuse a --low/--high pair")
    refine.add_argument("images", nargs="*", metavar="IMAGE",
                        help="photos or folders of photos (writes OUTPUT/NAME.png per photo), "
                             "or a video (writes OUTPUT/000000.png… per frame)")
    refine.add_argument("--low", help="low-resolution depth prediction (pair mode), or a "
                                      "folder of them matched by name with --high's")
    refine.add_argument("--high", help="high-resolution depth prediction (pair mode), or a "
                                       "folder of them")
    refine.add_argument("--image", metavar="PHOTO",
                        help="pair mode: the photo the pair is of; the refined depth's edges "
                             "are snapped to it")
    refine.add_argument("-o", "--output", required=True,
                        help="output folder (photos, folder pairs) or depth file (pair)")
    refine.add_argument("--format", choices=FORMATS,
                        help="output format (default: png16 for photos and folder pairs, "
                             "else from the output's extension)")
    refine.add_argument("--out-size", type=_out_size,
                        help="pair mode: output size HEIGHTxWIDTH (default: high's size; "
                             f"at most {MAX_OUT_SIDE} per side)")
    refine.add_argument("--predictor", default=DEFAULT_PREDICTOR,
                        help=f"depth predictor for photos: a name (default: {DEFAULT_PREDICTOR}; "
                             "see `sddr info`) or a folder holding a transformers depth model "
                             "saved with save_pretrained")
    refine.add_argument("--mode", choices=MODES, default="one-stage",
                        help="one-stage (fast) or two-stage (coarse to fine, sharper)")
    refine.add_argument("--steps", type=_steps, default=STEPS,
                        help=f"two-stage steps S, 1..{MAX_STEPS} (default {STEPS}: "
                             "1+4+9+16 windows)")
    refine.add_argument("--resolution-cap", type=_resolution_cap, metavar="C",
                        help="photos: run the predictor at most C times the pixels of the "
                             "photo or window it predicts (e.g. 1: 4× faster one-stage, 7× "
                             "two-stage on a CPU, softer edges; default: Eq. 11 uncapped; "
                             "docs/performance.md)")
    refine.add_argument("--edges", action="store_true",
                        help="two-stage: also write the edge map G_S as NAME-edges.png")
    refine.add_argument("--snap-edges", action=argparse.BooleanOptionalAction,
                        help="photos: snap the pixels of depth ramps to the photo's nearer or "
                             "farther side (default: on; --no-snap-edges keeps the edges as "
                             "N_r leaves them; docs/decisions.md 322). Pair mode snaps when "
                             "--image is given; clips are not snapped (a rerun restores the "
                             "clip's state from the frames written)")
    refine.add_argument("--clip", action="store_true",
                        help="refine a folder of numbered frames (IMAGE, or --low/--high "
                             "folders) as one clip, in clip mode; a video file always is one "
                             "(docs/video.md)")
    refine.add_argument("--depth-video", metavar="FILE.mkv",
                        help="clip: also write the depth as a lossless 16-bit video (FFV1)")
    refine.add_argument("--engine", choices=ENGINES, default="local",
                        help="local: this process (default); ray: spread the inputs (of a "
                             "clip: its predictor runs) over a Ray cluster, skipping those a "
                             "previous run finished (docs/scaling.md)")
    refine.add_argument("--address",
                        help="--engine ray: the cluster to join (HOST:PORT or ray://HOST:PORT; "
                             "default: start a local Ray for the job)")
    refine.add_argument("--workers", type=_int_in(1, 100_000),
                        help="--engine ray: model-holding workers (default: one per GPU on a "
                             "GPU cluster, else one per CPU)")
    runtime_options(refine)
    refine.set_defaults(run=_refine)

    demo = commands.add_parser("demo", help="refine the bundled sample scene")
    demo.add_argument("-o", "--output", default="sddr-demo", help="output folder")
    demo.add_argument("--mode", choices=MODES, default="one-stage",
                      help="two-stage: coarse to fine, the simulated predictor predicting "
                           "each window (sharper edges, about 30 network passes)")
    runtime_options(demo)
    demo.set_defaults(run=_demo)

    evaluation = commands.add_parser(
        "eval", help="score methods on a dataset with ground truth (needs the 'eval' extra)")
    evaluation.add_argument("--dataset", nargs=2, required=True, metavar=("KIND", "PATH"),
                            help="middlebury2006 (or 2005), middlebury2014 (or 2021) or "
                                 "folder, and its path")
    evaluation.add_argument("--predictor", default="simulated",
                            help="depth predictor making the low/high inputs (default: "
                                 "simulated, the paper's noise model on the ground truth)")
    evaluation.add_argument("--seed", type=int, default=0, help="noise and sampling seed")
    evaluation.add_argument("--methods",
                            help="comma-separated, from low,high,guided,sddr,sddr-two-stage "
                                 "(default: all; the sddr ones only when weights are given "
                                 "or bundled)")
    evaluation.add_argument("--low-resolution", type=int,
                            help="low inference resolution, long side (default: 448/1920 "
                                 "of the image's long side, the paper's ratio; the simulated "
                                 "predictor is trained at it)")
    evaluation.add_argument("--high-resolution", type=int,
                            help="high inference resolution, long side (default: the image's "
                                 "long side, at least twice the low one)")
    evaluation.add_argument("--ord", default="boost", choices=("boost", "ranking"),
                            help="ORD protocol (default: Boost's superpixel ORD)")
    evaluation.add_argument("--limit", type=int, help="evaluate only the first N images")
    evaluation.add_argument("--no-figures", action="store_true", help="write no figures")
    evaluation.add_argument("-o", "--output", required=True, help="output folder")
    runtime_options(evaluation)
    evaluation.set_defaults(run=_eval, weights=None)

    info = commands.add_parser("info", help="presets, parameter counts, device")
    info.set_defaults(run=_info)

    bench = commands.add_parser("bench", help="time one-stage refinement")
    bench.add_argument("--size", type=_int_in(16, MAX_BENCH_SIDE, " pixels"), default=1024,
                       help=f"image side, 16..{MAX_BENCH_SIDE} (default 1024)")
    bench.add_argument("--preset", default="small", choices=sorted(PRESETS))
    bench.add_argument("--weights", help="benchmark these weights instead of a random preset")
    bench.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    bench.add_argument("--dtype", default="auto", help="auto, fp32, fp16 or bf16")
    bench.add_argument("--mode", choices=MODES, default="one-stage",
                       help="two-stage: time one- and two-stage photo refinement side by side")
    bench.add_argument("--steps", type=_steps, default=STEPS, help="two-stage steps S")
    bench.add_argument("--repeats", type=_int_in(1, 1000),
                       help="default: 15 (one-stage), 3 (two-stage)")
    bench.add_argument("--compile", action="store_true", help="torch.compile the network")
    bench.add_argument("--snap-edges", action="store_true",
                       help="one-stage: also time edge snapping of the refined depth; "
                            "two-stage: time both modes with snapping on")
    bench.add_argument("--throughput", action="store_true",
                       help="images per second over a folder of pairs, in one process and on "
                            "a local Ray with 1 and 2 workers (needs the 'distributed' extra)")
    bench.add_argument("--clip", action="store_true",
                       help="frames per second of per-frame refinement and of clip mode on "
                            "16:9 frame pairs, and their ratio")
    bench.add_argument("--heights", type=_heights,
                       help="--clip: frame heights, comma-separated (default 720,1080)")
    bench.add_argument("--count", type=_int_in(3, 10_000), default=16,
                       help="--throughput: pairs in the folder (default 16; at least 3, "
                       "so that one of two workers refines two)")
    bench.add_argument("--photo", action="store_true",
                       help="seconds of a whole photo, one- and two-stage, with --predictor, "
                            "split into predictor, N_r, edge snapping and the rest")
    bench.add_argument("--predictor", default=DEFAULT_PREDICTOR,
                       help=f"--photo: the depth predictor (default: {DEFAULT_PREDICTOR})")
    bench.add_argument("--resolution-cap", type=_resolution_cap,
                       help="--photo: cap each predictor run at this multiple of its region's "
                            "long side (default: none, Eq. 11 alone)")
    bench.add_argument("--batch", type=_int_in(1, 256), default=1,
                       help="one-stage: refine this many pairs in one call (images per "
                            "second at a batch size, for GPUs)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(run=_bench)
    return parser


def _load(args) -> Refiner:
    return load_refiner(args.weights, device=args.device, dtype=args.dtype)


def _refine(args) -> int:
    if args.engine != "ray" and (args.address or args.workers):
        raise InputError("--address and --workers are for --engine ray")
    if args.clip or args.depth_video or any(
            map(is_video, [*args.images, args.low or "", args.high or ""])):
        from .video_job import refine_clip_command

        return refine_clip_command(args, lambda: _load(args), __version__)
    if args.images:
        if args.low or args.high or args.image:
            raise InputError("give photos (IMAGE…) or --low/--high (with --image), not both")
        return _refine_images(args)
    if not (args.low and args.high):
        raise InputError("give photos (IMAGE…), or both --low and --high depth maps")
    if args.resolution_cap is not None:
        raise InputError("--resolution-cap is for photos: --low/--high pairs are refined "
                         "without running a predictor")
    if Path(args.low).is_dir() and Path(args.high).is_dir():
        return _refine_folders(args)
    if args.engine == "ray":
        raise InputError("--engine ray spreads many inputs over a cluster: give photos, "
                         "folders of photos, or --low/--high folders, not one pair")
    fmt = check_output(args.output, args.format)
    inputs = {args.low: "--low input", args.high: "--high input"}
    if args.image:
        check_image(args.image)
        inputs[args.image] = "--image photo"
    refuse_overwriting_inputs([args.output], inputs)
    item = Item(Path(args.output).name, (args.low, args.high, *filter(None, [args.image])),
                (args.output,))
    settings = RefineSettings("pairs", weights=args.weights, device=args.device,
                              dtype=args.dtype, format=fmt, out_size=args.out_size,
                              snap_edges=args.snap_edges is not False)
    (path,) = ItemRefiner(settings)(item)
    print(f"wrote {path}")
    return 0


def _refine_folders(args) -> int:
    """--low DIR --high DIR: each pair of files with the same name, into the folder -o."""
    if args.image:
        raise InputError("--image is for one --low/--high pair, not folders")
    fmt = args.format or "png16"
    items, unmatched = pair_items(Path(args.low), Path(args.high), Path(args.output), fmt)
    for name, reason in unmatched:
        print(f"sddr: error: skipped '{name}': {reason}", file=sys.stderr)
    settings = RefineSettings("pairs", weights=_weights(args.weights), device=args.device,
                              dtype=args.dtype, format=fmt, out_size=args.out_size)
    return _run_batch(args, items, settings, unmatched, "inputs")


def _refine_images(args) -> int:
    if args.edges and args.mode != "two-stage":
        raise InputError("--edges needs --mode two-stage (G_S comes from the coarse-to-fine "
                         "steps)")
    if args.out_size:
        raise InputError("--out-size is for --low/--high pairs; a photo's depth keeps the "
                         "photo's size")
    fmt = args.format or "png16"
    items = photo_items(image_paths(args.images), Path(args.output), fmt, args.edges)
    settings = RefineSettings("photos", weights=_weights(args.weights),
                              predictor=predictor_for_workers(args.predictor),
                              device=args.device, dtype=args.dtype, mode=args.mode,
                              steps=args.steps, edges=args.edges,
                              snap_edges=args.snap_edges is not False,
                              format=fmt, resolution_cap=args.resolution_cap)
    return _run_batch(args, items, settings, [], "photos")


def _weights(weights: str) -> str:
    """A weights file's absolute path (a Ray worker runs in another folder); names as given."""
    return os.path.abspath(weights) if Path(weights).is_file() else weights


def _run_batch(args, items: list[Item], settings: RefineSettings,
               unmatched: list[tuple[str, str]], what: str) -> int:
    """Run a batch on the chosen engine; the closing line names up to FAILED_NAMED failures."""
    if args.engine == "ray":
        failed = _run_on_ray(args, items, settings)
    else:
        failed = _run_here(items, settings)
    failed += [name for name, _ in unmatched]
    total = len(items) + len(unmatched)
    if not failed:
        return 0
    named = ", ".join(f"'{name}'" for name in failed[:FAILED_NAMED])
    more = f" and {len(failed) - FAILED_NAMED} more" if len(failed) > FAILED_NAMED else ""
    summary = f"{len(failed)} of {total} {what} failed ({named}{more})"
    if len(failed) == total:
        return _fail(summary, 2)
    return _fail(f"{summary}; the others were written", 1)


def _run_here(items: list[Item], settings: RefineSettings) -> list[str]:
    """Refine the items one after the other in this process; the names of those that failed
    (each reported as it failed)."""
    from .progress import ProgressBar

    work = ItemRefiner(settings)
    photos = settings.kind == "photos"
    total = passes(settings.steps) if settings.mode == "two-stage" else 1
    failed = []
    for index, item in enumerate(items, start=1):
        label = f"[{index}/{len(items)}] {Path(item.name).name}"
        bar = ProgressBar(label, total=total, unit="pass") if photos else None
        try:
            for path in work(item, bar):
                print(f"wrote {path}")
        except SddrError as err:  # one bad input (a truncated file) must not stop the batch
            print(f"sddr: error: skipped '{item.name}': {err}", file=sys.stderr)
            failed.append(item.name)
        finally:
            if bar is not None:
                bar.close()
    return failed


def _run_on_ray(args, items: list[Item], settings: RefineSettings) -> list[str]:
    """Refine the items on Ray with one progress bar for the job; the names of those that
    failed, each reported at the end."""
    from ..batch.ray_engine import refine_on_ray
    from .progress import ProgressBar

    bar = ProgressBar("refine", total=len(items), unit="input")
    try:
        report = refine_on_ray(items, settings, args.output, address=args.address,
                               workers=args.workers, progress=bar)
    finally:
        bar.close()
    print(f"refined {report.refined}, skipped {report.skipped} finished by an earlier run "
          f"(manifest in '{Path(args.output) / '.sddr-manifest'}'), failed "
          f"{len(report.failed)}")
    for name, reason in report.failed:
        print(f"sddr: error: skipped '{name}': {reason}", file=sys.stderr)
    return [name for name, _ in report.failed]


def image_paths(arguments: list[str]) -> list[Path]:
    """Photos named on the command line, folders expanded (sorted), each checked to be an image
    file before any model loads."""
    photos = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in PHOTO_EXTENSIONS
                           and not p.name.startswith(".") and not p.is_dir())
            if not found:
                raise InputError(f"folder '{path}' holds no photos "
                                 f"({', '.join(PHOTO_EXTENSIONS)})")
            photos += found
        else:
            photos.append(path)
    for photo in photos:
        check_image(photo)
    return photos


def _demo(args) -> int:
    from .demo import run_demo

    refiner = _load(args)
    for path in run_demo(refiner, args.output, args.mode):
        print(f"wrote {path}")
    return 0


def _eval(args) -> int:
    from ..evaluation.datasets import open_dataset
    from ..evaluation.runner import (
        METHODS,
        REFINER_METHODS,
        evaluate_dataset,
        parse_methods,
        write_report,
    )
    from .progress import ProgressBar

    kind, root = args.dataset
    dataset = open_dataset(kind, root)
    weights = args.weights or ("default" if _bundled_weights_present() else None)
    if args.methods:
        methods = parse_methods(args.methods)
    else:
        methods = METHODS if weights else tuple(m for m in METHODS if m not in REFINER_METHODS)
    refiner = None
    if any(m in REFINER_METHODS for m in methods):
        refiner = load_refiner(weights or "default", device=args.device, dtype=args.dtype)
    out = Path(args.output)
    report = evaluate_dataset(
        dataset, methods, predictor=args.predictor, refiner=refiner,
        low_resolution=args.low_resolution, high_resolution=args.high_resolution,
        ord_variant=args.ord, seed=args.seed, limit=args.limit,
        figures_dir=None if args.no_figures else out / "figures",
        progress=ProgressBar("eval"),
    )
    report["dataset"] = {"kind": kind, "root": str(Path(root).resolve())}
    report["weights"] = weights if refiner is not None else None
    for path in write_report(report, out, figures=not args.no_figures):
        print(f"wrote {path}")
    print(Path(out / "metrics.md").read_text(), end="")
    return 0


def _bundled_weights_present() -> bool:
    return (BUNDLED_DIR / BUNDLED["default"]).is_file()


def _info(args) -> int:
    print(f"sddr on torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available"
    print(f"CUDA: {cuda}")
    for name in sorted(PRESETS):
        refiner = build_refiner(name)
        print(f"preset {name}: {parameter_count(refiner.network) / 1e6:.2f} M parameters, "
              f"max working side {refiner.max_side}")
    for name, file in BUNDLED.items():
        state = "present" if (BUNDLED_DIR / file).is_file() else "missing: reinstall sddr"
        print(f"weights {name}: {file} ({state})")
    from ..predictors.huggingface import PREDICTORS

    for name, spec in PREDICTORS.items():
        print(f"predictor {name}: {spec.repo}@{spec.revision[:7]}, {spec.polarity}, "
              f"r̂ {spec.training_resolution} (needs the 'predictors' extra)")
    return 0


def _bench(args) -> int:
    from .bench import benchmark, benchmark_two_stage

    if args.batch > 1 and (args.throughput or args.clip or args.photo
                           or args.mode == "two-stage"):
        raise InputError("--batch times one-stage refinement of a stack of pairs: leave out "
                         "--throughput, --clip, --photo and --mode two-stage")
    if args.throughput:
        return _bench_throughput(args)
    if args.clip:
        return _bench_clip(args)
    if args.photo:
        from .photo_bench import run_photo_bench

        return run_photo_bench(args, lambda: _bench_refiner(args))
    refiner = _bench_refiner(args)
    if args.mode == "two-stage":
        report = benchmark_two_stage(refiner, size=args.size, repeats=args.repeats or 3,
                                     steps=args.steps, snap=args.snap_edges)
    else:
        report = benchmark(refiner, size=args.size, repeats=args.repeats or 15,
                           snap=args.snap_edges, batch=args.batch)
    report["preset"] = args.weights or args.preset
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if args.mode == "two-stage":
        print(f"{report['preset']} {args.size}×{args.size} photo on {report['device']} "
              f"({report['dtype']}, {report['threads']} threads), median of "
              f"{report['repeats']}:")
        print(f"  one-stage: {report['one_stage_passes']} pass, "
              f"{report['one_stage_seconds']:.3f} s")
        print(f"  two-stage: {report['two_stage_passes']} passes (S = {report['steps']}), "
              f"{report['two_stage_seconds']:.3f} s = {report['ratio_two_to_one']:.1f}× "
              f"one-stage; peak memory {report['peak_memory_mb']:.0f} MB")
        print(f"  edge snapping {'on' if report['snap_edges'] else 'off'}")
        return 0
    stack = f"{args.batch} × " if args.batch > 1 else ""
    print(f"{report['preset']} one-stage {stack}{args.size}×{args.size} on {report['device']} "
          f"({report['dtype']}, {report['threads']} threads): "
          f"median {report['median_seconds'] * 1e3:.1f} ms over {report['repeats']} runs, "
          f"{report['images_per_second']:.2f} images/s")
    print(f"  {report['gflops_per_refinement']:.2f} GFLOP per refinement → "
          f"{report['achieved_gflops_per_second']:.1f} GFLOP/s; matmul "
          f"{report['matmul_gflops_per_second']:.1f} GFLOP/s; ratio "
          f"{report['ratio_to_matmul']:.2f}")
    print(f"  peak memory {report['peak_memory_mb']:.0f} MB, "
          f"{report['parameters'] / 1e6:.2f} M parameters")
    if "snap_seconds" in report:
        print(f"  edge snapping: median {report['snap_seconds'] * 1e3:.1f} ms = "
              f"{100 * report['snap_ratio_to_refine']:.1f} % of the refine")
    return 0


def _bench_refiner(args) -> Refiner:
    """The weights to time, or a random preset."""
    if args.weights:
        return load_refiner(args.weights, args.device, args.dtype, compile=args.compile)
    return build_refiner(args.preset, device=args.device, dtype=args.dtype, compile=args.compile)


def _bench_clip(args) -> int:
    from .bench import benchmark_clip

    report = benchmark_clip(_bench_refiner(args), args.heights, repeats=args.repeats or 5)
    report["preset"] = args.weights or args.preset
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['preset']} per-frame and clip refinement on {report['device']} "
          f"({report['dtype']}, {report['threads']} threads), median of "
          f"{report['repeats']} frames each, timed in turn:")
    for row in report["sizes"]:
        print(f"  {row['height']}×{row['width']}: per-frame {row['per_frame_fps']:.2f} "
              f"frames/s, clip {row['clip_fps']:.2f} frames/s = "
              f"{row['ratio_clip_to_per_frame']:.2f}× per-frame's time per frame "
              f"({row['ratio_fastest']:.2f}× fastest to fastest)")
    return 0


def _bench_throughput(args) -> int:
    import importlib.util
    import tempfile

    from ..batch.ray_cluster import INSTALL_EXTRA
    from .throughput import benchmark_throughput

    if importlib.util.find_spec("ray") is None:
        raise SddrError(f"bench --throughput needs the 'distributed' extra (Ray): "
                        f"{INSTALL_EXTRA}")
    with tempfile.TemporaryDirectory(prefix="sddr-bench-") as folder:
        weights = args.weights
        if not weights:  # the workers load weights from a file: save the random preset
            weights = str(build_refiner(args.preset).save(Path(folder) / "random.safetensors"))
        report = benchmark_throughput(_weights(weights), size=args.size, count=args.count,
                                      device=args.device, dtype=args.dtype)
    report["preset"] = args.weights or args.preset
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['preset']} one-stage, {report['count']} pairs of {args.size}² on "
          f"{report['device']} ({report['cpus']} CPUs):")
    print(f"  one process: {report['one_process_images_per_second']:.2f} images/s "
          f"({report['one_process_item_seconds']:.3f} s an item)")
    for ray in report["ray"]:
        print(f"  Ray, {ray['workers']} worker{'s' * (ray['workers'] > 1)}: "
              f"{ray['steady_images_per_second']:.2f} images/s once running "
              f"({ray['steady_item_seconds_per_worker']:.3f} s an item per worker, "
              f"{ray['overhead_item_seconds'] * 1e3:+.1f} ms = "
              f"{100 * ray['overhead_ratio']:+.1f} % beside the item's own time); "
              f"pool start {ray['startup_seconds']:.1f} s, job {ray['job_seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
