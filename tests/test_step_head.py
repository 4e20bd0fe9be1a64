"""The step head (`sddr_core.network.step_head`): silent at first, it learns to turn a ramp
into a one-pixel step, and it never leaves the values D0 holds around a pixel."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from sddr_core.errors import InputError
from sddr_core.maps import row_bands
from sddr_core.maps.window_extremes import window_extremes
from sddr_core.network import RefinementNetwork
from sddr_core.network.config import NetworkConfig
from sddr_core.network.step_head import StepHead
from tests.test_network import TINY

RADII = NetworkConfig.step_head_radii


def _blurred_step(width: int, size: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """A vertical step at column size/2 + 0.5 and the same step box-blurred over `width` px."""
    step = (torch.arange(size) >= size // 2).float().expand(1, 1, size, size).contiguous()
    half = width // 2
    blurred = F.avg_pool2d(F.pad(step, (half, half, 0, 0), mode="replicate"), (1, width), 1)
    return step, blurred


def test_a_network_gains_the_head_without_changing_its_output():
    torch.manual_seed(2)
    plain = RefinementNetwork(dataclasses.replace(TINY, residual=True)).eval()
    headed = RefinementNetwork(dataclasses.replace(TINY, residual=True, step_head=4)).eval()
    missing, _ = headed.load_state_dict(plain.state_dict(), strict=False)
    assert missing and all(key.startswith("step_head.") for key in missing)
    low, high = torch.rand(1, 1, 128, 128), torch.rand(1, 1, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(headed(low, high).depth, plain(low, high).depth,
                                   rtol=0, atol=0)


def test_trained_alone_it_turns_a_ramp_into_a_one_pixel_step():
    """A step blurred over 9 px, as D0 and as the high input: 200 Adam steps on the L1
    distance to the sharp step bring it under a quarter of its start, and the largest jump
    between neighbours becomes most of the step (it was a ninth)."""
    torch.manual_seed(0)
    step, blurred = _blurred_step(9)
    head = StepHead(8, RADII)
    start = float((head(blurred, blurred) - step).abs().mean())
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(200):
        optimiser.zero_grad()
        loss = (head(blurred, blurred) - step).abs().mean()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        out = head(blurred, blurred)
    assert float((out - step).abs().mean()) < 0.25 * start
    jumps = (out[..., 1:] - out[..., :-1]).abs().amax()
    assert float(jumps) > 0.8 > 1.5 * float((blurred[..., 1:] - blurred[..., :-1]).amax())


def test_output_stays_between_the_widest_windows_extremes():
    """Whatever the head chooses, a pixel takes values D0 holds within the widest window."""
    torch.manual_seed(1)
    head = StepHead(4, RADII)
    with torch.no_grad():
        head.pulls.weight.normal_(0, 5)
        head.pulls.bias.normal_(0, 5)
    depth, high = torch.rand(2, 1, 64, 80), torch.rand(2, 1, 64, 80)
    with torch.no_grad():
        out = head(depth, high)
    top, bottom = window_extremes(depth, max(RADII))
    assert (out <= top).all() and (out >= bottom).all()
    assert (out != depth).float().mean() > 0.5  # it did move pixels


@pytest.mark.parametrize("radii", [(3,), (2, 4, 8, 16)])
def test_any_radii_bound_the_output_by_the_widest(radii):
    """A head of other radii (`NetworkConfig.step_head_radii`) has one pair of pulls per
    radius, and its output stays within the widest window's extremes."""
    torch.manual_seed(3)
    head = StepHead(4, radii)
    assert head.pulls.out_channels == 2 * len(radii)
    with torch.no_grad():
        head.pulls.weight.normal_(0, 5)
        head.pulls.bias.normal_(0, 5)
        depth = torch.rand(1, 1, 48, 64)
        out = head(depth, torch.rand(1, 1, 48, 64))
    top, bottom = window_extremes(depth, radii[-1])
    assert (out <= top).all() and (out >= bottom).all()
    narrower = window_extremes(depth, radii[-1] - 1) if radii[-1] > 1 else None
    if narrower is not None:  # the widest window is the bound, not a narrower one
        assert ((out > narrower[0]) | (out < narrower[1])).any()


@pytest.mark.parametrize("radii", [(), (4, 2), (2, 2), (0, 4), (2, 4, 8, 16, 32, 48, 64),
                                   (2, 65), [2, 4]])
def test_bad_step_head_radii_are_refused_by_name(radii):
    with pytest.raises(InputError, match="step_head_radii"):
        NetworkConfig(step_head_radii=radii)


@pytest.mark.parametrize("gradient", [False, True], ids=["opencv", "torch"])
def test_window_extremes_are_the_window_max_and_min_with_repeated_borders(gradient):
    """OpenCV's path (CPU, no gradient) and the differentiable one give the written-out
    definition, borders included."""
    depth = torch.rand(2, 1, 9, 11).requires_grad_(gradient)
    top, bottom = window_extremes(depth, 2)
    for row, column in ((0, 0), (4, 5), (8, 10), (3, 0)):
        window = depth[1, 0, max(row - 2, 0):row + 3, max(column - 2, 0):column + 3]
        assert float(top[1, 0, row, column]) == float(window.max())
        assert float(bottom[1, 0, row, column]) == float(window.min())
    assert top.requires_grad == gradient


@pytest.mark.parametrize("changes", [{"step_head": -1}, {"step_head": 4, "residual": False},
                                     {"step_head": 65, "residual": True}])
def test_a_bad_step_head_size_is_refused_by_name(changes):
    with pytest.raises(InputError, match="'step_head'"):
        dataclasses.replace(TINY, **changes)


def test_passes_run_the_one_head_again_on_its_own_output():
    """`step_head_passes`: the same weights, each pass on the last one's output."""
    torch.manual_seed(4)
    config = dataclasses.replace(TINY, residual=True, step_head=4)
    once = RefinementNetwork(config).eval()
    with torch.no_grad():
        once.step_head.pulls.weight.normal_(0, 1)
    twice = RefinementNetwork(dataclasses.replace(config, step_head_passes=2)).eval()
    twice.load_state_dict(once.state_dict())
    low, high = torch.rand(1, 1, 128, 128), torch.rand(1, 1, 128, 128)
    with torch.no_grad():
        first = once(low, high).depth
        expected = once.step_head(first, high)
        torch.testing.assert_close(twice(low, high).depth, expected, rtol=0, atol=0)
    assert not torch.equal(expected, first)


@pytest.mark.parametrize("passes", [0, 9, 1.5, True])
def test_bad_step_head_passes_are_refused_by_name(passes):
    with pytest.raises(InputError, match="step_head_passes"):
        dataclasses.replace(TINY, step_head_passes=passes)


@pytest.mark.parametrize("radii", [(2, 8, 16), (1, 3)])
def test_bands_of_rows_give_the_whole_maps_values_and_gradients(monkeypatch, radii):
    """Large maps go through the head a band of rows at a time (for the cache); each band's
    margin holds everything its rows depend on, so the bands must not show. (oneDNN picks
    its convolution's arithmetic by map size, which moves values by float rounding alone:
    off here, so that any difference is the bands'.)"""
    torch.manual_seed(5)
    head = StepHead(4, radii)
    for parameter in head.parameters():  # pulls start at zero: make them move pixels
        torch.nn.init.normal_(parameter, std=0.5)
    depth = torch.rand(2, 1, 90, 40, requires_grad=True)
    high = torch.rand(2, 1, 90, 40)

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.backends.mkldnn.flags(enabled=False):
            out = head(depth, high)
            (gradient,) = torch.autograd.grad((out * torch.linspace(0, 1, 40)).sum(), depth)
        return out, gradient

    whole = run()
    monkeypatch.setattr(row_bands, "BAND_PIXELS", 7 * 40)
    monkeypatch.setattr(row_bands, "MIN_BAND_ROWS", 7)  # 13 bands, the last of 6 rows
    banded = run()
    assert not torch.equal(whole[0], depth)
    assert torch.equal(banded[0], whole[0])
    # gradients: the same terms, summed in another order
    torch.testing.assert_close(banded[1], whole[1], rtol=0,
                               atol=1e-6 * float(whole[1].abs().max()))
