"""Command line of the training program: `python -m training train|export|ablate|judge …`.

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
from pathlib import Path

from sddr_core.cli.terminate import Terminated, sigterm_raises
from sddr_core.errors import SddrError
from training import export
from training.ablation import ROWS as ABLATION_ROWS

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"


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
        "ablate", help="the paper's Table 4: phase 1, then phase 2 varied, per training seed")
    ablate.add_argument("--config", required=True,
                        help="base config: its phase1_steps is phase 1's budget and its "
                             "phase2_steps every row's")
    ablate.add_argument("--out", required=True, help="folder of the runs and the table")
    ablate.add_argument("--rows", nargs="+", default=None, choices=ABLATION_ROWS,
                        metavar="ROW", help=f"rows (default: all): {', '.join(ABLATION_ROWS)}")
    ablate.add_argument("--dataset", default="middlebury2006",
                        help="evaluation dataset kind, as `sddr eval --dataset`")
    ablate.add_argument("--data", required=True, help="evaluation dataset root")
    ablate.add_argument("--train-seeds", nargs="+", type=int, default=[0, 1],
                        help="training seeds: each trains phase 1 and every row "
                             "(mean ± std over them)")
    ablate.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="simulator seeds of the evaluation (averaged)")
    ablate.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a base config value (repeatable)")
    ablate.set_defaults(run=_ablate)

    judge = commands.add_parser(
        "judge", help="score finished weights on held-out scenes: the figures that decide "
                      "what ships (docs/training.md, 'Judging weights')")
    judge.add_argument("weights", nargs="+", metavar="WEIGHTS",
                       help="a weights file, 'default', hf://…, or a training checkpoint")
    judge.add_argument("--config", default=str(DEFAULT_CONFIG),
                       help="the config whose data settings make the scenes' inputs and whose "
                            "validation seeds are the validation set (default: default.yaml)")
    judge.add_argument("--cache", default="runs/held-out",
                       help="folder of the scenes' cached entries")
    judge.add_argument("--scenes", type=int, metavar="N",
                       help="score only the first N scenes of each set")
    judge.add_argument("--fresh", nargs="?", type=int, const=0, metavar="N",
                       help="also score issue 25's fresh held-out set N (final weights only; "
                            "default 0). A set judges one decision: set 0 has judged the step "
                            "head, so the next decision takes 1")
    judge.add_argument("--one-stage-only", action="store_true",
                       help="leave out the two-stage rows (minutes per scene on a CPU)")
    judge.add_argument("--no-harm-size", default="480x640", metavar="HxW",
                       help="size the no-harm checks render their scenes at")
    judge.set_defaults(run=_judge)

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
    report = run_ablation(config, args.out, dataset, args.rows or tuple(ABLATION_ROWS),
                          args.train_seeds, args.seeds)
    print(f"wrote {args.out}/ablation.md and ablation.json ({len(report['rows'])} rows)")
    return 0


def _judge(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.judge import judge, report, scene_sets

    config = load_config(args.config)
    size = _size(args.no_harm_size, "--no-harm-size")
    judgements = [judge(args.weights, config, args.cache, scenes, size=size,
                        two_stage=not args.one_stage_only)
                  for scenes in scene_sets(config, scenes=args.scenes, fresh=args.fresh)]
    print(report(judgements, args.config))
    return 0


def _size(text: str, name: str) -> tuple[int, int]:
    """'480x640' → (480, 640); `InputError` naming `name` otherwise."""
    from sddr_core.errors import InputError

    parts = text.lower().split("x")
    if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
        raise InputError(f"{name} {text!r}: give HxW in pixels, e.g. 480x640")
    height, width = (int(part) for part in parts)
    if min(height, width) < 32 or max(height, width) > 8192:
        raise InputError(f"{name} {text!r}: each side must be 32 to 8192 px")
    return height, width
