"""Each loss term's gradient norm at the network's output and its share (issue 25.3), on a
tiny network's real output."""

import pytest
import torch

from sddr_core.maps.gradients import sobel_magnitude
from sddr_core.network import RefinementNetwork
from tests.test_losses import scene
from tests.tiny import TINY
from training.losses import (
    LossWeights,
    Term,
    combine,
    gradient_shares,
    gt_loss,
    loss_terms,
    output_gradient_norms,
)


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    network = RefinementNetwork(TINY)
    low, high = torch.rand(2, 1, 128, 128), torch.rand(2, 1, 128, 128)
    target = scene(40, size=128)
    edges = sobel_magnitude(scene(41, size=128), value_range=1.0)
    return network, low, high, target, edges


def _norms(batch, weights: LossWeights, output=None) -> dict[str, float]:
    network, low, high, target, edges = batch
    if output is None:
        torch.manual_seed(1)  # the same stochastic depth draws on every call
        output = network(low, high, with_aux=True)
    norms = output_gradient_norms(
        output, lambda out: loss_terms(out, target, edges, weights=weights))
    return {name: float(norm) for name, norm in norms.items()}


def test_every_term_has_a_share_and_the_shares_add_up_to_one(batch):
    norms = _norms(batch, LossWeights())
    shares = gradient_shares(norms)
    assert set(shares) == {"gt_d0", "gt_half", "gt_quarter", "grad", "fusion"}
    assert all(norms[name] > 0 for name in shares)
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-12)
    # gt_d0 and grad pull at the same D0, so the whole pull is at most the terms' sum.
    assert norms["sum"] <= sum(norms[name] for name in shares) * (1 + 1e-6)


def test_a_term_weighted_zero_has_share_zero(batch):
    shares = gradient_shares(_norms(batch, LossWeights(fusion=0.0)))
    assert shares["fusion"] == 0.0
    assert shares["grad"] > 0 and sum(shares.values()) == pytest.approx(1.0)


def test_doubling_a_weight_doubles_its_norm_and_raises_its_share(batch):
    base, doubled = _norms(batch, LossWeights()), _norms(batch, LossWeights(grad=1.0))
    assert doubled["grad"] == pytest.approx(2 * base["grad"], rel=1e-5)
    for name in ("gt_d0", "gt_half", "gt_quarter", "fusion"):
        assert doubled[name] == pytest.approx(base[name], rel=1e-5)
    before, after = gradient_shares(base)["grad"], gradient_shares(doubled)["grad"]
    rest = sum(base.values()) - base["sum"] - base["grad"]
    assert after > before
    assert after == pytest.approx(2 * base["grad"] / (2 * base["grad"] + rest), rel=1e-5)


def test_the_norms_are_taken_at_the_output_and_leave_the_step_unchanged(batch):
    network, low, high, target, edges = batch

    def step(measure: bool) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        network.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        output = network(low, high, with_aux=True)
        norms = _norms(batch, LossWeights(), output) if measure else {}
        assert all(p.grad is None for p in network.parameters())  # no pass reached a weight
        combine(loss_terms(output, target, edges))[0].backward()
        return norms, {name: p.grad.clone() for name, p in network.named_parameters()}

    measured, with_measure = step(True)
    _, without = step(False)
    for name, grad in without.items():
        torch.testing.assert_close(with_measure[name], grad, rtol=0, atol=0)
    # At the output, D0's L_gt has a gradient on D0 alone, so its norm is that of D0's.
    torch.manual_seed(1)
    depth = network(low, high, with_aux=True).depth.detach().requires_grad_()
    gt_loss(depth, target).backward()
    assert measured["gt_d0"] == pytest.approx(float(depth.grad.norm()), rel=1e-5)


def test_a_term_without_gradient_counts_zero(batch):
    network, low, high, target, _ = batch
    output = network(low, high, with_aux=True)
    norms = output_gradient_norms(output, lambda out: {
        "gt_d0": Term(1.0, gt_loss(out.depth, target)), "fusion": Term(0.1, torch.tensor(0.3))})
    assert float(norms["fusion"]) == 0.0 and float(norms["gt_d0"]) > 0
    assert gradient_shares({k: float(v) for k, v in norms.items()})["gt_d0"] == 1.0


def test_no_term_at_all_gives_zero_shares():
    assert gradient_shares({"gt_d0": 0.0, "grad": 0.0, "sum": 0.0}) == {"gt_d0": 0.0, "grad": 0.0}


def test_phase_one_terms_are_the_ground_truth_ones(batch):
    network, low, high, target, _ = batch
    output = network(low, high, with_aux=True)
    assert set(loss_terms(output, target, None, weights=LossWeights(aux=0.0))) == {"gt_d0"}
    assert set(loss_terms(output, target, None)) == {"gt_d0", "gt_half", "gt_quarter"}
