"""How hard each part of the phase-2 objective pulls on the weights of a trained model.

    PYTHONPATH=. python benchmarks/loss_gradients.py runs/cpu-short [--checkpoint step-001200]
        [--batches 6] [--set losses.options.grad_variant=code ...]

Takes a run's config, cache, last label refresh and a checkpoint, draws the run's own phase-2
batches (procedural scenes only), and prints the median L2 norm of the weights' gradient of
each weighted part: L_gt (D0 and deep supervision, as trained), λ1·L_grad and λ2·L_fusion.
A part whose gradient is orders of magnitude below L_gt's barely changes training.
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
from training.losses import fusion_loss, grad_loss, total_loss


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
    weights, options = config.losses.weights, config.losses.options

    def gt(output, batch, edges):
        return total_loss(output, batch["target"], None, batch["mask"], weights=weights)[0]

    def grad(output, batch, edges):
        return weights.grad * grad_loss(output.depth, edges, batch["mask"],
                                        regions=options.regions, variant=options.grad_variant)

    def fusion(output, batch, edges):
        return weights.fusion * fusion_loss(output.omegas, edges, batch["mask"],
                                            levels=options.fusion_levels,
                                            variant=options.fusion_variant)

    parts = {"gt": gt, "grad": grad, "fusion": fusion}
    norms: dict[str, list[float]] = {name: [] for name in parts}
    crop, batch_size = config.data.crop, config.data.batch_size
    for step in range(first, first + args.batches):
        batch = default_collate([dataset[g] for g in range(step * batch_size,
                                                           (step + 1) * batch_size)])
        low, high = network_inputs(batch["low"][:, 0], batch["high"][:, 0], (crop, crop),
                                   model.config.stride)
        edges = label_crops(labels, batch, crop)
        for name, part in parts.items():
            model.zero_grad()
            part(model(low, high, with_aux=True), batch, edges).backward()
            norms[name].append(float(torch.sqrt(sum(
                (p.grad**2).sum() for p in model.parameters() if p.grad is not None))))
    print(json.dumps({"checkpoint": str(path), "refresh": refresh, "batches": args.batches,
                      "options": str(config.losses.options),
                      **{f"{name}_gradient_norm_median": round(statistics.median(values), 6)
                         for name, values in norms.items()}}))


if __name__ == "__main__":
    main()
