"""Fixtures shared by the test files."""

import os
from pathlib import Path

import pytest
import torch

from sddr_core.inference.refiner import Refiner
from sddr_core.network.model import RefinementNetwork
from tests.tiny import TINY

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> str:
    """Path of a tiny random model saved as safetensors, for end-to-end CLI runs."""
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the same model in every session
        network = RefinementNetwork(TINY)
    Refiner(network, device="cpu").save(path)
    return str(path)


@pytest.fixture(scope="module")
def cluster():
    """A two-node Ray cluster (a raylet process each, one CPU each) whose workers import this
    checkout's sddr: the Ray engines' tests."""
    from ray.cluster_utils import Cluster

    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), saved]))
    node = {"num_cpus": 1, "object_store_memory": 100 * 2**20, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=node)
    try:
        cluster.add_node(**{k: v for k, v in node.items() if k != "include_dashboard"})
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
