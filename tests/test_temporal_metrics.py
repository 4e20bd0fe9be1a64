"""Temporal metrics (`evaluation.temporal`), procedural clips (`scenes.sequence`) and their
per-frame predictions (`predictors.flicker`)."""

from __future__ import annotations

import numpy as np
import pytest

from sddr_core import InputError
from sddr_core.evaluation.temporal import (
    aligned_clip_depth,
    static_temporal_std,
    temporal_alignment_error,
)
from sddr_core.predictors.flicker import FrameJitter, clip_predictions
from sddr_core.scenes.sequence import MOTIONS, render_clip

SIZE = (48, 64)


@pytest.fixture(scope="module")
def clips():
    return {motion: render_clip(3, frames=5, height=SIZE[0], width=SIZE[1], motion=motion)
            for motion in MOTIONS}


@pytest.mark.parametrize("motion", list(MOTIONS))
def test_exact_depth_has_almost_no_temporal_error(clips, motion):
    # pixel rounding of the reprojection is all that is left (VDA's TAE of its own GT)
    clip = clips[motion]
    assert temporal_alignment_error(1 / clip.depth, clip.depth, clip.cameras,
                                    mask=~clip.moving) < 1.5


@pytest.mark.parametrize("motion", ["static", "dolly", "walk"])
def test_per_frame_scale_jitter_raises_the_temporal_error(clips, motion):
    clip = clips[motion]
    scales = np.array([1.0, 1.1, 1.0, 1.1, 1.0])[:, None, None]  # 10 % up and down
    exact = temporal_alignment_error(1 / clip.depth, clip.depth, clip.cameras,
                                     mask=~clip.moving)
    jittered = temporal_alignment_error(scales / clip.depth, clip.depth, clip.cameras,
                                        mask=~clip.moving)
    assert jittered > exact + 5


def test_moving_objects_break_reprojection_unless_masked(clips):
    clip = clips["objects"]
    assert clip.moving.any(axis=(1, 2)).all()
    unmasked = temporal_alignment_error(1 / clip.depth, clip.depth, clip.cameras)
    masked = temporal_alignment_error(1 / clip.depth, clip.depth, clip.cameras,
                                      mask=~clip.moving)
    assert unmasked > masked + 1


def test_one_scale_for_the_whole_clip_cannot_undo_per_frame_scale(clips):
    clip = clips["static"]
    scales = np.array([1.0, 1.2, 1.0, 1.2, 1.0])[:, None, None]
    aligned = aligned_clip_depth(scales / clip.depth, clip.depth)
    assert not np.allclose(aligned[0], aligned[1], rtol=0.05)
    assert aligned[0] == pytest.approx(aligned[2])


def test_static_std_sees_flicker_and_only_on_static_pixels(clips):
    still = clips["static"]
    noise = np.random.default_rng(1).normal(0, 0.02, still.depth.shape)
    assert static_temporal_std(1 / still.depth, still.depth) == pytest.approx(0, abs=1e-6)
    assert static_temporal_std(1 / still.depth + noise, still.depth) > 1
    assert np.isnan(static_temporal_std(1 / clips["dolly"].depth, clips["dolly"].depth))


def test_camera_motions_change_depth_and_static_camera_does_not(clips):
    assert np.array_equal(clips["static"].depth[0], clips["static"].depth[-1])
    for motion in ("pan", "dolly", "zoom", "walk"):
        assert not np.allclose(clips[motion].depth[0], clips[motion].depth[-1])
    zoomed = clips["zoom"].cameras
    assert zoomed[-1].intrinsics[0, 0] == pytest.approx(1.3 * zoomed[0].intrinsics[0, 0])


def test_same_seed_same_clip():
    first = render_clip(5, frames=2, height=24, width=32, motion="walk")
    again = render_clip(5, frames=2, height=24, width=32, motion="walk")
    assert np.array_equal(first.depth, again.depth)


def test_predictions_change_from_frame_to_frame_on_a_still_clip(clips):
    depth = clips["static"].depth
    pairs = list(clip_predictions(depth, seed=1, low_resolution=16, high_resolution=64))
    lows = np.stack([low for low, _ in pairs])
    assert np.abs(np.diff(lows, axis=0)).mean() > 0.005
    steady = list(clip_predictions(depth, seed=1, low_resolution=16, high_resolution=64,
                                   jitter=FrameJitter(0.0, 0.0)))
    assert not np.allclose(steady[0][1], steady[1][1])  # ε_cons is drawn afresh per frame
    again = list(clip_predictions(depth[2:3], seed=1, low_resolution=16, high_resolution=64))
    assert not np.array_equal(again[0][0], pairs[2][0])  # frame index is part of the seed


def test_bad_clips_are_refused_with_their_names(clips):
    clip = clips["static"]
    with pytest.raises(InputError, match="predictions"):
        temporal_alignment_error(clip.depth[:2], clip.depth, clip.cameras)
    with pytest.raises(InputError, match="cameras"):
        temporal_alignment_error(clip.depth, clip.depth, clip.cameras[:2])
    with pytest.raises(InputError, match="depth"):
        static_temporal_std(clip.depth[0], clip.depth[0])
    with pytest.raises(InputError, match="2 frames"):
        temporal_alignment_error(clip.depth[:1], clip.depth[:1], clip.cameras[:1])
    with pytest.raises(InputError, match="motion"):
        render_clip(1, motion="fly")
    with pytest.raises(InputError, match="frames"):
        render_clip(1, frames=0)
