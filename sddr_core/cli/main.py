"""The `sddr` command line: refine, demo, eval, info, bench."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

from ..errors import InputError, SddrError
from ..files.depth_io import FORMATS, read_depth, read_image, suffix_for_format, write_depth
from ..files.weights import BUNDLED, BUNDLED_DIR
from ..inference.coarse_to_fine import STEPS
from ..inference.pipeline import MODES
from ..inference.refiner import Refiner, build_refiner, load_refiner, parameter_count
from ..network.config import PRESETS

DEFAULT_PREDICTOR = "depth-anything-v2-small"
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    python_format = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *rest: f"sddr: warning: {message}\n"
    try:
        return args.run(args)
    except SddrError as err:
        print(f"sddr: error: {err}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = python_format


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sddr", description=__doc__)
    parser.add_argument("--threads", type=int, default=0,
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
                        help="photos or folders of photos; writes OUTPUT/NAME.png per photo")
    refine.add_argument("--low", help="low-resolution depth prediction (pair mode)")
    refine.add_argument("--high", help="high-resolution depth prediction (pair mode)")
    refine.add_argument("-o", "--output", required=True,
                        help="output folder (photos) or depth file (pair)")
    refine.add_argument("--format", choices=FORMATS,
                        help="output format (default: png16 for photos, else from the "
                             "output's extension)")
    refine.add_argument("--out-size", help="pair mode: output size HEIGHTxWIDTH "
                                           "(default: high's size)")
    refine.add_argument("--predictor", default=DEFAULT_PREDICTOR,
                        help=f"depth predictor for photos (default: {DEFAULT_PREDICTOR}; "
                             "see `sddr info`)")
    refine.add_argument("--mode", choices=MODES, default="one-stage",
                        help="one-stage (fast) or two-stage (coarse to fine, sharper)")
    refine.add_argument("--steps", type=int, default=STEPS,
                        help=f"two-stage steps S (default {STEPS}: 1+4+9+16 windows)")
    refine.add_argument("--edges", action="store_true",
                        help="two-stage: also write the edge map G_S as NAME-edges.png")
    runtime_options(refine)
    refine.set_defaults(run=_refine)

    demo = commands.add_parser("demo", help="refine the bundled sample scene")
    demo.add_argument("-o", "--output", default="sddr-demo", help="output folder")
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
                            help="low inference resolution, long side (default: the "
                                 "predictor's training resolution)")
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
    bench.add_argument("--size", type=int, default=1024, help="image side (default 1024)")
    bench.add_argument("--preset", default="small", choices=sorted(PRESETS))
    bench.add_argument("--weights", help="benchmark these weights instead of a random preset")
    bench.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    bench.add_argument("--dtype", default="auto", help="auto, fp32, fp16 or bf16")
    bench.add_argument("--mode", choices=MODES, default="one-stage",
                       help="two-stage: time one- and two-stage photo refinement side by side")
    bench.add_argument("--steps", type=int, default=STEPS, help="two-stage steps S")
    bench.add_argument("--repeats", type=int, help="default: 15 (one-stage), 3 (two-stage)")
    bench.add_argument("--compile", action="store_true", help="torch.compile the network")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(run=_bench)
    return parser


def _load(args) -> Refiner:
    return load_refiner(args.weights, device=args.device, dtype=args.dtype)


def _refine(args) -> int:
    if args.images:
        if args.low or args.high:
            raise InputError("give photos (IMAGE…) or --low/--high, not both")
        return _refine_images(args)
    if not (args.low and args.high):
        raise InputError("give photos (IMAGE…), or both --low and --high depth maps")
    out_size = None
    if args.out_size:
        try:
            out_size = tuple(int(v) for v in args.out_size.lower().split("x"))
        except ValueError:
            raise InputError(f"--out-size {args.out_size!r}: expected HEIGHTxWIDTH") from None
    low, high = read_depth(args.low), read_depth(args.high)
    refiner = _load(args)
    refined = refiner.refine(low, high, out_size=out_size)
    path = write_depth(args.output, refined, args.format)
    print(f"wrote {path} ({refined.shape[0]}×{refined.shape[1]})")
    return 0


def _refine_images(args) -> int:
    from ..inference.pipeline import DepthPipeline
    from ..predictors.huggingface import load_predictor
    from .progress import ProgressBar

    if args.edges and args.mode != "two-stage":
        raise InputError("--edges needs --mode two-stage (G_S comes from the coarse-to-fine "
                         "steps)")
    photos = image_paths(args.images)
    fmt = args.format or "png16"
    suffix = suffix_for_format(fmt)
    refiner = _load(args)
    pipeline = DepthPipeline(refiner, load_predictor(args.predictor, device=refiner.device))
    out = Path(args.output)
    for index, photo in enumerate(photos, start=1):
        image = read_image(photo)
        bar = ProgressBar(f"[{index}/{len(photos)}] {photo.name}")
        if args.edges:
            depth, edges = pipeline.depth_and_edges(image, args.steps, progress=bar)
            print(f"wrote {write_depth(out / f'{photo.stem}-edges.png', edges, 'png16')}")
        else:
            depth = pipeline(image, mode=args.mode, steps=args.steps, progress=bar)
        print(f"wrote {write_depth(out / (photo.stem + suffix), depth, fmt)}")
    return 0


def image_paths(arguments: list[str]) -> list[Path]:
    """Photos named on the command line, folders expanded (sorted); two photos that would
    write the same output name are refused rather than one overwriting the other."""
    photos = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.suffix.lower() in PHOTO_SUFFIXES and not p.name.startswith("."))
            if not found:
                raise InputError(f"folder '{path}' holds no photos "
                                 f"({', '.join(PHOTO_SUFFIXES)})")
            photos += found
        elif path.is_file():
            photos.append(path)
        else:
            raise InputError(f"photo '{path}' does not exist")
    stems: dict[str, Path] = {}
    for photo in photos:
        if photo.stem in stems:
            raise InputError(f"photos '{stems[photo.stem]}' and '{photo}' would both write "
                             f"'{photo.stem}'; refine them into different folders")
        stems[photo.stem] = photo
    return photos


def _demo(args) -> int:
    from .demo import run_demo

    refiner = _load(args)
    for path in run_demo(refiner, args.output):
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
              f"max working side {refiner.config.max_side}")
    for name, file in BUNDLED.items():
        state = "present" if (BUNDLED_DIR / file).is_file() else "not bundled yet"
        print(f"weights {name}: {file} ({state})")
    from ..predictors.huggingface import PREDICTORS

    for name, spec in PREDICTORS.items():
        print(f"predictor {name}: {spec.repo}@{spec.revision[:7]}, {spec.polarity}, "
              f"r̂ {spec.training_resolution} (needs the 'predictors' extra)")
    return 0


def _bench(args) -> int:
    from .bench import benchmark, benchmark_two_stage

    if args.weights:
        refiner = load_refiner(args.weights, args.device, args.dtype, compile=args.compile)
    else:
        refiner = build_refiner(args.preset, device=args.device, dtype=args.dtype,
                                compile=args.compile)
    if args.mode == "two-stage":
        report = benchmark_two_stage(refiner, size=args.size, repeats=args.repeats or 3,
                                     steps=args.steps)
    else:
        report = benchmark(refiner, size=args.size, repeats=args.repeats or 15)
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
        return 0
    print(f"{report['preset']} one-stage {args.size}×{args.size} on {report['device']} "
          f"({report['dtype']}, {report['threads']} threads): "
          f"median {report['median_seconds'] * 1e3:.1f} ms over {report['repeats']} runs")
    print(f"  {report['gflops_per_refinement']:.2f} GFLOP per refinement → "
          f"{report['achieved_gflops_per_second']:.1f} GFLOP/s; matmul "
          f"{report['matmul_gflops_per_second']:.1f} GFLOP/s; ratio "
          f"{report['ratio_to_matmul']:.2f}")
    print(f"  peak memory {report['peak_memory_mb']:.0f} MB, "
          f"{report['parameters'] / 1e6:.2f} M parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
