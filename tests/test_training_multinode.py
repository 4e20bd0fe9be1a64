"""Training past one machine: two `torchrun` node agents on this machine meet at a c10d
rendezvous on a free localhost port and train one run together (one gloo process each), as
two machines would (docs/scaling.md, "Training on several machines"). That run is bit for bit
the run of two processes on one node; it and one process given the same config, so the same
global batch, reach the same weights; and a two-node run killed and resumed on one process
continues as the one-process run does."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from sddr_core.network import PRESETS, RefinementNetwork
from sddr_core.network.encoder import drop_path
from tests.test_training_loop import ROOT, _command, _config, _log, _tensors
from training.checkpoint import latest_checkpoint
from training.config import parse_config
from training.loop import _seed_step
from training.losses import combine, loss_terms

TORCHRUN = Path(sys.executable).with_name("torchrun")

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                       reason="needs torch.distributed with gloo"),
    pytest.mark.skipif(not TORCHRUN.exists(), reason=f"needs torchrun beside {sys.executable}"),
]

STEPS = {"schedule__phase1_steps": 2, "schedule__phase2_steps": 6, "schedule__label_refresh": 4,
         "checkpoint__every": 4, "checkpoint__keep": 3, "logging__shares_every": 0}
"""tests/test_training_loop.py's tiny run (global batch 2) for 8 steps: phase 1, then label
refreshes at steps 2 and 6, each pool of 2 scenes labelled half by each rank; checkpoints at
steps 4 and 8."""

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
"""One thread per process everywhere: four processes share two cores."""

WEIGHT_TOLERANCE = 5e-5
"""Largest difference of a weight (or EMA weight) between one process and two: half the
lr = 1e-4 that AdamW moves a weight in one step whatever its gradient's size, so one step on
another batch would leave weights about 1e-4 apart (from step 4 to 8 the median weight moved
1.2e-4). What the runs differ in is the order a gradient is summed in (one conv over 2
samples, or 2 convs over 1 and gloo's all-reduce), which AdamW's division by the gradient's
RMS magnifies where a gradient is small. Measured after 8 steps: 1.5e-6 at most on the machine
this was first written on; 2.4e-5 on a 2-core AMD EPYC (2026-12-07), in five tensors (the patch
embeddings of encoder stages 1 and 2, one decoder convolution), identical run to run."""

BULK_TOLERANCE = 1e-6
"""Largest difference of the 99.9th percentile of all weights' differences: the sums' order
leaves almost every weight equal to float32 rounding, while a run on other batches moves most
of them by about 1e-4. Measured (AMD EPYC, 8 steps): 1.0e-7; median 1.4e-9."""

MOMENT_TOLERANCE = 1e-3
"""Largest difference of an AdamW moment, as a fraction of that moment's largest value in the
run. Measured: 7.7e-5. The gradients differ by more than the weights do: the logged gradient
norms by up to 1.5e-4 (step 5) while the losses agree to 1e-6, probably where a pixel crosses
one of L_gt's non-smooth points (its trimming cut, a median) on a rounding difference (not
shown; docs/training.md). A moment of a zero gradient (1e-15) differs by its whole size, and
is below this."""

ROUNDING_ONLY = ("decoder.aux_quarter.conv.bias", "decoder.aux_half.conv.bias")
"""The deep-supervision heads' last biases. L_gt subtracts each image's median from these
outputs, so in exact arithmetic their gradient is zero; in float32 it is rounding noise, which
AdamW divides by its own RMS into steps of about lr, in either direction. Bound: 2·steps·lr,
each run moving it lr a step the other way; measured after 8 steps: 3.7e-4 (bound 1.6e-3).
`test_l_gt_gives_the_deep_supervision_biases_no_gradient_but_rounding` checks the premise."""


def _train(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_nodes(config: Path, out: Path, logs: Path) -> list[subprocess.Popen]:
    """Two node agents (`--nnodes 2`, one process each) meeting at a c10d rendezvous on
    127.0.0.1: the first to bind the port hosts the store, the other joins it."""
    port = _free_port()
    command = [str(TORCHRUN), "--nnodes", "2", "--nproc-per-node", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
               "--rdzv-id", f"sddr-test-{port}", "--rdzv-conf", "join_timeout=120",
               "-m", "training", "train", "--config", str(config), "--out", str(out)]
    logs.mkdir(exist_ok=True)
    return [subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=(logs / f"node-{node}.log").open("w"))
            for node in range(2)]


def _kill(nodes: list[subprocess.Popen]) -> None:
    """SIGKILL each node agent still running and its worker, as a machine lost: torchrun starts
    each worker in a session of its own, so it would outlive its agent."""
    for node in nodes:
        if node.poll() is None:
            workers = Path(f"/proc/{node.pid}/task/{node.pid}/children").read_text().split()
            node.kill()
            for worker in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(int(worker), signal.SIGKILL)
        node.wait()


def _finish(nodes: list[subprocess.Popen], logs: Path) -> None:
    try:
        codes = [node.wait(timeout=300) for node in nodes]
    finally:
        _kill(nodes)
    assert codes == [0, 0], "\n".join((logs / f"node-{n}.log").read_text()[-2000:]
                                      for n in range(2))


def _steps(run: Path) -> list[dict]:
    """The step records of the run's last start or resume."""
    records = _log(run)
    last = max(i for i, r in enumerate(records) if r.get("event") in ("start", "resume"))
    return [r for r in records[last:] if "loss" in r]


def _assert_same_state(ours: Path, theirs: Path) -> None:
    """Weights and EMA weights of two checkpoints of the same step agree within
    `WEIGHT_TOLERANCE` (`ROUNDING_ONLY` within 2·steps·lr) and, but for one in a thousand,
    within `BULK_TOLERANCE`; AdamW's moments within
    `MOMENT_TOLERANCE` (`ROUNDING_ONLY`'s aside), and the rest (AdamW's step counts, the RNG
    states) exactly."""
    config = parse_config((theirs.parent / "config.yaml").read_text())
    step = int(theirs.stem.split("-")[1])
    names = [name for name, _ in RefinementNetwork(config.model.architecture())
             .named_parameters()]
    moments = (".exp_avg", ".exp_avg_sq")
    rounding_only = {f"{kind}.{name}" for kind in ("model", "ema") for name in ROUNDING_ONLY}
    unchecked = {f"optimizer.state.{names.index(name)}{moment}"
                 for name in ROUNDING_ONLY for moment in moments}
    a, b = _tensors(ours, ""), _tensors(theirs, "")
    assert a.keys() == b.keys()
    largest = {moment: max(b[key].abs().max().item() for key in b if key.endswith(moment))
               for moment in moments}
    weights = [key for key in b if key.startswith(("model.", "ema.")) and key not in rounding_only]
    differences = torch.cat([(a[key].double() - b[key].double()).abs().flatten()
                             for key in weights])
    assert differences.quantile(0.999).item() <= BULK_TOLERANCE
    for key in sorted(set(b) - unchecked):
        difference = (a[key].double() - b[key].double()).abs().max().item()
        if key in rounding_only:
            assert difference <= 2 * step * config.optim.lr, (key, difference)
        elif key.startswith(("model.", "ema.")):
            assert difference <= WEIGHT_TOLERANCE, (key, difference)
        elif key.endswith(moments):
            moment = "." + key.rsplit(".", 1)[1]
            assert difference <= MOMENT_TOLERANCE * largest[moment], (key, difference)
        else:
            assert torch.equal(a[key], b[key]), key
    assert b[f"optimizer.state.{len(names) - 1}.step"].item() == step


def _assert_same_steps(ours: list[dict], theirs: list[dict]) -> None:
    """Equal losses mean equal batches, labels and weights before each step (measured: 1e-6
    apart); equal gradient norms, equal all-reduced gradients (`MOMENT_TOLERANCE` says why
    these are looser)."""
    assert [r["step"] for r in ours] == [r["step"] for r in theirs]
    for one, two in zip(ours, theirs, strict=True):
        for key in ("loss", "gt"):
            assert one[key] == pytest.approx(two[key], rel=1e-5), (one["step"], key)
        assert one["grad_norm"] == pytest.approx(two["grad_norm"], rel=MOMENT_TOLERANCE)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def single(tmp_path_factory, cache) -> Path:
    """The run in one process: `data.batch_size` 2, both samples of each step in one batch."""
    tmp = tmp_path_factory.mktemp("single")
    _train(_command(_config(tmp, cache, **STEPS), tmp / "run"))
    return tmp / "run"


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory, cache) -> Path:
    """The run on two nodes of one process each: one sample per rank and step."""
    tmp = tmp_path_factory.mktemp("two-nodes")
    _finish(_start_nodes(_config(tmp, cache, **STEPS), tmp / "run", tmp), tmp)
    return tmp / "run"


def test_two_nodes_of_one_process_train_as_one_node_of_two_bit_for_bit(
        tmp_path, cache, two_nodes):
    """Ranks, shards, labels and all-reduces are the same wherever the processes run."""
    run = tmp_path / "run"
    _train([str(TORCHRUN), "--standalone", "--nproc-per-node", "2",
            *_command(_config(tmp_path, cache, **STEPS), run)[1:]])
    ours, theirs = _tensors(latest_checkpoint(run), ""), _tensors(latest_checkpoint(two_nodes), "")
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key


def test_two_nodes_reach_the_weights_of_one_process_with_the_same_global_batch(
        two_nodes, single):
    """Same config, so the same global batch (`data.batch_size` 2): one sample per rank on two
    nodes, both in one batch in one process."""
    start = next(r for r in _log(two_nodes) if r.get("event") == "start")
    assert start["processes"] == 2
    _assert_same_steps(_steps(two_nodes), _steps(single))
    assert [r["labels"]["scenes"] for r in _log(two_nodes) if "labels" in r] == [2, 2]
    assert latest_checkpoint(two_nodes).name == latest_checkpoint(single).name == (
        "step-000008.safetensors")
    _assert_same_state(latest_checkpoint(two_nodes), latest_checkpoint(single))


@pytest.mark.skipif(not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
                    reason="finds torchrun's workers in /proc (Linux)")
def test_a_two_node_run_killed_and_resumed_on_one_process_continues_as_one_process(
        tmp_path, cache, single):
    """SIGKILL to both nodes after the step-4 checkpoint, between two label refreshes; then
    --resume in one process: it reads the labels the two ranks wrote, takes steps 5–8 on the
    batches the one-process run took, and ends with its weights, EMA and AdamW state."""
    config, run = _config(tmp_path, cache, **STEPS), tmp_path / "run"
    nodes = _start_nodes(config, run, tmp_path)
    deadline = time.monotonic() + 300
    try:
        while not (run / "step-000004.safetensors").exists():
            assert all(n.poll() is None for n in nodes), "a node ended before step 4"
            assert time.monotonic() < deadline, "no step-4 checkpoint in 300 s"
            time.sleep(0.01)
    finally:
        _kill(nodes)
    assert not (run / "step-000008.safetensors").exists(), "killed too late to test resume"
    labels = {path: path.stat().st_mtime_ns
              for path in (run / "labels" / "refresh-0000").glob("*.safetensors")}
    assert len(labels) == 2  # one scene from each rank
    _train(_command(config, run, "--resume"))
    resume = next(r for r in _log(run) if r.get("event") == "resume")
    assert (resume["step"], resume["processes"]) == (4, 1)
    assert {path: path.stat().st_mtime_ns for path in labels} == labels  # read, not remade
    _assert_same_steps(_steps(run), _steps(single)[4:])
    _assert_same_state(latest_checkpoint(run), latest_checkpoint(single))


def test_l_gt_gives_the_deep_supervision_biases_no_gradient_but_rounding():
    """Why `ROUNDING_ONLY` may differ by more than `WEIGHT_TOLERANCE`: their gradient is below
    1e-6 of the whole gradient's norm (float32 rounding of a zero), on a random network and
    batch."""
    torch.manual_seed(0)
    network = RefinementNetwork(PRESETS["small"])
    low = torch.rand(1, 1, 128, 128)
    high, target = low + 0.05 * torch.rand_like(low), 0.5 + torch.rand_like(low)
    output = network(low, high, with_aux=True)
    loss, _ = combine(loss_terms(output, target=target, edges=None))
    loss.backward()
    gradients = dict(network.named_parameters())
    norm = torch.cat([p.grad.flatten() for p in network.parameters()]).norm()
    for name in ROUNDING_ONLY:
        assert gradients[name].grad.abs().max() < 1e-6 * norm, name
    assert gradients["decoder.aux_quarter.norm.bias"].grad.abs().max() > 1e-4 * norm


def test_each_rank_draws_its_own_stochastic_depth_masks_and_a_step_draws_them_again():
    """Seeded once, every rank drew the masks rank 0 drew; seeded per step and rank, the ranks
    differ and a resumed step (on any number of processes) draws what it drew before."""
    def masks(step: int, rank: int) -> torch.Tensor:
        _seed_step(3, step, rank)
        return drop_path(torch.ones(64, 1), 0.5, training=True)

    assert not torch.equal(masks(5, 0), masks(5, 1))
    assert not torch.equal(masks(5, 0), masks(6, 0))
    first = masks(5, 1)
    masks(9, 0)
    assert torch.equal(masks(5, 1), first)
