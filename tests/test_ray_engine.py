"""`sddr refine --engine ray` on a real Ray cluster that the tests start on this machine: a head
node and a second node (`ray.cluster_utils.Cluster`: a raylet process each), one CPU each, so
the job's two workers hold one torch thread each, and the single-process reference runs with
`--threads 1` (outputs are byte-identical only at the same thread count: docs/decisions.md 222).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from sddr_core.batch.manifest import FOLDER
from tests.ray_jobs import REPO, one_thread, sddr_job
from tests.test_batch import tiny_predictor_folder, write_pairs

ray = pytest.importorskip("ray", reason="the 'distributed' extra (Ray) is not installed")

PHOTOS = 24
PAIRS = 24


@pytest.fixture(scope="module")
def photos(tmp_path_factory, weights):
    """(photo folder with PHOTOS good photos and two corrupt ones, predictor folder, the
    single-process outputs at one thread)."""
    root = tmp_path_factory.mktemp("photos")
    folder = root / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(PHOTOS):
        photo = cv2.GaussianBlur(rng.integers(0, 256, (40, 56, 3), np.uint8), (0, 0), 2)
        cv2.imwrite(str(folder / f"p{index:02}.png"), photo)
    good = (folder / "p00.png").read_bytes()
    (folder / "bad-truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "bad-noise.jpg").write_bytes(good[:200])
    predictor = tiny_predictor_folder(root / "predictor")
    reference = root / "reference"
    assert one_thread(["refine", str(folder), "-o", str(reference), "--weights", weights,
                       "--predictor", str(predictor), "--device", "cpu"]) == 1
    return folder, predictor, reference


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, weights):
    """(low folder, high folder, the single-process outputs at one thread)."""
    return _pairs(tmp_path_factory.mktemp("pairs"), weights, size=(48, 64))


@pytest.fixture(scope="module")
def slow_pairs(tmp_path_factory, weights):
    """`pairs` large enough (480×640) that a job is still running when its first inputs are
    done, on an idle machine too: the interrupt test needs a job to interrupt."""
    return _pairs(tmp_path_factory.mktemp("slow-pairs"), weights, size=(480, 640))


def _pairs(root: Path, weights: str, size: tuple[int, int]) -> tuple[Path, Path, Path]:
    low, high = write_pairs(root, [f"f{index:02}" for index in range(PAIRS)], size=size)
    reference = root / "reference"
    assert one_thread(["refine", "--low", str(low), "--high", str(high), "-o",
                       str(reference), "--weights", weights, "--device", "cpu",
                       "--format", "npy"]) == 0
    return low, high, reference


def _manifest_lines(out: Path) -> list[str]:
    return [line for part in sorted((out / FOLDER).glob("*.jsonl"))
            for line in part.read_text().splitlines()]


def _wait_for_lines(out: Path, count: int, job: subprocess.Popen, timeout: float = 240) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and job.poll() is None:
        lines = len(_manifest_lines(out))
        if lines >= count:
            return lines
        time.sleep(0.05)
    pytest.fail(f"the job wrote fewer than {count} manifest lines: {job.communicate()}")


def _map_workers() -> list[int]:
    """PIDs of the job's actors (process title `ray::_ItemWorker…`) that descend from this
    test process, i.e. belong to the cluster it started."""
    parents, titles = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            titles[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])

    def ours(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    return [pid for pid, title in titles.items()
            if title.startswith(b"ray::_ItemWorker") and ours(pid)]


def _assert_same_files(out: Path, reference: Path) -> None:
    """`out` holds exactly the reference's files (no temporary ones), byte for byte."""
    written = sorted(p.name for p in out.iterdir() if p.name != FOLDER)
    assert written == sorted(p.name for p in reference.iterdir())
    for name in written:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_bench_throughput_times_one_process_and_ray_with_1_and_2_workers(weights):
    """First in the file, before the cluster starts: the bench starts a Ray of its own."""
    result = subprocess.run(
        [sys.executable, "-m", "sddr_core.cli.main", "bench", "--throughput", "--size", "64",
         "--count", "3", "--weights", weights, "--json"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
        text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["size"], report["count"]) == (64, 3)
    assert [run["workers"] for run in report["ray"]] == [1, 2]
    for run in report["ray"]:
        assert run["job_seconds"] > run["startup_seconds"] > 0
        assert run["steady_images_per_second"] > 0 and run["worker_item_seconds"] > 0
        assert run["overhead_item_seconds"] == pytest.approx(
            run["steady_item_seconds_per_worker"] - run["worker_item_seconds"])


def test_a_worker_killed_mid_job_leaves_every_output_once_and_as_one_process_writes_it(
        cluster, photos, weights, tmp_path):
    folder, predictor, reference = photos
    out = tmp_path / "out"
    job = sddr_job("refine", str(folder), "-o", str(out), "--weights", weights,
                   "--predictor", str(predictor), "--device", "cpu", "--engine", "ray",
                   "--address", cluster.address, "--workers", "2")
    done_at_kill = _wait_for_lines(out, 4, job)
    victims = _map_workers()
    assert len(victims) == 2, victims
    os.kill(victims[0], signal.SIGKILL)
    stdout, stderr = job.communicate(timeout=300)
    assert done_at_kill < PHOTOS  # the kill came mid-job
    assert job.returncode == 1, stderr
    assert f"refined {PHOTOS}, skipped 0 " in stdout and "failed 2" in stdout
    for bad in ("bad-truncated.png", "bad-noise.jpg"):
        assert f"skipped '{folder / bad}': " in stderr
    assert stderr.splitlines()[-1].startswith(f"sddr: error: 2 of {PHOTOS + 2} photos failed")
    _assert_same_files(out, reference)
    recorded = [json.loads(line)["inputs"][0] for line in _manifest_lines(out)]
    assert sorted(set(recorded)) == sorted(str(p) for p in folder.glob("p*.png"))


def test_an_interrupted_job_rerun_skips_what_was_done(cluster, slow_pairs, weights, tmp_path):
    low, high, reference = slow_pairs
    out = tmp_path / "out"
    argv = ["refine", "--low", str(low), "--high", str(high), "-o", str(out), "--weights",
            weights, "--device", "cpu", "--format", "npy", "--engine", "ray", "--address",
            cluster.address]
    job = sddr_job(*argv)
    _wait_for_lines(out, 1, job)
    job.send_signal(signal.SIGINT)  # Ctrl-C
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 130, stderr
    finished = {json.loads(line)["outputs"][0] for line in _manifest_lines(out)}
    assert 1 <= len(finished) < PAIRS
    stamps = {path: os.stat(path).st_mtime_ns for path in finished}
    rerun = sddr_job(*argv)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert (f"refined {PAIRS - len(finished)}, skipped {len(finished)} finished by an earlier "
            f"run") in stdout
    assert {path: os.stat(path).st_mtime_ns for path in finished} == stamps  # not rewritten
    _assert_same_files(out, reference)


class PoisonPredictor:
    """A predictor that kills its process on a black photo, every time (a crash no `except`
    catches, as a segfault or the OOM killer would), and else predicts the photo's brightness."""

    name, polarity, training_resolution, gradient_prior = "poison", "disparity", 32, 0.01

    def predict(self, image, resolution, region=None):
        if image.max() == 0:
            os._exit(1)
        return cv2.resize(image.mean(axis=2).astype(np.float32), (resolution, resolution))


POISON_JOB = """
import dataclasses, json, sys
from pathlib import Path
import ray
from sddr_core.batch import RefineSettings, photo_items, refine_on_ray
from tests.test_ray_engine import PoisonPredictor
address, weights, folder, out = sys.argv[1:]
items = photo_items(sorted(Path(folder).iterdir()), Path(out), "png16", edges=False)
settings = RefineSettings("photos", weights=weights, predictor="poison", device="cpu")
ray.init(address=address)
report = refine_on_ray(items, settings, out, retries=1, predictor=PoisonPredictor())
print("report:", json.dumps(dataclasses.asdict(report)))
"""
"""The Python entry point as a driver of its own process, beside the test's own cluster."""


def test_an_input_that_kills_its_worker_each_time_is_named_and_the_rest_finish(
        cluster, weights, tmp_path):
    """The black photo's worker dies on the first try and on the one retry; it is reported by
    name, and every other photo is written."""
    folder, out = tmp_path / "photos", tmp_path / "out"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(6):
        cv2.imwrite(str(folder / f"p{index}.png"), rng.integers(1, 256, (24, 32, 3), np.uint8))
    cv2.imwrite(str(folder / "black.png"), np.zeros((24, 32, 3), np.uint8))
    result = subprocess.run(
        [sys.executable, "-c", POISON_JOB, cluster.address, weights, str(folder), str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    # Ray may print lines of its own (a worker died) around the report
    report = json.loads(next(line for line in result.stdout.splitlines()
                             if line.startswith("report: ")).removeprefix("report: "))
    assert report["failed"] == [[str(folder / "black.png"),
                                 "its worker died on each of 2 attempts"]]
    assert (report["refined"], report["skipped"]) == (6, 0)
    assert sorted(p.name for p in out.iterdir() if p.name != FOLDER) == sorted(
        name for index in range(6) for name in (f"p{index}.png", f"p{index}.png.sddr.json"))


BROKEN_JOB = """
import sys
from pathlib import Path
import ray
from sddr_core.batch import RefineSettings, photo_items, refine_on_ray
from sddr_core.errors import SddrError
address, weights, folder, out = sys.argv[1:]
items = photo_items(sorted(Path(folder).iterdir()), Path(out), "png16", edges=False)
settings = RefineSettings("photos", weights=weights, predictor=folder + "/no-such-model",
                          device="cpu")
ray.init(address=address)
try:
    refine_on_ray(items, settings, out, workers=2)
except SddrError as err:
    print("error:", err)
"""


def test_a_pool_that_cannot_load_its_predictor_is_one_error_for_the_job(
        cluster, weights, tmp_path):
    """Every worker fails in its constructor: the job stops with one error naming the cause,
    instead of reporting each photo as a worker that died."""
    folder, out = tmp_path / "photos", tmp_path / "out"
    folder.mkdir()
    cv2.imwrite(str(folder / "p0.png"), np.full((24, 32, 3), 128, np.uint8))
    result = subprocess.run(
        [sys.executable, "-c", BROKEN_JOB, cluster.address, weights, str(folder), str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("error: "))
    assert line.startswith("error: the Ray job failed: ") and "no-such-model" in line, line
    assert not (out / "p0.png").exists()


def test_more_workers_than_cpus_share_them_and_the_job_finishes(cluster, pairs, weights,
                                                                tmp_path):
    """Four workers on two one-CPU nodes ask for half a CPU each; asking for one each, two of
    them never started and the job waited for them forever (decision 346)."""
    low, high, reference = pairs
    out = tmp_path / "out"
    job = sddr_job("refine", "--low", str(low), "--high", str(high), "-o", str(out),
                   "--weights", weights, "--device", "cpu", "--format", "npy", "--engine",
                   "ray", "--address", cluster.address, "--workers", "4")
    stdout, stderr = job.communicate(timeout=300)
    assert job.returncode == 0, stderr
    assert f"refined {PAIRS}, skipped 0" in stdout
    _assert_same_files(out, reference)
