"""The one ∇ (torch Sobel): equal to OpenCV's, differentiable, batched."""

import cv2
import numpy as np
import pytest
import torch

from sddr_core.maps.gradients import gradient_magnitude, mean_gradient, sobel_magnitude


def opencv_magnitude(depth: np.ndarray, value_range: float) -> np.ndarray:
    """The definition before the torch one: cv2.Sobel, 3×3, replicated borders."""
    gx = cv2.Sobel(depth, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(depth, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    return (np.abs(gx) + np.abs(gy)) / (8.0 * value_range)


@pytest.mark.parametrize("shape", [(31, 47), (64, 64), (5, 200)])
def test_equals_opencv_on_random_maps(shape):
    depth = np.random.default_rng(0).normal(size=shape).astype(np.float32) * 7 + 3
    value_range = float(depth.max() - depth.min())
    expected = opencv_magnitude(depth, value_range)
    np.testing.assert_allclose(gradient_magnitude(depth), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gradient_magnitude(depth, 2.0),
                               opencv_magnitude(depth, 2.0), rtol=1e-5, atol=1e-7)
    assert mean_gradient(depth) == pytest.approx(float(expected.mean()), rel=1e-5)


def test_batched_equals_one_by_one_in_both_layouts():
    maps = torch.randn(4, 33, 41, generator=torch.Generator().manual_seed(1))
    batched = sobel_magnitude(maps)
    for index in range(4):
        torch.testing.assert_close(batched[index], sobel_magnitude(maps[index:index + 1])[0])
    torch.testing.assert_close(sobel_magnitude(maps[:, None])[:, 0], batched)
    ranges = torch.tensor([1.0, 2.0, 3.0, 4.0])
    torch.testing.assert_close(sobel_magnitude(maps, ranges)[2], sobel_magnitude(maps, 1.0)[2] / 3)


def test_gradients_flow_back_to_the_depth():
    depth = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(2),
                       dtype=torch.float64, requires_grad=True)
    sobel_magnitude(depth, 1.0).sum().backward()
    assert depth.grad is not None and depth.grad.abs().sum() > 0
    assert torch.autograd.gradcheck(lambda d: sobel_magnitude(d, 1.0), (depth,))


def test_a_flat_map_has_zero_gradient():
    assert float(sobel_magnitude(torch.full((1, 8, 8), 2.0)).abs().max()) == 0.0
