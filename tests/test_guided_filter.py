import numpy as np
import pytest
import torch
from scipy import ndimage

from sddr_core.maps.guided_filter import guided_filter


def _batch(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array)[None, None]


def test_source_as_guide_keeps_the_source():
    source = np.random.default_rng(0).uniform(0, 1, (40, 50))
    result = guided_filter(_batch(source), _batch(source), 3, 1e-6)[0, 0].numpy()
    np.testing.assert_allclose(result, source, atol=1e-3)


def test_flat_guide_is_a_box_mean_applied_twice():
    """A flat guide explains nothing (a = 0), so each window's b is the box mean of the source,
    and the output averages those over the windows. Borders mirror without repeating the edge
    pixel (scipy's "mirror")."""
    source = np.random.default_rng(1).uniform(0, 1, (40, 50))
    radius = 2
    box_mean = ndimage.uniform_filter(source, 2 * radius + 1, mode="mirror")
    expected = ndimage.uniform_filter(box_mean, 2 * radius + 1, mode="mirror")
    result = guided_filter(_batch(source), _batch(np.full_like(source, 0.3)), radius, 1e-6)
    np.testing.assert_allclose(result[0, 0].numpy(), expected, atol=1e-9)


def test_a_source_blurred_across_a_guide_edge_comes_out_two_sided():
    """The correction filter's purpose: a smooth transition where the guide steps becomes a
    step at the guide's edge, while the plain box mean would keep it blurred."""
    columns = np.arange(64)
    guide = np.tile((columns >= 32).astype(np.float64), (32, 1))
    blurred = ndimage.gaussian_filter1d(guide, 4.0, axis=1, mode="nearest")
    result = guided_filter(_batch(blurred), _batch(guide), 8, 1e-4)[0, 0].numpy()
    def jump_at_edge(m):
        return m[:, 32] - m[:, 31]

    assert jump_at_edge(result).min() > 0.5
    assert jump_at_edge(blurred).max() < 0.15


def test_a_radius_beyond_the_map_is_cut_to_it():
    source = np.random.default_rng(2).uniform(0, 1, (6, 9))
    result = guided_filter(_batch(source), _batch(np.full_like(source, 0.5)), 50, 1e-6)
    assert result.shape == (1, 1, 6, 9) and torch.isfinite(result).all()


def test_source_and_guide_must_match():
    with pytest.raises(ValueError, match=r"source \(1, 1, 4, 4\) and guide \(1, 1, 4, 5\)"):
        guided_filter(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5), 1, 1e-4)


@pytest.mark.parametrize("shape, radius", [((2, 1, 40, 50), 4), ((1, 1, 6, 9), 50),
                                           ((3, 1, 17, 11), 1)])
def test_opencv_box_means_without_gradient_match_the_differentiable_path(shape, radius):
    """Inference on the CPU takes OpenCV's box filter, training torch's sums: the two must give
    the same filter, batched, with the radius cut to a small map."""
    rng = np.random.default_rng(3)
    source = torch.from_numpy(rng.uniform(0, 1, shape).astype(np.float32))
    guide = torch.from_numpy(rng.uniform(0, 1, shape).astype(np.float32))
    with torch.inference_mode():
        fast = guided_filter(source, guide, radius, 1e-3)
    tracked = source.clone().requires_grad_()
    differentiable = guided_filter(tracked, guide.clone().requires_grad_(), radius, 1e-3)
    differentiable.sum().backward()
    assert tracked.grad is not None and torch.isfinite(tracked.grad).all()
    torch.testing.assert_close(fast, differentiable.detach(), atol=2e-5, rtol=0)

