"""Fixtures shared by the test files."""

import pytest
import torch

from sddr_core.inference.refiner import Refiner
from sddr_core.network.model import RefinementNetwork
from tests.tiny import TINY


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> str:
    """Path of a tiny random model saved as safetensors, for end-to-end CLI runs."""
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the same model in every session
        network = RefinementNetwork(TINY)
    Refiner(network, device="cpu").save(path)
    return str(path)
