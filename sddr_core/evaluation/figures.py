"""Evaluation figures: per image a depth/error panel, per run a bar chart of the metrics.

matplotlib (extra `eval`) draws them off-screen; files are written atomically like every
other output.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import SddrError
from ..files.atomic import atomic_output

ERROR_PERCENTILE = 99
"""The error colormap tops out at this percentile of all methods' errors in the figure."""


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise SddrError("evaluation figures need matplotlib: pip install 'sddr[eval]'") from None
    return plt


def image_panel(path: str | os.PathLike, image: np.ndarray, gt_depth: np.ndarray,
                valid: np.ndarray, aligned: dict[str, np.ndarray],
                titles: dict[str, str] | None = None) -> Path:
    """RGB, ground truth and each method's aligned depth (top), relative error maps (bottom).

    Depth is shown as inverse depth (near = warm) with one Turbo range for every panel, set
    by the ground truth's 1st–99th percentile, and errors share one range, so panels compare
    by eye.
    """
    plt = _pyplot()
    inverse_gt = np.where(valid, 1.0 / np.where(valid, gt_depth, 1.0), np.nan)  # 1/depth
    lo, hi = np.nanpercentile(inverse_gt, [1, 99])
    columns = 2 + len(aligned)
    height, width = gt_depth.shape
    tile = 3.2
    fig, axes = plt.subplots(2, columns, figsize=(tile * columns, 2 * tile * height / width + 0.8),
                             squeeze=False, constrained_layout=True)
    depth_map = plt.get_cmap("turbo").with_extremes(bad="black")
    error_map = plt.get_cmap("inferno").with_extremes(bad="0.5")
    axes[0, 0].imshow(image)
    axes[0, 0].set_title("image")
    shown = axes[0, 1].imshow(inverse_gt, cmap=depth_map, vmin=lo, vmax=hi)
    axes[0, 1].set_title("ground truth")
    axes[1, 1].imshow(valid, cmap="gray", vmin=0, vmax=1)
    axes[1, 1].set_title("valid pixels")
    safe_gt = np.where(valid, gt_depth, 1.0)
    errors = {name: np.where(valid, np.abs(depth - gt_depth) / safe_gt, np.nan)
              for name, depth in aligned.items()}
    top = max([np.nanpercentile(e, ERROR_PERCENTILE) for e in errors.values()] + [1e-6])
    for column, (name, depth) in enumerate(aligned.items(), start=2):
        axes[0, column].imshow(1.0 / depth, cmap=depth_map, vmin=lo, vmax=hi)
        axes[0, column].set_title((titles or {}).get(name, name))
        shown_error = axes[1, column].imshow(errors[name], cmap=error_map, vmin=0, vmax=top)
        axes[1, column].set_title(f"{name}: |d − d*| / d*")
    for ax in axes.flat:
        ax.set_axis_off()
    fig.colorbar(shown, ax=axes[0, :].tolist(), shrink=0.8, label="inverse depth")
    if aligned:
        fig.colorbar(shown_error, ax=axes[1, :].tolist(), shrink=0.8, label="relative error")
    return _save(fig, path)


def metrics_chart(path: str | os.PathLike, means: dict[str, dict[str, float]],
                  columns: dict[str, str]) -> Path:
    """One bar group per metric (`columns`: key → title), one bar per method."""
    plt = _pyplot()
    methods = list(means)
    rows = -(-len(columns) // 3)
    fig, axes = plt.subplots(rows, 3, figsize=(11, 2.6 * rows), squeeze=False,
                             constrained_layout=True)
    colors = plt.get_cmap("tab10")(np.arange(len(methods)) % 10)
    for ax, (key, title) in zip(axes.flat, columns.items(), strict=False):
        values = [means[m][key] for m in methods]
        ax.bar(methods, values, color=colors)
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=30)
    for ax in list(axes.flat)[len(columns):]:
        ax.set_axis_off()
    return _save(fig, path)


def _save(fig, path: str | os.PathLike) -> Path:
    plt = _pyplot()
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
    return Path(path)
