"""Cost of a training checkpoint for the `base` architecture after one AdamW step, with EMA:
file size, and the times of a save (fsyncs included), `latest_checkpoint` and a load, over
three rounds into a temporary folder.

Run from the repository root: PYTHONPATH=. python benchmarks/checkpoint_cost.py
"""

import tempfile
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel

from sddr_core.network import NetworkConfig, RefinementNetwork
from training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    model = RefinementNetwork(NetworkConfig()).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ema = AveragedModel(model)
    x = torch.rand(1, 1, 128, 128)
    model(x, x).depth.mean().backward()
    optimizer.step()
    ema.update_parameters(model)
    print("parameters", sum(p.numel() for p in model.parameters()))
    folder = Path(tempfile.mkdtemp())
    for step in range(3):
        path, save = timed(save_checkpoint, folder, step, model, optimizer, ema=ema, keep=2)
        _, latest = timed(latest_checkpoint, folder)
        _, load = timed(load_checkpoint, path, model, optimizer, ema=ema)
        print(f"save {save * 1000:.0f} ms, latest {latest * 1000:.1f} ms, "
              f"load {load * 1000:.0f} ms, size {path.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
