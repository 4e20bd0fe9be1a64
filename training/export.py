"""Export a training checkpoint as the weights file `sddr_core.load_refiner` reads.

`python -m training export CHECKPOINT -o FILE.safetensors [--precision auto|fp16|fp32]
[--weights model|ema]` takes the model weights, or their EMA (the default when the checkpoint
holds one: the average is the smoother, usually better, model), and writes them with
`save_network`, atomically. `--correction-filter RADIUS [--correction-filter-eps EPS]` writes
N_r's correction filter (decision 134) into the file's architecture: it has no weights, so
weights trained without it take it as they are.

Precision is decided by measurement. fp16 halves the file, but storing a weight in fp16
rounds it to 11 significant bits, overflows beyond ±65504 and flushes magnitudes below about
6e-8 to zero. So the network is run twice in fp32 on a fixed set of generated depth pairs,
once with its own weights and once with the weights rounded to fp16 (exactly the network the
fp16 file loads as), and fp16 is taken only when the refined outputs D0 differ by at most
`TOLERANCE` anywhere, relative to each output's range. (`Refiner` fits D0 onto the low input
by a scale and shift, so a user sees D0 stretched to the scene's range: the difference over
D0's span is the difference in a map normalised to [0, 1].)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from sddr_core.errors import InputError, WeightsError
from sddr_core.files.atomic import refuse_overwriting_inputs
from sddr_core.files.weights import save_network
from sddr_core.maps.normalise import network_inputs
from sddr_core.network import NetworkConfig, RefinementNetwork
from sddr_core.predictors.simulated import SimulatedPredictor
from sddr_core.scenes import render_scene
from training.checkpoint import holds_ema, load_weights

Precision = Literal["auto", "fp16", "fp32"]
DTYPES = {"fp16": torch.float16, "fp32": torch.float32}

TOLERANCE = 2e-3
"""Largest change of the normalised output that fp16 storage may cause: half of one level of
an 8-bit depth image (1/255), and no more than running the same networks under fp16 autocast
(`load_refiner`'s default on CUDA) changes them by itself (0.7e-3 to 2.7e-3 on CPU).
Well-behaved weights cost 0.3e-3 to 1.4e-3 (19 random tiny, small and base networks) and
pass; weights fp16 cannot hold cost far more (the tests' cases: 0.32, infinity). See
docs/decisions.md, 91."""

PROBE_SEEDS = (0, 1, 2)
PROBE_SIZE = (256, 384)
PROBE_RESOLUTIONS = (96, 384)
"""Probe pairs: procedural rooms (`render_scene`, the training distribution: rods, foliage,
relief) of PROBE_SIZE, predicted by the simulated predictor at 96 px (low) and 384 px (high)
on the long side, run at PROBE_SIZE. Fixed, so an export decides the same way every time;
nothing from the benchmark data."""


@dataclass(frozen=True)
class Exported:
    """What `export_checkpoint` wrote."""

    path: Path
    precision: Literal["fp16", "fp32"]
    weights: Literal["model", "ema"]
    max_difference: float
    """Largest |D0 − D0 with fp16-rounded weights| over the probe pairs, relative to D0's span
    (see `fp16_difference`); measured whatever the precision asked for."""
    size_bytes: int


def export_checkpoint(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    *,
    precision: Precision = "auto",
    weights: Literal["model", "ema"] | None = None,
    correction_filter: tuple[int, float] | None = None,
) -> Exported:
    """Write the weights of a training checkpoint to `output` for `load_refiner`.

    `weights`: "model", "ema", or None for the EMA weights when the checkpoint holds them and
    the model weights otherwise. `correction_filter`: (radius, eps) of the correction filter
    to write into the file's architecture (None keeps the checkpoint's). `precision`: "auto"
    stores fp16 when that changes the output by at most `TOLERANCE` (see the module doc),
    fp32 otherwise; "fp16" and "fp32" force it.
    Raises `WeightsError` for a file that is not a training checkpoint, EMA weights it lacks,
    or forced fp16 for weights beyond fp16's range; `InputError` for an `output` that is a
    folder or the checkpoint itself.
    """
    checkpoint, output = Path(checkpoint), Path(output)
    if precision not in ("auto", *DTYPES):
        raise InputError(f"precision must be auto, fp16 or fp32, got {precision!r}")
    if output.is_dir():
        raise InputError(f"output (-o) '{output}' is a folder; give the weights file's path, "
                         f"e.g. '{output / 'sddr.safetensors'}'")
    refuse_overwriting_inputs([output], {checkpoint: "checkpoint"})
    if weights is None:
        weights = "ema" if holds_ema(checkpoint) else "model"
    network = load_weights(checkpoint, weights)
    if correction_filter is not None:
        network = with_correction_filter(network, *correction_filter)
    difference = fp16_difference(network)
    if precision == "auto":
        precision = "fp16" if difference <= TOLERANCE else "fp32"
    elif precision == "fp16" and math.isinf(difference):
        raise WeightsError(f"'{checkpoint}': its {weights} weights do not fit in fp16 (a value "
                           "beyond ±65504, or outputs no longer finite); export them as fp32")
    path = save_network(network, output, DTYPES[precision])
    return Exported(path, precision, weights, difference, path.stat().st_size)


def with_correction_filter(network: RefinementNetwork, radius: int, eps: float
                            ) -> RefinementNetwork:
    """The same weights in a network whose config has this correction filter; it adds no
    weights, so the state dict carries over exactly. Invalid values raise `InputError`."""
    config = dataclasses.replace(network.config, correction_filter_radius=radius,
                                 correction_filter_eps=eps)
    filtered = RefinementNetwork(config)
    filtered.load_state_dict(network.state_dict())
    return filtered.eval()


def fp16_difference(network: RefinementNetwork) -> float:
    """Largest |D0 − D0'| / span(D0) over the probe pairs, with D0 from `network` (in eval
    mode) and D0' from a copy whose weights are rounded to fp16; both compute in fp32.
    Infinite when a rounded weight or an output is not finite."""
    rounded = copy.deepcopy(network)
    with torch.no_grad():
        for tensor in rounded.state_dict().values():  # views of the parameters and buffers
            if tensor.is_floating_point():
                tensor.copy_(tensor.half())
                if not tensor.isfinite().all():
                    return math.inf
    low, high = _probe_pairs(network.config.stride)
    with torch.inference_mode():
        reference, candidate = network(low, high).depth, rounded(low, high).depth
    span = reference.amax((1, 2, 3), keepdim=True) - reference.amin((1, 2, 3), keepdim=True)
    difference = ((candidate - reference) / span).abs().max().item()
    return difference if math.isfinite(difference) else math.inf


@functools.cache
def _probe_pairs(stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The network inputs of the probe pairs (see PROBE_SIZE); made once, only read."""
    lows, highs = [], []
    for seed in PROBE_SEEDS:
        scene = render_scene(seed, *PROBE_SIZE)
        predictor = SimulatedPredictor(scene.depth, scene.valid, seed=seed)
        low_resolution, high_resolution = PROBE_RESOLUTIONS
        lows.append(predictor.predict(None, low_resolution))
        highs.append(predictor.predict(None, high_resolution))
    return network_inputs(torch.from_numpy(np.stack(lows)), torch.from_numpy(np.stack(highs)),
                          PROBE_SIZE, stride)


def add_arguments(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `export` command to the program's subparsers; `args.run(args)` runs it."""
    parser = subparsers.add_parser(
        "export", help="write a checkpoint's weights as a file load_refiner reads",
        description=export_checkpoint.__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a step-NNNNNN.safetensors checkpoint")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="the weights file to write (.safetensors)")
    parser.add_argument("--precision", choices=("auto", *DTYPES), default="auto",
                        help=f"auto (default): fp16 when it changes the output by at most "
                             f"{TOLERANCE:g}, else fp32")
    parser.add_argument("--weights", choices=("model", "ema"), default=None,
                        help="default: ema when the checkpoint holds EMA weights, else model")
    parser.add_argument("--correction-filter", type=int, metavar="RADIUS", default=None,
                        help="write N_r's correction filter into the file: a guided filter of "
                             "radius RADIUS px on the correction, the high input as guide "
                             "(decision 134); default: the checkpoint's")
    parser.add_argument("--correction-filter-eps", type=float, metavar="EPS",
                        default=NetworkConfig.correction_filter_eps,
                        help="the correction filter's eps (default %(default)g)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Export as `args` says and print one line about it; refusals raise `SddrError`."""
    result = export_checkpoint(args.checkpoint, args.output, precision=args.precision,
                               weights=args.weights,
                               correction_filter=None if args.correction_filter is None
                               else (args.correction_filter, args.correction_filter_eps))
    print(f"wrote {result.path}: {result.weights} weights, {result.precision}, "
          f"{result.size_bytes / 2**20:.2f} MiB; fp16 changes the output by at most "
          f"{result.max_difference:.2g} (tolerance {TOLERANCE:g})")
    return 0
