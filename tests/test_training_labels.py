"""Phase 2's labels come from what the network sees (issue 25): the cached, degraded inputs
and window inputs made as they were, never the exact depth; `labels: ground_truth` gives
the ground truth's own gradients instead."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from sddr_core.inference.windows import step_windows
from sddr_core.network.model import RefinementNetwork
from sddr_core.predictors.simulated import normalised_disparity
from tests.tiny import TINY
from training.config import DataConfig, DegradationConfig
from training.data.cache import build_cache, procedural_sources, read_entry
from training.labels import load_labels, make_labels, window_inputs

DATA = DataConfig(scenes=1, scene_height=128, scene_width=160, crop=128, workers=0,
                  degradation=DegradationConfig(low_resolution=(40, 64),
                                                high_resolution=(128, 192)))
STEPS = 2


@pytest.fixture
def entry_path(tmp_path: Path) -> Path:
    paths, skipped = build_cache(tmp_path / "cache", procedural_sources(0, 1), DATA)
    assert not skipped
    return paths[0]


def _labels(path: Path, folder: Path, **options) -> torch.Tensor:
    torch.manual_seed(0)
    make_labels(RefinementNetwork(TINY), [path], [0], STEPS, folder,
                degradation=DATA.degradation, **options)
    return load_labels(folder, [0])[0].float()


def _flip_ground_truth(path: Path) -> None:
    """Rewrite the entry with its exact depth (and mask) turned upside down, inputs kept."""
    with safe_open(str(path), framework="np") as handle:
        arrays = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        metadata = handle.metadata()
    for key in ("depth", "valid"):
        arrays[key] = np.ascontiguousarray(arrays[key][::-1])
    save_file(arrays, str(path), metadata)


def _window_file(path: Path) -> Path:
    return path.with_name(f"{path.stem}.windows-{STEPS}.safetensors")


def test_labels_do_not_change_when_the_exact_depth_changes_after_the_inputs(entry_path,
                                                                            tmp_path):
    before = _labels(entry_path, tmp_path / "before")
    _flip_ground_truth(entry_path)
    after = _labels(entry_path, tmp_path / "after")
    assert torch.equal(after, before)
    # The control: window inputs made anew from the flipped depth do change the labels.
    _window_file(entry_path).unlink()
    remade = _labels(entry_path, tmp_path / "remade")
    assert (remade - before).abs().max() > 1e-2 * before.max()


def test_window_inputs_are_predictions_of_each_window_with_the_training_degradations(
        entry_path, tmp_path):
    clean_path = tmp_path / "clean" / entry_path.name
    clean_path.parent.mkdir()
    shutil.copyfile(entry_path, clean_path)
    entry = read_entry(entry_path)
    clean = dataclasses.replace(DATA.degradation, edge_shift=0.0, scale_drift=0.0, holes=0.0)
    undegraded = window_inputs(clean_path, entry, STEPS, clean)
    degraded = window_inputs(entry_path, entry, STEPS, DATA.degradation)
    truth = normalised_disparity(entry.depth, entry.valid)[0]
    changed = 0
    for step in range(1, STEPS + 1):
        windows = step_windows(*truth.shape, step)
        assert len(undegraded[step - 1]) == len(degraded[step - 1]) == len(windows)
        for window, plain, noisy in zip(windows, undegraded[step - 1], degraded[step - 1],
                                        strict=True):
            assert plain.shape == noisy.shape == (window.height, window.width)
            crop = window.crop(truth)
            if crop.std() > 1e-3:  # a window that shows structure: predicted from its crop
                assert np.corrcoef(plain.ravel(), crop.ravel())[0, 1] > 0.8
            changed += np.abs(noisy - plain).max() > 1e-2
    assert changed >= len(degraded[-1]) // 2  # each error kind applies with p = 0.5


def test_window_inputs_are_made_once_and_read_back(entry_path):
    entry = read_entry(entry_path)
    first = window_inputs(entry_path, entry, STEPS, DATA.degradation)
    stamp = _window_file(entry_path).stat().st_mtime_ns
    again = window_inputs(entry_path, entry, STEPS, DATA.degradation)
    assert _window_file(entry_path).stat().st_mtime_ns == stamp
    for a, b in zip(sum(first, []), sum(again, []), strict=True):
        np.testing.assert_array_equal(a, b)
    assert window_inputs(entry_path, entry, 0, DATA.degradation) == []


def test_ground_truth_labels_are_the_ground_truths_gradients(entry_path, tmp_path):
    labels = _labels(entry_path, tmp_path / "upright", source="ground_truth")
    entry = read_entry(entry_path)
    truth = normalised_disparity(entry.depth, entry.valid)[0]
    gradient = np.hypot(*np.gradient(truth.astype(np.float64)))
    strongest = labels > torch.quantile(labels.flatten(), 0.94)
    # The top 6 % of the labels lie where the ground truth's gradient is steep.
    strongest = strongest.numpy()
    assert gradient[strongest].mean() > 5 * gradient[~strongest].mean()
    assert labels.shape == truth.shape and labels.min() >= 0
    # Taken from the ground truth itself: flip it and the labels flip with it.
    _flip_ground_truth(entry_path)
    flipped = _labels(entry_path, tmp_path / "flipped", source="ground_truth")
    torch.testing.assert_close(flipped, labels.flip(0), rtol=0, atol=2e-3 * labels.max())
