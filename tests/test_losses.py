"""The three SDDR losses: hand-computed cases, invariances, masks, gradient directions."""

import pytest
import torch

from sddr_core.errors import InputError
from sddr_core.evaluation import boundaries
from sddr_core.maps.gradients import sobel_magnitude
from sddr_core.network import RefinementNetwork
from sddr_core.network.model import NetworkOutput
from tests.tiny import TINY
from training.config import LossesConfig
from training.losses import (
    LossOptions,
    LossWeights,
    combine,
    edge_regions,
    fusion_loss,
    grad_loss,
    gt_loss,
    loss_terms,
    side_loss,
)
from training.losses.ground_truth import normalise
from training.losses.sides import discontinuity_band


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def scene(seed: int, batch: int = 2, size: int = 24) -> torch.Tensor:
    """Piecewise-smooth depth: a slanted plane with a raised rectangle, plus a little noise."""
    g = generator(seed)
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    depth = torch.empty(batch, size, size)
    for index in range(batch):
        top, left = torch.randint(2, size // 2, (2,), generator=g)
        box = (rows >= top) & (rows < top + size // 3) & (cols >= left) & (cols < left + size // 3)
        depth[index] = 1 + 0.02 * rows + 0.01 * cols * (index + 1) + 0.5 * box
    return depth + 0.01 * torch.rand(depth.shape, generator=g)


# L_sides ---------------------------------------------------------------------------------


def step_row(values: list[float], rows: int = 4) -> torch.Tensor:
    return torch.tensor(values).repeat(1, rows, 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_discontinuity_band_is_the_evaluations_band_for_either_sign(seed):
    truth, valid = scene(seed, batch=1, size=40), torch.rand(1, 40, 40, generator=generator(seed))
    valid = valid > 0.05
    expected = torch.from_numpy(boundaries.discontinuity_band(truth[0].numpy(), valid[0].numpy()))
    assert expected.any() and not expected.all()
    for sign in (1, -1):
        assert torch.equal(discontinuity_band(sign * truth, valid)[0], expected)


def test_side_loss_is_zero_on_either_side_and_on_a_slope_and_positive_between():
    """Each map is normalised on its own, as L_gt does: a pixel moved across the step moves
    the map's spread a little, and so every pixel's normalised value."""
    truth = step_row([1.0 + 0.002 * i for i in range(300)] + [2.0 + 0.002 * i for i in range(100)])
    assert float(side_loss(truth, truth)) == 0.0
    ramp = truth.clone()
    ramp[:, :, 298:302] = torch.linspace(float(truth[0, 0, 298]), float(truth[0, 0, 301]), 4)
    assert float(side_loss(ramp, truth)) > 5e-4
    misplaced = truth.clone()
    misplaced[:, :, 299] = truth[0, 0, 300]  # a side, though the wrong one
    assert float(side_loss(misplaced, truth)) < 0.1 * float(side_loss(ramp, truth))
    assert float(side_loss(3 * ramp + 1, 5 * truth - 2)) == pytest.approx(
        float(side_loss(ramp, truth)), rel=1e-5)


def test_side_loss_pulls_a_between_pixel_to_its_nearer_side():
    truth = step_row([1.0] * 8 + [2.0] * 8, rows=8)
    prediction = truth.clone()
    prediction[:, :, 8] = 1.3  # nearer the lower side, on the upper side's pixel
    prediction.requires_grad_(True)
    side_loss(prediction, truth).backward()
    pull = prediction.grad[0, :, 8]
    assert (pull > 0).all()  # a descent step lowers it, towards 1.0
    assert (pull > 10 * prediction.grad[0, :, 3].abs()).all()  # off the band: normalisation only


# L_gt ------------------------------------------------------------------------------------


def test_normalise_uses_the_valid_median_and_mean_absolute_deviation():
    # Odd count: median 3, deviations 2, 1, 0, 1, 7 → mean 2.2.
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0, 10.0]]])
    torch.testing.assert_close(normalise(x, torch.ones_like(x, dtype=torch.bool)),
                               (x - 3) / 2.2)
    # An invalid pixel is neither in the median nor in the deviation, and comes out as 0
    # (the code's median over mask·x would count it as a zero).
    y = torch.tensor([[[1.0, 2.0, 3.0, 100.0]]])
    mask = torch.tensor([[[True, True, True, False]]])
    torch.testing.assert_close(normalise(y, mask), torch.tensor([[[-1.5, 0.0, 1.5, 0.0]]]))


def test_gt_loss_of_a_hand_computed_row():
    # target [0,1,2,3]: lower median 1, mean |x − 1| = 1 → [-1, 0, 1, 2];
    # prediction [0,1,2,7]: median 1, deviation 2 → [-0.5, 0, 0.5, 3];
    # residual R = [0.5, 0, -0.5, 1]. Trim keeps ⌊0.8·4⌋ = 3 smallest |R| (0, .5, .5): 1/(2·4).
    # Gradient matching: stride 1 (|−.5| + |−.5| + |1.5|)/4 = 0.625, stride 2 |−1|/2 = 0.5,
    # strides 4 and 8 have no pairs. L = 0.125 + 0.5·1.125 = 0.6875.
    target = torch.tensor([[[0.0, 1.0, 2.0, 3.0]]])
    prediction = torch.tensor([[[0.0, 1.0, 2.0, 7.0]]])
    assert float(gt_loss(prediction, target, gradient_weight=0.0)) == pytest.approx(0.125)
    assert float(gt_loss(prediction, target)) == pytest.approx(0.6875)
    assert float(gt_loss(prediction, target, trim=0.0, gradient_weight=0.0)) == pytest.approx(
        2.0 / 8)


@pytest.mark.parametrize("scale, shift", [(3.0, 1.0), (0.05, -0.3), (250.0, 40.0)])
def test_gt_loss_is_invariant_to_a_positive_scale_and_any_shift(scale, shift):
    target = scene(0)
    prediction = scene(1)
    base = gt_loss(prediction, target)
    torch.testing.assert_close(gt_loss(scale * prediction + shift, target), base,
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gt_loss(prediction, scale * target + shift), base,
                               rtol=1e-4, atol=1e-5)
    assert float(gt_loss(scale * target + shift, target)) < 1e-5
    # Polarity is not invariant: a flipped copy is far from zero.
    assert float(gt_loss(-target, target)) > 1.0


def test_gt_loss_ignores_invalid_pixels_and_averages_images():
    target, prediction = scene(2, batch=3), scene(3, batch=3)
    mask = torch.rand(target.shape, generator=generator(4)) > 0.3
    base = gt_loss(prediction, target, mask)
    changed_target = torch.where(mask, target, torch.full_like(target, float("nan")))
    changed_prediction = torch.where(mask, prediction, 1e4 * torch.ones_like(prediction))
    torch.testing.assert_close(gt_loss(changed_prediction, changed_target, mask), base)
    items = [gt_loss(prediction[i:i + 1], target[i:i + 1], mask[i:i + 1]) for i in range(3)]
    torch.testing.assert_close(base, torch.stack(items).mean())


def test_gt_loss_samples_a_larger_target_onto_a_deep_supervision_grid():
    target = scene(5, size=32)
    half = target[:, ::2, ::2]  # nearest sampling of a 2× larger map
    assert float(gt_loss(2 * half + 1, target[:, None])) < 1e-5


# L_grad ----------------------------------------------------------------------------------


def test_grad_loss_of_a_flat_depth_is_the_label_spread_over_the_edges():
    # G0 = 0 gives β1 = 0, β0 = mean G_S over the region: L = mean |G_S − mean|.
    edges = torch.zeros(1, 6, 6)
    edges[0, 1, 1], edges[0, 1, 3], edges[0, 3, 1], edges[0, 3, 3] = 4.0, 5.0, 6.0, 9.0
    flat = torch.zeros(1, 6, 6)
    # Edge pixels only (top 4 of 36): values 4, 5, 6, 9, mean 6 → (2 + 1 + 0 + 3)/4.
    loss = grad_loss(flat, edges, regions=1, top=4 / 36, shape="edges")
    assert float(loss) == pytest.approx(1.5)
    # Bounding box rows 1–3, cols 1–3: those four and five zeros, mean 8/3 → 80/27.
    loss = grad_loss(flat, edges, regions=1, top=4 / 36, shape="box")
    assert float(loss) == pytest.approx(80 / 27, rel=1e-5)
    # A label without edges has no region: nothing to supervise.
    assert float(grad_loss(torch.rand(1, 6, 6), torch.zeros(1, 6, 6))) == 0.0


def test_grad_loss_is_zero_when_the_label_is_an_affine_copy_of_the_depth_gradient():
    depth = scene(6)
    edges = 0.3 * sobel_magnitude(depth, value_range=1.0) + 0.01
    assert float(grad_loss(depth, edges)) < 1e-5


@pytest.mark.parametrize("scale, shift", [(4.0, 2.0), (0.1, -3.0), (-2.0, 1.0)])
def test_grad_loss_is_invariant_to_any_nonzero_scale_and_shift_of_the_depth(scale, shift):
    # |Sobel_x| + |Sobel_y| ignores shifts and signs; the per-region fit absorbs the scale.
    depth, edges = scene(7), sobel_magnitude(scene(8), value_range=1.0)
    torch.testing.assert_close(grad_loss(scale * depth + shift, edges), grad_loss(depth, edges),
                               rtol=1e-4, atol=1e-6)


def test_grad_loss_scales_with_a_positive_scale_of_the_label():
    # Binarisation and the fit are unchanged by c·G_S + s; the L1 residual is scaled by c.
    depth, edges = scene(9), sobel_magnitude(scene(10), value_range=1.0)
    torch.testing.assert_close(grad_loss(depth, 3 * edges + 0.5), 3 * grad_loss(depth, edges),
                               rtol=1e-4, atol=1e-6)


def test_grad_loss_ignores_invalid_pixels_and_averages_images():
    depth, edges = scene(11, batch=3), sobel_magnitude(scene(12, batch=3), value_range=1.0)
    mask = torch.ones_like(depth, dtype=torch.bool)
    mask[:, :, :6] = False
    base = grad_loss(depth, edges, mask)
    noise = torch.rand(depth.shape, generator=generator(13))
    torch.testing.assert_close(
        grad_loss(torch.where(mask, depth, noise), torch.where(mask, edges, noise), mask), base)
    items = [grad_loss(depth[i:i + 1], edges[i:i + 1], mask[i:i + 1]) for i in range(3)]
    torch.testing.assert_close(base, torch.stack(items).mean())


def test_grad_loss_code_variant_is_invariant_to_affine_maps_of_both_sides():
    # Median/MAD normalisation of both sides: zero for an affine copy of ∇D0, unchanged by a
    # positive scale and a shift of G_S (unlike the paper's form, which scales with it).
    depth, edges = scene(27), sobel_magnitude(scene(28), value_range=1.0)
    assert float(grad_loss(depth, 2 * sobel_magnitude(depth, value_range=1.0) + 1,
                           variant="code")) < 1e-5
    base = grad_loss(depth, edges, variant="code")
    torch.testing.assert_close(grad_loss(depth, 3 * edges + 0.5, variant="code"), base,
                               rtol=1e-4, atol=1e-6)
    assert float(base) > 0


def test_regions_separate_two_edge_clusters_and_never_overlap():
    edges = torch.zeros(1, 20, 20)
    edges[0, 2:5, 2] = 1.0  # a short line top left
    edges[0, 15, 14:18] = 1.0  # a short line bottom right
    mask = torch.ones_like(edges, dtype=torch.bool)
    parts = edge_regions(edges, mask, regions=2, top=7 / 400)
    assert int(parts.sum(1).max()) == 1  # disjoint
    owners = {int(parts[0, :, 3, 2].nonzero()), int(parts[0, :, 15, 15].nonzero())}
    assert owners == {0, 1}
    # Boxes: 3×1 and 1×4 pixels, nothing else.
    assert sorted(parts[0].flatten(1).sum(1).tolist()) == [3, 4]
    again = edge_regions(edges, mask, regions=2, top=7 / 400)
    assert torch.equal(parts, again)


# L_fusion --------------------------------------------------------------------------------


def hand_case():
    # G_S = 0..9 on a 2×5 map; a = 0.1, N_w = 1. t_0.1 = 0.9 and t_0.9 = 8.1 (linear
    # interpolation), so the flat tail is the G_S = 0 pixel, the edge tail the G_S = 9 pixel.
    edges = torch.arange(10.0).reshape(1, 2, 5)
    omega = torch.tensor([0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.0]).reshape(1, 1, 2, 5)
    return edges, omega.requires_grad_()


def test_fusion_loss_of_a_hand_computed_case():
    # Ω holds 0.0…0.9: T_0.1 = 0.09, T_0.9 = 0.81. Flat pixel Ω 0.9 → 0.81 too high; edge pixel
    # Ω 0 → 0.81 too low. L = (0.81 + 0.81) / (N_w·N_p = 10) = 0.162.
    edges, omega = hand_case()
    loss = fusion_loss([omega], edges, step=0.1, windows=1, levels=(0,))
    assert loss.item() == pytest.approx(0.162, rel=1e-5)


def test_fusion_loss_raises_omega_at_edges_and_lowers_it_on_flat_pixels():
    edges, omega = hand_case()
    fusion_loss([omega], edges, step=0.1, windows=1, levels=(0,)).backward()
    expected = torch.zeros(10)
    expected[0], expected[9] = 0.1, -0.1  # descent raises Ω where the gradient is negative
    torch.testing.assert_close(omega.grad.flatten(), expected)


def test_fusion_gradient_signs_on_a_random_label_with_the_paper_settings():
    edges = sobel_magnitude(scene(14, size=32), value_range=1.0)
    omega = torch.rand(2, 1, 32, 32, generator=generator(15), requires_grad=True)
    fusion_loss([omega], edges, levels=(0,)).backward()
    grad = omega.grad[:, 0]
    flat = edges <= torch.quantile(edges.flatten(1), 0.08, dim=1)[:, None, None]
    top = edges >= torch.quantile(edges.flatten(1), 0.92, dim=1)[:, None, None]
    assert bool((grad[~flat] <= 0).all()) and bool((grad[flat] >= 0).all())
    assert bool((grad[~top & ~flat] == 0).all())
    assert bool((grad[top] < 0).any()) and bool((grad[flat] > 0).any())


def test_fusion_loss_is_zero_when_omega_already_satisfies_every_hinge():
    edges = sobel_magnitude(scene(16, size=32), value_range=1.0)
    omega = torch.full((2, 1, 32, 32), 0.5)
    omega[:, 0][edges >= torch.quantile(edges.flatten(1), 0.92, dim=1)[:, None, None]] = 1.0
    omega[:, 0][edges <= torch.quantile(edges.flatten(1), 0.08, dim=1)[:, None, None]] = 0.0
    omega.requires_grad_()
    loss = fusion_loss([omega], edges, levels=(0,))
    loss.backward()
    assert loss.item() == 0.0 and bool((omega.grad == 0).all())


def test_fusion_loss_on_coarse_levels_ignores_invalid_pixels_and_averages_levels():
    edges = sobel_magnitude(scene(17, size=32), value_range=1.0)
    mask = torch.ones_like(edges, dtype=torch.bool)
    mask[:, :8] = False
    omegas = [torch.rand(2, 1, 16, 16, generator=generator(18)),
              torch.rand(2, 1, 8, 8, generator=generator(19))]
    base = fusion_loss(omegas, edges, mask)
    # Invalid full-resolution rows 0–7 touch coarse rows 0–4 at 1/2 and 0–2 at 1/4.
    changed = [omegas[0].clone(), omegas[1].clone()]
    changed[0][:, :, :5], changed[1][:, :, :3] = 7.0, -7.0
    torch.testing.assert_close(fusion_loss(changed, torch.where(mask, edges, 9.0), mask), base)
    levels = [fusion_loss(omegas, edges, mask, levels=(level,)) for level in (0, 1)]
    torch.testing.assert_close(base, torch.stack(levels).mean())


def test_fusion_loss_code_variant_of_a_hand_computed_case():
    # G_S = 0..19 on 4×5: edges = top ⌈5 %·20⌉ = 1 pixel (G_S 19); flat = G_S ≤ its 5 % quantile
    # 0.95 → the G_S 0 pixel. Ω = 0.05·G_S except Ω = 0.9 at G_S 0 and 0.1 at G_S 19.
    # Sorted Ω: 0.05, 0.1, 0.1, 0.15 … 0.85, 0.9, 0.9; P15 (position 2.85) = 0.1425, P85
    # (position 16.15) = 0.8075. The edge pixel's 0.1 < P85 adds 1 − 0.1; the flat pixel's
    # 0.9 > P15 adds 0.9. L = 1.8.
    edges = torch.arange(20.0).reshape(1, 4, 5)
    omega = 0.05 * edges.clone()
    omega[0, 0, 0], omega[0, 3, 4] = 0.9, 0.1
    loss = fusion_loss([omega[:, None]], edges, levels=(0,), variant="code")
    assert float(loss) == pytest.approx(1.8, rel=1e-5)


# Total, gradients, integration -------------------------------------------------------------


def output_of(seed: int, size: int = 32) -> NetworkOutput:
    g = generator(seed)
    return NetworkOutput(
        depth=(scene(seed, size=size)[:, None] + 0.1 * torch.rand(2, 1, size, size, generator=g)
               ).requires_grad_(),
        omegas=[torch.rand(2, 1, size // 2, size // 2, generator=g).requires_grad_(),
                torch.rand(2, 1, size // 4, size // 4, generator=g).requires_grad_()],
        aux={"half": torch.rand(2, 1, size // 2, size // 2, generator=g),
             "quarter": torch.rand(2, 1, size // 4, size // 4, generator=g)},
    )


def test_total_is_the_weighted_sum_of_the_parts():
    output, target = output_of(20), scene(21, size=32)
    edges = sobel_magnitude(scene(22, size=32), value_range=1.0)
    loss, parts = combine(loss_terms(output, target, edges))
    gt = sum(gt_loss(d, target) for d in [output.depth, *output.aux.values()])
    torch.testing.assert_close(parts["gt"], gt.detach())
    torch.testing.assert_close(parts["grad"], grad_loss(output.depth, edges).detach())
    torch.testing.assert_close(parts["fusion"], fusion_loss(output.omegas, edges).detach())
    torch.testing.assert_close(loss, gt + 0.5 * parts["grad"] + 0.1 * parts["fusion"])
    only_d0, parts = combine(loss_terms(output, target, None, weights=LossWeights(aux=0.0)))
    assert set(parts) == {"gt"}
    torch.testing.assert_close(only_d0, gt_loss(output.depth, target))
    code = LossOptions(grad_variant="code", fusion_variant="code", fusion_levels=(1,))
    _, parts = combine(loss_terms(output, target, edges, options=code))
    torch.testing.assert_close(parts["grad"], grad_loss(output.depth, edges, variant="code"))
    torch.testing.assert_close(
        parts["fusion"], fusion_loss(output.omegas, edges, levels=(1,), variant="code"))


def test_side_loss_enters_the_objective_only_when_weighted():
    output, target = output_of(20), scene(21, size=32)
    assert "sides" not in loss_terms(output, target, None)
    terms = loss_terms(output, target, None, weights=LossWeights(sides=2.0))
    assert terms["sides"].weight == 2.0
    torch.testing.assert_close(terms["sides"].value, side_loss(output.depth, target))
    loss, parts = combine(terms)
    torch.testing.assert_close(loss, parts["gt"] + 2.0 * parts["sides"])


def test_gt_trim_option_reaches_every_output_and_zero_keeps_the_edge_residuals():
    """A step blurred into an 8-px ramp on an eighth of the image: its residuals are the
    largest, so trimming 20 % leaves the scale-invariant term blind to it."""
    target = torch.zeros(1, 32, 64)
    target[:, :, 40:] = 1.0
    ramp = target.clone()
    ramp[:, :, 36:44] = torch.linspace(0, 1, 8)
    assert gt_loss(ramp, target, trim=0.2, gradient_weight=0) < 1e-6
    assert gt_loss(ramp, target, trim=0.0, gradient_weight=0) > 0.01
    output, edges = output_of(31), sobel_magnitude(scene(32, size=32), value_range=1.0)
    target = scene(33, size=32)
    _, parts = combine(loss_terms(output, target, edges, options=LossOptions(gt_trim=0.0)))
    untrimmed = sum(gt_loss(d, target, trim=0.0) for d in [output.depth, *output.aux.values()])
    torch.testing.assert_close(parts["gt"], untrimmed.detach())
    _, trimmed = combine(loss_terms(output, target, edges))
    assert trimmed["gt"] < parts["gt"]


def test_gt_gradient_weight_option_reaches_every_output_and_scales_only_the_gradient_term():
    output, edges = output_of(34), sobel_magnitude(scene(35, size=32), value_range=1.0)
    target = scene(36, size=32)
    parts = {alpha: combine(loss_terms(output, target, edges,
                                       options=LossOptions(gt_gradient_weight=alpha)))[1]["gt"]
             for alpha in (0.0, 0.5, 2.0)}
    maps = [output.depth, *output.aux.values()]
    for alpha, value in parts.items():
        expected = sum(gt_loss(d, target, gradient_weight=alpha) for d in maps)
        torch.testing.assert_close(value, expected.detach())
    # the L_gt sum is affine in α: the step from 0.5 to 2 is three times the step from 0 to 0.5
    torch.testing.assert_close(parts[2.0] - parts[0.5], 3 * (parts[0.5] - parts[0.0]))
    assert parts[2.0] > parts[0.5] > parts[0.0]
    with pytest.raises(InputError, match="gt_gradient_weight"):
        LossesConfig(options=LossOptions(gt_gradient_weight=-1.0))


def test_the_objective_is_computed_in_fp32_under_autocast():
    output, target = output_of(29), scene(30, size=32)
    edges = sobel_magnitude(scene(31, size=32), value_range=1.0)
    low = NetworkOutput(output.depth.bfloat16(), [o.bfloat16() for o in output.omegas],
                        {k: v.bfloat16() for k, v in output.aux.items()})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = combine(loss_terms(low, target, edges))
    widened = NetworkOutput(low.depth.float(), [o.float() for o in low.omegas],
                            {k: v.float() for k, v in low.aux.items()})
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, combine(loss_terms(widened, target, edges))[0])


def test_losses_have_the_finite_difference_gradients():
    # Float64 inputs stay float64 inside, so gradcheck's finite differences are exact enough.
    g = generator(23)
    target = scene(24, batch=1, size=12).double()
    prediction = target + 0.05 * torch.rand(target.shape, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda p: gt_loss(p, target), (prediction.requires_grad_(),), fast_mode=True)
    edges = sobel_magnitude(scene(25, batch=1, size=12), value_range=1.0).double()
    assert torch.autograd.gradcheck(
        lambda d: grad_loss(d, edges), (prediction.detach().clone().requires_grad_(),),
        fast_mode=True)
    # L_fusion is left out: its thresholds T_q are detached by design, so a finite difference
    # that moves the pixel a quantile interpolates differs; its gradient is pinned by hand above.


def test_the_objective_trains_the_network_end_to_end():
    torch.manual_seed(0)
    network = RefinementNetwork(TINY)
    low, high = torch.rand(2, 1, 128, 128), torch.rand(2, 1, 128, 128)
    output = network(low, high, with_aux=True)
    target = scene(26, size=128)
    loss, parts = combine(loss_terms(output, target, sobel_magnitude(target, value_range=1.0)))
    loss.backward()
    assert set(parts) == {"gt", "grad", "fusion"} and torch.isfinite(loss)
    assert all(p.grad is not None for p in network.decoder.parameters() if p.requires_grad)
