"""The `sddr` command line: refine, demo, info, bench."""

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
    warnings.formatwarning = lambda message, category, *rest: f"sddr: warning: {message}\n"
    try:
        return args.run(args)
    except SddrError as err:
        print(f"sddr: error: {err}", file=sys.stderr)
        return 2


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
