"""Training curves of a run: the loss parts per step, each loss term's share of the gradient at
the network's output (when the run logged it, `logging.shares_every`) and the validation
metrics of the model against the low and high inputs (with boundary F1 and the flying-pixel
rate where the run logged them), from the run's log.jsonl and config.yaml.

    python benchmarks/training_curves.py runs/cpu-short -o docs/img/training-curves.png
    python benchmarks/training_curves.py runs/default-resid --phase2 runs/grad100 -o curves.png

`--phase2 RUN2`: RUN2 is a phase-2-only run started with `--init` from RUN's phase-1 checkpoint
(the shipped weights were made so, docs/model-card.md); RUN's phase 1 is drawn, then RUN2's
records shifted by RUN's phase-1 steps. A step logged twice (a resumed run redoes the steps
after its last checkpoint) is drawn once, with its last record.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

from sddr_core.files.atomic import atomic_output  # noqa: E402

METRICS = (("rel", "REL ↓"), ("delta1", "δ1 ↑"), ("ord", "ORD ↓"), ("d3r", "D³R ↓"),
           ("boundary_f1", "boundary F1 ↑"), ("flying", "flying ↓"))
"""Validation panels, those the log has (runs before issue 24 logged no edge metrics)."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--phase2", type=Path, metavar="RUN2",
                        help="a phase-2-only run that continued RUN's phase 1 (--init)")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    schedule = _schedule(args.run)
    steps, shares, validations = _records(args.run)
    if args.phase2 is None:
        phase2 = schedule["phase1_steps"] if schedule["phase2_steps"] else None
    else:
        phase2 = schedule["phase1_steps"]
        later_steps, later_shares, later_validations = _records(args.phase2, shift=phase2)
        steps = [r for r in steps if r["step"] <= phase2] + later_steps
        shares = [r for r in shares if r["step"] <= phase2] + later_shares
        validations = [r for r in validations if r["step"] <= phase2] + [
            r for r in later_validations if r["step"] > phase2]

    # one term's share of the gradient is 1 by construction: no panel for it
    shares = [r for r in shares if any(not k.startswith("gt_") for k in r["share"])]
    metrics = [(key, title) for key, title in METRICS
               if key in validations[0]["validation"]["low"]]
    rows = 3 if shares else 2
    figure = plt.figure(figsize=(14, 3.25 * rows))
    grid = figure.add_gridspec(rows, len(metrics))
    loss_axis = figure.add_subplot(grid[0, :])
    for part in ("loss", "gt", "grad", "fusion"):
        points = [(r["step"], r[part]) for r in steps if part in r]
        if points:
            loss_axis.plot(*zip(*points, strict=True), label=part, lw=1)
    loss_axis.set_yscale("log")
    loss_axis.set_title("training loss and its parts (log scale; grad and fusion before λ1, λ2)")
    loss_axis.set_xlabel("step")
    loss_axis.legend(fontsize=8)
    axes = [loss_axis]
    if shares:
        axes.append(_plot_shares(figure.add_subplot(grid[1, :]), shares))
    for column, (key, title) in enumerate(metrics):
        ax = figure.add_subplot(grid[rows - 1, column])
        axes.append(ax)
        for name, color in (("low", "tab:blue"), ("high", "tab:orange")):
            ax.axhline(validations[0]["validation"][name][key], color=color, ls="--",
                       label=f"{name} input")
        xs = [r["step"] for r in validations]
        for name, style in (("model", "-o"), ("ema", "-s")):
            if all(name in r["validation"] for r in validations):
                ax.plot(xs, [r["validation"][name][key] for r in validations], style,
                        label=name, ms=4)
        ax.set_title(f"held-out {title}")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    for ax in axes:
        if phase2 is not None:
            ax.axvline(phase2, color="grey", lw=0.8)
    where = f"phase 2 from step {phase2} (grey line)" if phase2 is not None else "phase 1 only"
    name = args.run.name + (f" + {args.phase2.name}" if args.phase2 else "")
    figure.suptitle(f"{name}: {where}", fontsize=10)
    figure.tight_layout()
    with atomic_output(args.output) as tmp:
        figure.savefig(tmp, dpi=110, format=args.output.suffix.lstrip(".") or "png")
    print(args.output)


def _schedule(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())["schedule"]


def _plot_shares(ax, shares: list[dict]):
    """Each term's share of the output gradient; L_gt's outputs summed."""
    xs = [r["step"] for r in shares]
    ground_truth = [sum(v for k, v in r["share"].items() if k.startswith("gt_")) for r in shares]
    ax.plot(xs, ground_truth, lw=1, label="L_gt (D0 and deep supervision)")
    for term, label in (("grad", "λ1·L_grad"), ("fusion", "λ2·L_fusion")):
        points = [(r["step"], r["share"][term]) for r in shares if term in r["share"]]
        if points:
            ax.plot(*zip(*points, strict=True), lw=1, label=label)
    ax.set_yscale("log")
    ax.set_title("each term's share of the summed gradient norms at the output (log scale)")
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    return ax


def _records(run: Path, shift: int = 0) -> tuple[list[dict], list[dict], list[dict]]:
    """The run's loss, share and validation records, one of each kind per step (the last)."""
    kinds: dict[str, dict[int, dict]] = {"loss": {}, "share": {}, "validation": {}}
    for line in (run / "log.jsonl").read_text().splitlines():
        record = json.loads(line)
        for kind, by_step in kinds.items():
            if kind in record:
                by_step[record["step"]] = {**record, "step": record["step"] + shift}
    return tuple([by_step[step] for step in sorted(by_step)] for by_step in kinds.values())


if __name__ == "__main__":
    main()
