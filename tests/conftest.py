"""Fixtures shared by the test files."""

import pytest

from sddr_core.inference.refiner import Refiner
from sddr_core.network.model import RefinementNetwork
from tests.tiny import TINY


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> str:
    """Path of a tiny random model saved as safetensors, for end-to-end CLI runs."""
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    Refiner(RefinementNetwork(TINY), device="cpu").save(path)
    return str(path)
