"""The G_S label generator: batched equals one at a time, cached predictions, the caller's
network left exactly as it was."""

import numpy as np
import pytest
import torch

from sddr_core.cli.sample import sample_scene
from sddr_core.errors import InputError
from sddr_core.inference.labels import LabelSample, edge_labels
from sddr_core.network.model import RefinementNetwork
from sddr_core.predictors.exact import MapPredictor
from tests.tiny import TINY

STEPS = 2


@pytest.fixture(scope="module")
def scenes():
    """Two (rgb, disparity) scenes of 72×96."""
    out = []
    for seed in range(2):
        rgb, depth = sample_scene(72, 96, seed=seed)
        out.append((rgb, (1.0 / depth).astype(np.float32)))
    return out


def training_network():
    torch.manual_seed(0)
    network = RefinementNetwork(TINY).train()
    network.decoder.eval()  # a mixed state must survive too
    return network


def test_batched_labels_equal_one_image_labels(scenes):
    network = training_network()
    samples = [LabelSample(image=rgb) for rgb, _ in scenes]
    predictors = [MapPredictor(disparity, 32) for _, disparity in scenes]

    class PerImage:  # one predictor per scene, chosen by the image it is given
        name, polarity, training_resolution = "per-image", "disparity", 32
        gradient_prior = predictors[0].gradient_prior

        def predict(self, image, resolution, region=None):
            full = next(i for i, (rgb, _) in enumerate(scenes)
                        if region is None and np.array_equal(rgb, image)
                        or region is not None and np.array_equal(
                            rgb[region[0]:region[0] + region[2],
                                region[1]:region[1] + region[3]], image))
            return predictors[full].predict(image, resolution, region)

    together = edge_labels(network, samples, STEPS, PerImage())
    for sample, predictor, (depth, edges) in zip(samples, predictors, together, strict=True):
        alone_depth, alone_edges = edge_labels(network, [sample], STEPS, predictor)[0]
        torch.testing.assert_close(depth, alone_depth, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(edges, alone_edges, rtol=1e-4, atol=1e-5)
        assert depth.shape == edges.shape == (72, 96) and edges.min() >= 0


def test_cached_predictions_give_the_predictor_labels(scenes):
    """A sample carrying every prediction (as a training cache would) needs no predictor."""
    network = training_network()
    rgb, disparity = scenes[0]

    class Caching(MapPredictor):
        outputs = []

        def predict(self, image, resolution, region=None):
            self.outputs.append(super().predict(image, resolution, region))
            return self.outputs[-1]

    predictor = Caching(disparity, 32)
    expected = edge_labels(network, [LabelSample(image=rgb)], STEPS, predictor)[0]
    low, high, *windows = predictor.outputs
    cache = [windows[:4], windows[4:]]  # step 1: 2×2 windows, step 2: 3×3
    assert len(windows) == 4 + 9
    cached = edge_labels(network, [LabelSample(low, high, cache, size=(72, 96))], STEPS)[0]
    for a, b in zip(cached, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_callers_network_is_left_exactly_as_it_was(scenes):
    network = training_network()
    network.encoder.requires_grad_(False)  # a frozen part, as when fine-tuning
    modes = [m.training for m in network.modules()]
    grads = [p.requires_grad for p in network.parameters()]
    state = {k: v.clone() for k, v in network.state_dict().items()}
    strides = [p.stride() for p in network.parameters()]
    rgb, disparity = scenes[1]
    edge_labels(network, [LabelSample(image=rgb)], STEPS, MapPredictor(disparity, 32))
    assert [m.training for m in network.modules()] == modes
    assert [p.requires_grad for p in network.parameters()] == grads
    assert [p.stride() for p in network.parameters()] == strides
    assert all(p.grad is None for p in network.parameters())
    for key, value in network.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_a_sample_without_predictions_needs_an_image_and_a_predictor():
    with pytest.raises(InputError, match=r"samples\[0\]"):
        edge_labels(training_network(), [LabelSample()], STEPS)
    with pytest.raises(InputError, match="window"):
        low = np.random.default_rng(0).random((24, 32), dtype=np.float32)
        edge_labels(training_network(), [LabelSample(low, low, size=(72, 96))], STEPS)
    with pytest.raises(InputError, match="step 1 needs 4"):
        edge_labels(training_network(), [LabelSample(low, low, [[low]], size=(72, 96))], 1)
    with pytest.raises(InputError, match=r"window_highs\[0\]\[2\]: expected an H×W map"):
        cache = [[low, low, low[None, None], low]]
        edge_labels(training_network(), [LabelSample(low, low, cache, size=(72, 96))], 1)
