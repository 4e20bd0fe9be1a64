"""G0 (edge-preserving filter of ∇D0) and Eq. 6 (a window's gradient fitted to G_{s−1})."""

import cv2
import numpy as np
import torch

from sddr_core.inference.edges import align_edges, initial_edges
from sddr_core.maps.gradients import sobel_magnitude


def steps_with_noise(seed=0):
    """Ten small depth steps (5 % of the range each) across a noisy ramp: edges a fixed
    bilateral range of 0.05 would blur, as a Gaussian does."""
    rng = np.random.default_rng(seed)
    depth = np.repeat(np.floor(np.arange(200) / 20)[None] * 0.05, 120, axis=0)
    return (depth + rng.normal(0, 0.002, depth.shape)).astype(np.float32)


def test_g0_keeps_edges_and_smooths_flat_noise():
    depth = steps_with_noise()
    gradient = sobel_magnitude(torch.from_numpy(depth)[None])[0].numpy()
    filtered = initial_edges(torch.from_numpy(depth)).numpy()
    edges = np.arange(19, 200, 20)[:-1]  # the columns just left of each step
    peak = lambda g: g[10:-10, edges].mean() + g[10:-10, edges + 1].mean()  # noqa: E731
    gaussian = cv2.GaussianBlur(gradient, (5, 5), 2.0)
    assert peak(filtered) > 0.85 * peak(gradient)  # edges kept
    assert peak(gaussian) < 0.7 * peak(gradient)  # what a plain Gaussian does
    flat = np.ones(200, bool)
    for column in edges:
        flat[column - 3:column + 5] = False
    assert filtered[10:-10, flat].std() < 0.8 * gradient[10:-10, flat].std()  # noise smoothed
    assert filtered.min() >= 0


def test_g0_of_a_flat_map_is_zero():
    assert float(initial_edges(torch.full((16, 16), 3.0)).abs().max()) == 0.0


def test_eq6_fits_the_window_gradient_to_the_previous_label():
    refined = torch.rand(3, 20, 30, generator=torch.Generator().manual_seed(0))
    gradient = sobel_magnitude(refined)
    previous = gradient * torch.tensor([2.0, 0.5, 3.0])[:, None, None] + 0.01
    torch.testing.assert_close(align_edges(refined, previous), previous, rtol=1e-4, atol=1e-5)


def test_eq6_keeps_the_previous_label_when_the_fit_would_invert_edges():
    refined = torch.rand(2, 20, 30, generator=torch.Generator().manual_seed(1))
    gradient = sobel_magnitude(refined)
    noise = 0.3 * torch.rand(20, 30, generator=torch.Generator().manual_seed(3))
    previous = torch.stack([1.0 - gradient[0] + noise, 0.5 * gradient[1]])  # 0 anti-correlated
    aligned = align_edges(refined, previous)
    torch.testing.assert_close(aligned[0], previous[0])
    torch.testing.assert_close(aligned[1], previous[1], rtol=1e-4, atol=1e-5)


def test_eq6_labels_stay_non_negative():
    refined = torch.rand(1, 20, 30, generator=torch.Generator().manual_seed(2))
    previous = sobel_magnitude(refined) - 0.2  # a fit with a negative shift
    assert float(align_edges(refined, previous).min()) >= 0
