import numpy as np
import pytest
import torch
from scipy import ndimage

from sddr_core.maps.box_mean import box_mean


@pytest.mark.parametrize("shape, radius", [((30, 41), 8), ((2, 1, 12, 9), 3), ((7, 5), 4)])
def test_both_paths_are_scipys_mirrored_uniform_filter(shape, radius):
    """The OpenCV path (CPU, no gradient) and the differentiable slices give the same means,
    mirrored at the borders without repeating the edge pixel, for a map or a stack."""
    values = np.random.default_rng(5).uniform(0, 1, shape).astype(np.float32)
    size = [1] * (len(shape) - 2) + [2 * radius + 1] * 2
    expected = ndimage.uniform_filter(values.astype(np.float64), size, mode="mirror")
    with torch.no_grad():
        fast = box_mean(torch.from_numpy(values), radius)
    tracked = torch.from_numpy(values).requires_grad_()
    slices = box_mean(tracked, radius)
    slices.sum().backward()
    assert fast.shape == slices.shape == shape
    np.testing.assert_allclose(fast.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(slices.detach().numpy(), expected, atol=1e-6)
    assert tracked.grad is not None and torch.isfinite(tracked.grad).all()
