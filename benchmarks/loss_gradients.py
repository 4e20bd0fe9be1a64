"""How hard each term of the phase-2 objective pulls on the weights of a trained model, and on
its output.

    PYTHONPATH=. python benchmarks/loss_gradients.py runs/cpu-short [--checkpoint step-001200]
        [--batches 6] [--set losses.options.grad_variant=code ...]

Takes a run's config, cache, last label refresh and a checkpoint, draws the run's own phase-2
batches (procedural scenes only), and prints for each weighted term (`training.losses.
loss_terms`: L_gt on D0 and on each deep-supervision output, λ1·L_grad, λ2·L_fusion) the median
L2 norm of the weights' gradient, and its median share of the terms' summed norms there and at
the network's output (what training logs, `training.losses.balance`). A term whose gradient is
orders of magnitude below L_gt's barely changes training.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from torch.utils.data import default_collate

from sddr_core.maps.normalise import network_inputs
from training.checkpoint import latest_checkpoint, load_weights
from training.config import load_config, override
from training.data.batches import CropDataset, Schedule
from training.data.cache import build_cache, cache_folder, procedural_sources
from training.labels import label_crops, load_labels
from training.losses import gradient_shares, loss_terms, output_gradient_norms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--checkpoint", default=None, help="a step-NNNNNN name; default: latest")
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="e.g. losses.options.grad_variant=code")
    args = parser.parse_args()
    config = override(load_config(args.run / "config.yaml"), args.overrides)
    folder = cache_folder(config.data.cache or args.run / "cache", config.data)
    entries, _ = build_cache(folder, procedural_sources(config.data.seed, config.data.scenes),
                             config.data)
    schedule = Schedule(config, CropDataset.shapes(entries))
    dataset = CropDataset(entries, schedule)
    path = (args.run / f"{args.checkpoint}.safetensors" if args.checkpoint
            else latest_checkpoint(args.run))
    model = load_weights(path, "model").train()
    label_folder = max((args.run / "labels").glob("refresh-*"))
    refresh = int(label_folder.name.split("-")[1])
    labels = load_labels(label_folder, schedule.label_pool(refresh))
    first = schedule.phase1 + refresh * config.schedule.label_refresh
    norms: dict[str, list[float]] = {}
    weight_shares: dict[str, list[float]] = {}
    output_shares: dict[str, list[float]] = {}
    crop, batch_size = config.data.crop, config.data.batch_size
    for step in range(first, first + args.batches):
        batch = default_collate([dataset[g] for g in range(step * batch_size,
                                                           (step + 1) * batch_size)])
        low, high = network_inputs(batch["low"][:, 0], batch["high"][:, 0], (crop, crop),
                                   model.config.stride)
        edges = label_crops(labels, batch, crop)

        def terms_of(output, batch=batch, edges=edges):
            return loss_terms(output, batch["target"], edges, batch["mask"],
                              weights=config.losses.weights, options=config.losses.options)

        output = model(low, high, with_aux=True)
        at_output = {name: float(norm) for name, norm in
                     output_gradient_norms(output, terms_of).items()}
        at_weights = {}
        for name, term in terms_of(output).items():
            model.zero_grad()
            term.weighted.backward(retain_graph=True)
            at_weights[name] = float(torch.sqrt(sum(
                (p.grad**2).sum() for p in model.parameters() if p.grad is not None)))
        for store, values in ((norms, at_weights), (weight_shares, gradient_shares(at_weights)),
                              (output_shares, gradient_shares(at_output))):
            for name, value in values.items():
                store.setdefault(name, []).append(value)
    print(json.dumps({"checkpoint": str(path), "refresh": refresh, "batches": args.batches,
                      "options": str(config.losses.options),
                      **{f"{name}_gradient_norm_median": round(statistics.median(values), 6)
                         for name, values in norms.items()},
                      **{f"{name}_weight_share_median": round(statistics.median(values), 6)
                         for name, values in weight_shares.items()},
                      **{f"{name}_output_share_median": round(statistics.median(values), 6)
                         for name, values in output_shares.items()}}))


if __name__ == "__main__":
    main()
