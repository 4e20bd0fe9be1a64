"""`sddr refine CLIP --engine ray` on a real two-node Ray cluster (`cluster` in conftest.py; one
CPU a node, so each of the two predictor workers holds one torch thread): small videos made
with PyAV, the tiny refiner and a tiny random Depth Anything folder; the single-process
references run with `--threads 1` (decision 222). Each job is its own `sddr` process, its own
Ray driver, as a user runs it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sddr_core.errors import InputError
from tests.ray_jobs import REPO, one_thread, sddr_job
from tests.test_batch import tiny_predictor_folder

av = pytest.importorskip("av")
pytest.importorskip("ray", reason="the 'distributed' extra (Ray) is not installed")

from tests.test_video_cli import cut_video, make_video  # noqa: E402

FRAMES = 12
LONG = 24
"""Frames of the clip the interrupt test stops: a few are written before the signal lands."""


@pytest.fixture(scope="module")
def clip(tmp_path_factory, weights) -> dict:
    """A 12-frame video, a predictor folder, and the single-process run on them at one
    thread (frames and a depth video)."""
    root = tmp_path_factory.mktemp("clip")
    video = make_video(root / "clip.mkv", FRAMES)
    predictor = tiny_predictor_folder(root / "predictor")
    options = ["--weights", weights, "--predictor", str(predictor), "--device", "cpu"]
    reference = root / "reference"
    assert one_thread(["refine", str(video), "-o", str(reference), *options,
                       "--depth-video", str(root / "reference.mkv")]) == 0
    return {"root": root, "video": video, "options": options, "reference": reference}


def _on_ray(cluster, clip, *argv: str) -> list[str]:
    return ["--threads", "1", "refine", *argv, *clip["options"], "--engine", "ray",
            "--address", cluster.address, "--workers", "2"]


def _depth_video(path: Path) -> list[tuple[float, np.ndarray]]:
    with av.open(str(path)) as container:
        return [(frame.time, frame.to_ndarray(format="gray16le"))
                for frame in container.decode(video=0)]


def test_a_video_on_two_workers_is_the_single_process_clip_byte_for_byte(
        cluster, clip, tmp_path):
    out = tmp_path / "out"
    job = sddr_job(*_on_ray(cluster, clip, str(clip["video"]), "-o", str(out),
                            "--depth-video", str(tmp_path / "depth.mkv")))
    stdout, stderr = job.communicate(timeout=300)
    assert job.returncode == 0, stderr
    assert f"wrote {FRAMES} frames to '{out}'" in stdout
    assert f"{FRAMES}/{FRAMES}" in stderr  # one bar, counting the clip's frames
    names = sorted(p.name for p in clip["reference"].iterdir())
    assert sorted(p.name for p in out.iterdir()) == names  # no temporary file either
    for name in names:  # frames, sidecars and clip.sddr.json
        assert (out / name).read_bytes() == (clip["reference"] / name).read_bytes(), name
    # Matroska headers carry a random segment id: the frames and their times must match
    written, expected = (_depth_video(tmp_path / "depth.mkv"),
                         _depth_video(clip["root"] / "reference.mkv"))
    assert [t for t, _ in written] == [t for t, _ in expected] and len(written) == FRAMES
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(written, expected, strict=True))


def test_an_interrupted_ray_clip_continues_to_the_uninterrupted_frames(cluster, clip,
                                                                        tmp_path):
    """npy frames hold the clip state exactly (decision 242), so the resumed clip is the
    uninterrupted one's, byte for byte; the finished frames are not rewritten."""
    video = make_video(tmp_path / "long.mkv", LONG)
    reference, out = tmp_path / "reference", tmp_path / "out"
    assert one_thread(["refine", str(video), "-o", str(reference), *clip["options"],
                       "--format", "npy"]) == 0
    argv = _on_ray(cluster, clip, str(video), "-o", str(out), "--format", "npy")
    job = sddr_job(*argv)
    deadline = time.monotonic() + 240
    while len(list(out.glob("*.npy.sddr.json"))) < 3 and time.monotonic() < deadline \
            and job.poll() is None:
        time.sleep(0.005)
    job.send_signal(signal.SIGINT)  # Ctrl-C
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 130, stderr
    finished = sorted(out.glob("*.npy.sddr.json"))
    assert 3 <= len(finished) < LONG, "the job finished before the signal"
    assert f"sddr: {len(finished)} frames are in '{out}'; run the same command again" in stderr
    stamps = {path: os.stat(path).st_mtime_ns for path in out.glob("*.npy")}
    rerun = sddr_job(*argv)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert {path: os.stat(path).st_mtime_ns for path in stamps} == stamps
    names = sorted(p.name for p in reference.iterdir())
    assert sorted(p.name for p in out.iterdir()) == names
    for name in names:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_a_truncated_video_on_ray_keeps_the_frames_before_the_damage(cluster, clip,
                                                                      tmp_path):
    cut = cut_video(clip["video"], tmp_path / "cut.mkv")
    out = tmp_path / "out"
    job = sddr_job(*_on_ray(cluster, clip, str(cut), "-o", str(out)))
    _, stderr = job.communicate(timeout=300)
    assert job.returncode == 1, stderr
    kept = sorted(p.name for p in out.glob("*.png"))
    assert 0 < len(kept) < FRAMES
    assert (f"sddr: error: video '{cut}' ends at frame {len(kept)} before its stated end"
            in stderr)
    for name in kept:  # clip mode looks only back: the uninterrupted run's first frames
        assert (out / name).read_bytes() == (clip["reference"] / name).read_bytes(), name
    assert json.loads((out / "clip.sddr.json").read_text())["frames"] == len(kept)


class CountingPredictor:
    """Predicts a frame's brightness, and leaves a file per run naming its process and the
    frame (the frame's number is its top-left pixel); raises on frame `fail_on`."""

    name, polarity, training_resolution, gradient_prior = "counting", "disparity", 32, 0.01

    def __init__(self, folder: str, fail_on: int | None = None):
        self.folder, self.fail_on = folder, fail_on

    def predict(self, image, resolution, region=None):
        import cv2

        index = int(image[0, 0, 0])
        if index == self.fail_on:
            raise InputError(f"no depth in frame {index}")
        run = Path(self.folder, f"{os.getpid()}-{index}-{resolution}-{time.monotonic_ns()}")
        run.write_text("")
        return cv2.resize(image.mean(axis=2).astype(np.float32) + 1, (resolution, resolution))


POOL_JOB = """
import json, sys
import numpy as np, ray
from sddr_core.batch.ray_clip import AHEAD, ClipPredictors
from sddr_core.errors import SddrError
from sddr_core.files.video import Frame
from sddr_core.inference.coarse_to_fine import whole_image_inputs
from tests.test_ray_clip import CountingPredictor, scene
address, folder = sys.argv[1:]
pulled = []
def frames():
    for index in range(12):
        pulled.append(index)
        yield Frame(index, None, scene(index), f"frame {index}")
ray.init(address=address)
rows = []
with ClipPredictors(CountingPredictor(folder, fail_on=200), device="cpu", workers=2) as pool:
    for frame in pool.predictions(frames(), skip=5):
        row = {"index": frame.index, "ahead": len(pulled) - frame.index - 1}
        if frame.index >= 5:
            low, high, size = frame.data
            expected = whole_image_inputs(CountingPredictor(folder + "-here"), scene(frame.index))
            row["same"] = bool(np.array_equal(low, expected[0])
                               and np.array_equal(high, expected[1]) and size == (24, 32))
        else:
            row["same"] = bool(np.array_equal(frame.data, scene(frame.index)))
        rows.append(row)
    try:
        failed = [f.index for f in pool.predictions([Frame(0, None, scene(200), "clip 2")])]
    except SddrError as err:
        failed = str(err)
with ClipPredictors(CountingPredictor(folder + "-capped"), device="cpu", workers=2,
                    resolution_cap=0.5) as pool:
    (capped,) = pool.predictions([Frame(7, None, scene(7), "frame 7")])
expected = whole_image_inputs(CountingPredictor(folder + "-here"), scene(7), 0.5)
capped_high = capped.data[1]
print("report:", json.dumps({"rows": rows, "limit": AHEAD * 2, "failed": failed,
                             "capped": [list(capped_high.shape),
                                        bool(np.array_equal(capped_high, expected[1]))]}))
"""


def scene(index: int) -> np.ndarray:
    """Frame `index` of a 24×32 clip: a ramp, with the frame's number in its top-left pixel."""
    rgb = np.broadcast_to(np.linspace(20, 220, 32, dtype=np.uint8)[None, :, None],
                          (24, 32, 3)).copy()
    rgb[0, 0] = index
    return rgb


def test_the_pool_predicts_only_unfinished_frames_on_both_workers_in_order(cluster, tmp_path):
    """Frames before `skip` pass through without a predictor run; the others are spread over
    both workers, come back in order with what one process predicts, and at most AHEAD frames
    a worker are read ahead; a failing frame is named."""
    runs = tmp_path / "runs"
    runs.mkdir()
    (tmp_path / "runs-here").mkdir()
    (tmp_path / "runs-capped").mkdir()
    result = subprocess.run(
        [sys.executable, "-c", POOL_JOB, cluster.address, str(runs)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(next(line for line in result.stdout.splitlines()
                             if line.startswith("report: ")).removeprefix("report: "))
    rows = report["rows"]
    assert [row["index"] for row in rows] == list(range(12))
    assert all(row["same"] for row in rows), rows
    assert max(row["ahead"] for row in rows) <= report["limit"]
    predicted = [name.split("-") for name in os.listdir(runs)]
    frames = sorted(int(index) for _, index, *_ in predicted)
    assert frames == sorted(2 * list(range(5, 12)))  # low and high of each unfinished frame
    assert len({pid for pid, *_ in predicted}) == 2
    assert report["failed"] == "clip 2: no depth in frame 200"
    # --resolution-cap reaches the workers: half the frame's 32 px instead of Eq. 11's ≥ r̂
    # (the predictor's square map framed as the 24×32 frame)
    assert report["capped"] == [[12, 16], True]


@pytest.mark.parametrize("retries", [-1, 1.5, True])
def test_retries_that_are_not_a_whole_number_are_refused_before_ray_starts(retries):
    import ray

    from sddr_core.batch import ClipPredictors

    with pytest.raises(InputError, match=f"retries {retries!r}: must be a whole number ≥ 0"):
        ClipPredictors("depth-anything-v2-small", retries=retries)
    assert not ray.is_initialized()
