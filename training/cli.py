"""Command line of the training program: `python -m training train|export …`.

Run from the repository root, in one process or under `torchrun` (each process runs the same
command). Errors a user can fix (a bad config, a run folder in use, a bad checkpoint) print
one line naming the problem and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from sddr_core.errors import SddrError
from training import export


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train N_r (phase 1, then self-distillation)")
    train.add_argument("--config", required=True, help="YAML config (training/configs/*.yaml)")
    train.add_argument("--out", required=True, help="run folder: config, log, checkpoints")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its latest checkpoint")
    train.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE",
                       help="override a config value, e.g. --set optim.lr=3e-4 (repeatable)")
    train.add_argument("--init", metavar="WEIGHTS",
                       help="start from trained weights (a .safetensors weights file, 'default', "
                            "hf://…, or a training checkpoint) instead of random ones")
    train.set_defaults(run=_train)
    export.add_arguments(commands)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except SddrError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume", file=sys.stderr)
        return 130


def _train(args: argparse.Namespace) -> int:
    from training.config import load_config, override
    from training.loop import train

    config = override(load_config(args.config), args.overrides)
    checkpoint = train(config, args.out, resume=args.resume, init=args.init)
    print(f"done: {checkpoint}")
    return 0
