"""Least-squares scale/shift alignment and the shared resize rule."""

from __future__ import annotations

import pytest
import torch

from sddr_core.maps import alignment
from sddr_core.maps.alignment import align_to, fit_affine
from sddr_core.maps.resample import resize_maps


def _maps(*shape: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------------------------- fit_affine

@pytest.mark.parametrize(("scale", "shift"), [(2.5, -7.0), (-3.25, 0.5), (1e-3, 1e3), (1.0, 0.0)])
def test_fit_affine_recovers_known_scale_and_shift(scale, shift):
    source = _maps(1, 13, 17)
    target = scale * source + shift
    got_scale, got_shift = fit_affine(source, target)
    assert got_scale.shape == (1,) and got_shift.shape == (1,)
    assert got_scale.dtype == source.dtype
    assert got_scale.item() == pytest.approx(scale, rel=1e-10)
    assert got_shift.item() == pytest.approx(shift, rel=1e-10, abs=1e-10)
    torch.testing.assert_close(align_to(source, target), target, rtol=1e-10, atol=1e-10)


def test_fit_affine_float32_is_accurate():
    source = _maps(2, 31, 29, dtype=torch.float32) * 1000
    target = -0.002 * source + 40
    scale, shift = fit_affine(source, target)
    assert scale.dtype == torch.float32
    torch.testing.assert_close(scale, torch.full((2,), -0.002), rtol=1e-5, atol=0)
    torch.testing.assert_close(shift, torch.full((2,), 40.0), rtol=1e-5, atol=0)


def test_fit_affine_least_squares_with_noise():
    """With noise the fit is the least-squares one: residuals are orthogonal to 1 and source."""
    source = _maps(1, 40, 40)
    noise = _maps(1, 40, 40, seed=1) - 0.5
    target = 3 * source + 1 + noise
    scale, shift = fit_affine(source, target)
    residual = target - (scale * source + shift)
    assert abs(residual.sum().item()) < 1e-9
    assert abs((residual * source).sum().item()) < 1e-9
    assert scale.item() == pytest.approx(3, abs=0.2)


def test_fit_affine_honours_mask():
    source = _maps(1, 20, 20)
    target = 4 * source - 2
    mask = torch.ones(1, 20, 20, dtype=torch.bool)
    mask[:, :5] = False
    target[:, :5] = 1e6 * _maps(1, 5, 20, seed=3)  # outliers outside the mask
    scale, shift = fit_affine(source, target, mask)
    assert scale.item() == pytest.approx(4, rel=1e-10)
    assert shift.item() == pytest.approx(-2, rel=1e-10)
    # Without the mask the outliers dominate: the mask really matters.
    assert fit_affine(source, target)[0].item() != pytest.approx(4, rel=1e-2)
    # Float masks work as weights of 0/1 too.
    assert fit_affine(source, target, mask.double())[0].item() == pytest.approx(4, rel=1e-10)


def test_fit_affine_is_per_sample():
    source = _maps(3, 11, 9)
    scales = torch.tensor([2.0, -1.0, 0.25], dtype=torch.float64)
    shifts = torch.tensor([0.0, 10.0, -3.0], dtype=torch.float64)
    target = source * scales[:, None, None] + shifts[:, None, None]
    scale, shift = fit_affine(source, target)
    torch.testing.assert_close(scale, scales, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(shift, shifts, rtol=1e-10, atol=1e-10)
    # Each sample alone gives the same fit.
    for i in range(3):
        alone = fit_affine(source[i : i + 1], target[i : i + 1])
        torch.testing.assert_close(alone[0], scale[i : i + 1])


def test_fit_affine_flat_source_gives_zero_scale_and_target_mean():
    source = torch.full((2, 8, 8), 3.0, dtype=torch.float64)
    target = _maps(2, 8, 8, seed=5) * 10
    scale, shift = fit_affine(source, target)
    assert torch.equal(scale, torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(shift, target.mean(dim=(1, 2)))
    assert torch.isfinite(align_to(source, target)).all()
    # With a mask, the shift is the mean over the mask.
    mask = torch.zeros(2, 8, 8)
    mask[:, 2:4] = 1
    _, masked_shift = fit_affine(source, target, mask)
    torch.testing.assert_close(masked_shift, target[:, 2:4].mean(dim=(1, 2)))


def test_fit_affine_accepts_extra_dimensions():
    source = _maps(2, 1, 6, 7)
    target = -source + 2
    scale, shift = fit_affine(source, target)
    assert scale.shape == (2,)
    aligned = align_to(source, target)
    assert aligned.shape == source.shape
    torch.testing.assert_close(aligned, target)


# ---------------------------------------------------------------------------------- resize_maps

@pytest.mark.parametrize("masked", [False, True])
def test_fit_in_pieces_equals_the_fit_in_one_piece(monkeypatch, masked):
    """Large maps are fitted CHUNK pixels at a time (for memory); pieces change only the
    order of float64 sums."""
    source = _maps(2, 19, 23, seed=3, dtype=torch.float32) * 1e4
    target = 3.0 * source - 2.0 + _maps(2, 19, 23, seed=4, dtype=torch.float32)
    mask = _maps(2, 19, 23, seed=5) > 0.4 if masked else None
    whole = fit_affine(source.double(), target.double(), mask), align_to(source, target, mask)
    monkeypatch.setattr(alignment, "CHUNK", 10)  # 44 pieces of a map, the last one short
    pieces = fit_affine(source.double(), target.double(), mask), align_to(source, target, mask)
    for one, other in zip(whole[0], pieces[0], strict=True):
        torch.testing.assert_close(one, other, rtol=1e-9, atol=0)
    torch.testing.assert_close(whole[1], pieces[1], rtol=1e-6, atol=0)


def test_resize_maps_identity_at_same_size():
    maps = _maps(2, 13, 21, dtype=torch.float32)
    assert torch.equal(resize_maps(maps, (13, 21)), maps)


@pytest.mark.parametrize("size", [(40, 60), (7, 9), (26, 5), (5, 30)])
def test_resize_maps_shapes_and_constant_maps(size):
    maps = torch.stack([torch.full((20, 30), 2.0), torch.full((20, 30), -5.0)])
    out = resize_maps(maps, size)
    assert out.shape == (2, *size)
    torch.testing.assert_close(out[0], torch.full(size, 2.0))
    torch.testing.assert_close(out[1], torch.full(size, -5.0))


def test_resize_maps_is_anti_aliased_when_shrinking():
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(96), indexing="ij")
    checkerboard = ((yy + xx) % 2).float()[None]
    out = resize_maps(checkerboard, (16, 24))
    assert out.shape == (1, 16, 24)
    # Aliasing (sampling without a low-pass) would give values near 0 or 1.
    assert (out - 0.5).abs().max() < 0.05


def test_resize_maps_shrinking_one_axis_only_is_anti_aliased():
    yy, xx = torch.meshgrid(torch.arange(16), torch.arange(64), indexing="ij")
    stripes = (xx % 2).float()[None]  # 1-px vertical stripes
    out = resize_maps(stripes, (32, 16))  # taller but 4× narrower
    assert (out - 0.5).abs().max() < 0.05


def test_resize_maps_upsampling_keeps_range():
    maps = _maps(1, 8, 8, dtype=torch.float32)
    out = resize_maps(maps, (32, 32))
    assert out.min() >= maps.min() - 1e-6 and out.max() <= maps.max() + 1e-6
    assert out.mean().item() == pytest.approx(maps.mean().item(), rel=2e-2)
