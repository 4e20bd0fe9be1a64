"""How hard each weighted term of the objective pulls at the network's output (issue 25.3).

A term's loss value does not say how much of the update it makes: L_grad is ~1e-3 and L_gt ~1,
yet what the optimiser follows is the gradient. At the output it is the sum of the terms'
gradients, so each term's gradient norm there, and its share of the terms' summed norms, say
how much of the update each term asks for before the network's Jacobian carries it to the
weights. That Jacobian is the same for every term on D0, but Ω and the deep-supervision
outputs reach the weights through other layers: at λ2 = 27 L_fusion held 6 % of the pull at
the output and 55 % of the weights' gradient (docs/decisions.md, 213), so a share at the
output is a pull, not a share of the weight update.

The gradient is taken at the output itself: the terms are computed again on detached copies
of the output tensors and differentiated with respect to those (`torch.autograd.grad`). On
the network's own tensors a term on D0 would also reach Ω and the deep-supervision outputs
back through the decoder layers between them; on copies it costs one more evaluation of the
loss and a backward pass through it per term, and none through the network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

from sddr_core.network import NetworkOutput

from .total import Term


def output_gradient_norms(
    output: NetworkOutput, terms_of: Callable[[NetworkOutput], Mapping[str, Term]]
) -> dict[str, torch.Tensor]:
    """The L2 norm of each weighted term's gradient with respect to the output's tensors (D0,
    the deep-supervision depths and every Ω together), and under `"sum"` that of the whole
    objective's (below the terms' sum where they pull apart).

    Parameters
    ----------
    output : NetworkOutput
        The network's output for one batch; left untouched.
    terms_of : callable
        The batch's terms of an output, e.g. `training.losses.loss_terms` with the batch's
        target, labels, mask and weights bound.

    Returns
    -------
    dict of str to torch.Tensor
        A detached fp32 scalar per term name, and `"sum"`; 0 for a term with no gradient
        (no output reaches it).
    """
    copy = NetworkOutput(depth=output.depth.detach().requires_grad_(),
                         omegas=[omega.detach().requires_grad_() for omega in output.omegas],
                         aux={name: aux.detach().requires_grad_()
                              for name, aux in output.aux.items()})
    leaves = [copy.depth, *copy.aux.values(), *copy.omegas]
    total = [torch.zeros_like(leaf, dtype=torch.float32) for leaf in leaves]
    norms = {}
    for name, term in terms_of(copy).items():
        weighted = term.weighted
        squares = torch.zeros((), dtype=torch.float32, device=output.depth.device)
        if weighted.requires_grad:
            grads = torch.autograd.grad(weighted, leaves, retain_graph=True, allow_unused=True)
            for index, grad in enumerate(grads):
                if grad is not None:
                    total[index] += grad.float()
                    squares = squares + grad.float().square().sum()
        norms[name] = squares.sqrt()
    norms["sum"] = torch.stack([grad.square().sum() for grad in total]).sum().sqrt()
    return norms


def gradient_shares(norms: Mapping[str, float]) -> dict[str, float]:
    """Each term's norm over the terms' summed norms (`"sum"` left out): the shares add up to
    1, and to 0 when no term has a gradient.

    >>> gradient_shares({"gt_d0": 3.0, "grad": 1.0, "fusion": 0.0, "sum": 3.5})
    {'gt_d0': 0.75, 'grad': 0.25, 'fusion': 0.0}
    """
    terms = {name: norm for name, norm in norms.items() if name != "sum"}
    whole = math.fsum(terms.values())
    return {name: norm / whole if whole > 0 else 0.0 for name, norm in terms.items()}
