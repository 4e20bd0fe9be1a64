"""Command line of the training program: `python -m training train|export …`.

Run from the repository root, in one process or under `torchrun` (each process runs the same
command). Errors a user can fix (a bad config, a run folder in use, a bad checkpoint, a full
disk, a loss that stopped being finite) print one line naming the problem and exit with
status 2; Ctrl-C exits with 130 and SIGTERM with 143, both leaving the last checkpoint whole.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from sddr_core.cli.terminate import Terminated, sigterm_raises
from sddr_core.errors import SddrError
from training import export
from training.ablation import ROWS as ABLATION_ROWS


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

    ablate = commands.add_parser(
        "ablate", help="the paper's Table 4: phase 2 varied from one phase-1 checkpoint")
    ablate.add_argument("--config", required=True,
                        help="base config; its phase2_steps is every row's budget")
    ablate.add_argument("--init", required=True, metavar="PHASE1",
                        help="the shared phase-1 checkpoint (or weights file)")
    ablate.add_argument("--out", required=True, help="folder of the rows' runs and the table")
    ablate.add_argument("--rows", nargs="+", default=None, choices=ABLATION_ROWS,
                        metavar="ROW", help=f"rows (default: all): {', '.join(ABLATION_ROWS)}")
    ablate.add_argument("--dataset", default="middlebury2006",
                        help="evaluation dataset kind, as `sddr eval --dataset`")
    ablate.add_argument("--data", required=True, help="evaluation dataset root")
    ablate.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="simulator seeds of the evaluation (mean ± std over them)")
    ablate.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a base config value (repeatable)")
    ablate.set_defaults(run=_ablate)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        with sigterm_raises():
            return args.run(args)
    except (SddrError, OSError) as error:  # OSError: the environment (a disk, a device)
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated (SIGTERM); resume with --resume", file=sys.stderr)
        return 128 + signal.SIGTERM


def _train(args: argparse.Namespace) -> int:
    from training.config import load_config, override
    from training.loop import train

    config = override(load_config(args.config), args.overrides)
    checkpoint = train(config, args.out, resume=args.resume, init=args.init)
    print(f"done: {checkpoint}")
    return 0


def _ablate(args: argparse.Namespace) -> int:
    from sddr_core.evaluation.datasets import open_dataset
    from training.ablation import run_ablation
    from training.config import load_config, override

    config = override(load_config(args.config), args.overrides)
    dataset = open_dataset(args.dataset, args.data)
    report = run_ablation(config, args.init, args.out, dataset,
                          args.rows or tuple(ABLATION_ROWS), args.seeds)
    print(f"wrote {args.out}/ablation.md and ablation.json ({len(report['rows'])} rows)")
    return 0
