"""The `sddr` command line: refine, demo, eval, info, bench."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

import torch

from .config import PRESETS
from .depth_io import FORMATS, read_depth, write_depth
from .errors import InputError, SddrError
from .refiner import Refiner, build_refiner, load_refiner, parameter_count
from .weights import BUNDLED, BUNDLED_DIR


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

    refine = commands.add_parser("refine", help="fuse a low-res and a high-res depth map")
    refine.add_argument("--low", required=True, help="low-resolution depth prediction")
    refine.add_argument("--high", required=True, help="high-resolution depth prediction")
    refine.add_argument("-o", "--output", required=True, help="output depth file")
    refine.add_argument("--format", choices=FORMATS,
                        help="output format (default: from the output's extension)")
    refine.add_argument("--out-size", help="output size HEIGHTxWIDTH (default: high's size)")
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
                            help="comma-separated, from low,high,guided,sddr (default: all; "
                                 "sddr only when weights are given or bundled)")
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
    bench.add_argument("--repeats", type=int, default=15)
    bench.add_argument("--compile", action="store_true", help="torch.compile the network")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(run=_bench)
    return parser


def _load(args) -> Refiner:
    return load_refiner(args.weights, device=args.device, dtype=args.dtype)


def _refine(args) -> int:
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


def _demo(args) -> int:
    from .demo import run_demo

    refiner = _load(args)
    for path in run_demo(refiner, args.output):
        print(f"wrote {path}")
    return 0


def _eval(args) -> int:
    from pathlib import Path

    from .datasets import open_dataset
    from .evaluation import METHODS, evaluate_dataset, parse_methods, write_report
    from .progress import ProgressBar

    kind, root = args.dataset
    dataset = open_dataset(kind, root)
    if args.limit is not None:
        if args.limit < 1:
            raise InputError(f"--limit {args.limit}: must be at least 1")
        dataset = [dataset[i] for i in range(min(args.limit, len(dataset)))]
    weights = args.weights or ("default" if _bundled_weights_present() else None)
    if args.methods:
        methods = parse_methods(args.methods)
    else:
        methods = METHODS if weights else tuple(m for m in METHODS if m != "sddr")
    refiner = None
    if "sddr" in methods:
        refiner = load_refiner(weights or "default", device=args.device, dtype=args.dtype)
    out = Path(args.output)
    report = evaluate_dataset(
        dataset, methods, predictor=args.predictor, refiner=refiner,
        low_resolution=args.low_resolution, high_resolution=args.high_resolution,
        ord_variant=args.ord, seed=args.seed,
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
    return 0


def _bench(args) -> int:
    from .bench import benchmark

    if args.weights:
        refiner = load_refiner(args.weights, args.device, args.dtype, compile=args.compile)
    else:
        refiner = build_refiner(args.preset, device=args.device, dtype=args.dtype,
                                compile=args.compile)
    report = benchmark(refiner, size=args.size, repeats=args.repeats)
    report["preset"] = args.weights or args.preset
    if args.json:
        print(json.dumps(report, indent=2))
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
