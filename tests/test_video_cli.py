"""`sddr refine` on clips (a video, `--clip` folders of frames, `--low`/`--high` clips) and
`sddr bench --clip`: real `sddr` processes on small videos made here with PyAV, a tiny
refiner and a tiny Depth Anything from an offline cache; plus the readers and writer of
`sddr_core.files.video`."""

from __future__ import annotations

import fractions
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

from sddr_core import DepthPipeline, InputError, Refiner, load_refiner  # noqa: E402
from sddr_core.cli.main import main  # noqa: E402
from sddr_core.cli.video_job import ClipOutput, run_clip  # noqa: E402
from sddr_core.files.depth_io import read_depth  # noqa: E402
from sddr_core.files.depth_meaning import read_sidecar  # noqa: E402
from sddr_core.files.video import (  # noqa: E402
    TOP,
    ClipCodes,
    DamagedClip,
    DepthVideoWriter,
    Frame,
    read_clip,
    read_video,
)
from sddr_core.network.model import RefinementNetwork  # noqa: E402
from sddr_core.predictors import load_predictor  # noqa: E402
from tests.tiny import TINY, TINY_MAX_SIDE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FRAMES, HEIGHT, WIDTH = 12, 64, 96
VFR_MS = [0, 40, 140, 160, 200, 400, 420, 460, 500, 520, 700, 740]
"""Timestamps of a variable frame rate: the full run's video has them."""


@pytest.fixture(scope="module")
def backend(tmp_path_factory) -> dict[str, str]:
    pytest.importorskip("transformers")
    from tests.test_blender_backend import make_backend_fixtures

    return make_backend_fixtures(tmp_path_factory.mktemp("backend"))


def _scene(index: int) -> np.ndarray:
    """Frame `index` of a clip: a lit gradient with a bright box sliding right, RGB uint8."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    rgb = np.stack([40 + 100 * y / HEIGHT, 60 + 80 * x / WIDTH, 90 + 0 * x], -1)
    rgb[16:44, 8 + 4 * index:36 + 4 * index] = (230, 200, 40)
    return rgb.astype(np.uint8)


def make_video(path: Path, frames: int = FRAMES, times_ms: list[int] | None = None) -> Path:
    """An MPEG-4 video in Matroska of `_scene` frames, at 24 frames/s or at `times_ms`."""
    times_ms = times_ms or [round(i * 1000 / 24) for i in range(frames)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.time_base = stream.codec_context.time_base = fractions.Fraction(1, 1000)
        for index, pts in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(_scene(index), format="rgb24")
            frame.pts, frame.time_base = pts, stream.time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def sddr(backend, *args: str, **options) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_CACHE": backend["hf_cache"], "HF_HUB_OFFLINE": "1",
                   "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "sddr_core.cli.main", "refine", *args, "--weights",
         backend["weights"], "--predictor", "depth-anything-v2-small", "--device", "cpu"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600, **options)


def depth_frames(folder: Path) -> np.ndarray:
    """The values of a clip's numbered frames, through their sidecars (F×H×W)."""
    frames = sorted(p for p in folder.iterdir() if p.suffix in (".png", ".npy"))
    return np.stack([read_sidecar(p).values(read_depth(p)) for p in frames])


def pipeline_of(backend) -> DepthPipeline:
    """The `sddr` processes' models, in this process."""
    predictor = load_predictor("depth-anything-v2-small", device="cpu",
                               cache_dir=backend["hf_cache"])
    return DepthPipeline(load_refiner(backend["weights"], device="cpu"), predictor)


def engine(backend, frames: list[np.ndarray]) -> np.ndarray:
    """What clip mode in the library gives for `frames` with the same models, unsnapped as the
    CLI leaves a clip (a rerun restores the clip state from the frames written)."""
    return np.stack(list(pipeline_of(backend).frames(frames, snap_edges=False)))


def code_step(folder: Path) -> float:
    (_, _), (low, high) = read_sidecar(folder / "000000.png").stored
    return (high - low) / TOP


@pytest.fixture(scope="module")
def full_run(backend, tmp_path_factory) -> dict:
    """One uninterrupted run on a 12-frame video, written as frames and a depth video."""
    folder = tmp_path_factory.mktemp("full")
    video = make_video(folder / "clip.mkv", times_ms=VFR_MS)
    result = sddr(backend, str(video), "-o", str(folder / "out"), "--depth-video",
                  str(folder / "depth.mkv"))
    return {"result": result, "video": video, "out": folder / "out",
            "depth_video": folder / "depth.mkv"}


def test_a_video_becomes_numbered_16_bit_frames_and_a_lossless_depth_video(full_run):
    """At a variable frame rate: frames in decode order, the timestamps kept in the clip
    record and the depth video."""
    result, out = full_run["result"], full_run["out"]
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{i:06d}.png" for i in range(FRAMES)]
                           + [f"{i:06d}.png.sddr.json" for i in range(FRAMES)]
                           + ["clip.sddr.json"])
    assert cv2.imread(str(out / "000000.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert f"{FRAMES}/{FRAMES}" in result.stderr  # the progress bar counts frames
    record = json.loads((out / "clip.sddr.json").read_text())
    with av.open(str(full_run["video"])) as container:
        source_times = [frame.time for frame in container.decode(video=0)]
    assert source_times == pytest.approx([t / 1000 for t in VFR_MS])
    assert record["times"] == pytest.approx(source_times) and record["damaged"] is None
    # the depth video holds exactly the frames' codes, at the source's times
    with av.open(str(full_run["depth_video"])) as container:
        decoded = [(f.time, f.to_ndarray(format="gray16le")) for f in container.decode(video=0)]
    pngs = [cv2.imread(str(out / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED) for i in range(FRAMES)]
    assert [t for t, _ in decoded] == pytest.approx(source_times)
    assert all(np.array_equal(codes, png) for (_, codes), png in zip(decoded, pngs, strict=True))
    assert read_sidecar(full_run["depth_video"]).stored == read_sidecar(out / "000000.png").stored


def test_the_video_is_refined_in_clip_mode_with_one_code_range(full_run, backend):
    with av.open(str(full_run["video"])) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    expected = engine(backend, frames)
    written = depth_frames(full_run["out"])
    # 16-bit codes on the clip's range: half a code step of error at most
    assert np.abs(written - expected).max() <= 0.5 * code_step(full_run["out"]) * 1.001
    stored = {read_sidecar(full_run["out"] / f"{i:06d}.png").stored for i in range(FRAMES)}
    assert len(stored) == 1


def test_a_folder_of_numbered_frames_is_one_clip_in_numeric_order(backend, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(FRAMES):  # f9 before f10: numbers, not names, give the order
        cv2.imwrite(str(folder / f"f{index + 1}.png"), _scene(index)[..., ::-1])
    result = sddr(backend, str(folder), "--clip", "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    expected = engine(backend, [_scene(i) for i in range(FRAMES)])
    assert np.abs(depth_frames(tmp_path / "out") - expected).max() <= (
        0.5 * code_step(tmp_path / "out") * 1.001)


def cut_video(video: Path, cut: Path) -> Path:
    """`video` cut in the middle of its packets (its header is most of a tiny video)."""
    with av.open(str(video)) as container:
        positions = [packet.pos for packet in container.demux(video=0) if packet.size]
    cut.write_bytes(video.read_bytes()[: positions[len(positions) // 2] + 8])
    return cut


def test_a_truncated_video_keeps_the_frames_before_the_damage(full_run, backend, tmp_path):
    cut = cut_video(full_run["video"], tmp_path / "cut.mkv")
    result = sddr(backend, str(cut), "-o", str(tmp_path / "out"))
    kept = sorted((tmp_path / "out").glob("*.png"))
    assert result.returncode == 1, result.stderr
    assert 0 < len(kept) < FRAMES
    assert (f"sddr: error: video '{cut}' ends at frame {len(kept)} before its stated end"
            in result.stderr)
    # clip mode looks only back: the kept frames are the uninterrupted run's
    np.testing.assert_array_equal(depth_frames(tmp_path / "out"),
                                  depth_frames(full_run["out"])[: len(kept)])


def test_a_frame_of_another_size_is_refused_naming_its_file(backend, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(4):
        cv2.imwrite(str(folder / f"{index:03}.png"), _scene(index))
    odd = folder / "004.png"
    cv2.imwrite(str(odd), cv2.resize(_scene(4), (WIDTH // 2, HEIGHT // 2)))
    result = sddr(backend, str(folder), "--clip", "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert (f"frame '{odd}' is {WIDTH // 2}×{HEIGHT // 2}, but the clip's frames are "
            f"{WIDTH}×{HEIGHT}") in result.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 4


def test_ctrl_c_keeps_whole_frames_and_a_rerun_continues_the_clip(backend, tmp_path):
    """SIGINT after a few frames; the rerun skips them and restores the clip state from the
    last one. Through 16-bit codes that state is off by at most half a code step, and the
    blend weighs it by at most `HOLD` < 1 from frame to frame, so the rerun's frames stay
    within a code step of the uninterrupted run's (plus rounding to codes: 2 steps)."""
    frames = 24
    video = make_video(tmp_path / "long.mkv", frames)
    whole = sddr(backend, str(video), "-o", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "out"
    environment = {**os.environ, "HF_HUB_CACHE": backend["hf_cache"], "HF_HUB_OFFLINE": "1",
                   "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "sddr_core.cli.main", "refine", str(video), "-o",
               str(out), "--weights", backend["weights"], "--device", "cpu"]
    with subprocess.Popen(command, cwd=ROOT, env=environment, stderr=subprocess.PIPE,
                          text=True, preexec_fn=lambda: signal.signal(
                              signal.SIGINT, signal.SIG_DFL)) as process:
        deadline = time.monotonic() + 300
        while len(list(out.glob("*.png.sddr.json"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGINT)
        stderr = process.stderr.read()
    assert process.returncode == 130, stderr
    kept = sorted(out.glob("*.png"))
    assert 3 <= len(kept) < frames, "the run finished before the signal"
    for path in kept:  # every file is a whole frame: no temporary file, each one readable
        assert read_depth(path).shape == (HEIGHT, WIDTH)
    assert not list(out.glob(".*tmp*"))
    finished = len(list(out.glob("*.png.sddr.json")))
    assert f"sddr: {finished} frames are in '{out}'; run the same command again" in stderr
    assert json.loads((out / "clip.sddr.json").read_text())["frames"] == finished
    rerun = sddr(backend, str(video), "-o", str(out))
    assert rerun.returncode == 0, rerun.stderr
    difference = np.abs(depth_frames(out) - depth_frames(tmp_path / "whole")).max()
    assert difference <= 2 * code_step(out), difference / code_step(out)


def test_a_one_frame_clip_is_per_frame_refinement(backend, tmp_path):
    video = make_video(tmp_path / "one.mkv", 1)
    result = sddr(backend, str(video), "-o", str(tmp_path / "out"), "--format", "npy")
    assert result.returncode == 0, result.stderr
    with av.open(str(video)) as container:
        (frame,) = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    np.testing.assert_allclose(read_depth(tmp_path / "out" / "000000.npy"),
                               pipeline_of(backend)(frame),
                               rtol=1e-5, atol=1e-6)


def test_depth_clips_as_low_and_high_videos(full_run, weights, tmp_path, capsys):
    """Pair mode: the depth video written above as both inputs, like a --low/--high pair."""
    depth = str(full_run["depth_video"])
    assert main(["refine", "--low", depth, "--high", depth, "-o", str(tmp_path / "out"),
                 "--weights", weights, "--device", "cpu"]) == 0
    assert len(list((tmp_path / "out").glob("*.png"))) == FRAMES
    assert read_sidecar(tmp_path / "out" / "000000.png").kind is None  # sddr is not told


def test_a_rerun_with_other_settings_is_refused_before_the_models_load(
        full_run, weights, tmp_path, capsys, monkeypatch):
    depth, out = str(full_run["depth_video"]), tmp_path / "out"
    pair = ["refine", "--low", depth, "--high", depth, "-o", str(out), "--weights", weights]
    assert main([*pair, "--format", "npy"]) == 0
    loads = []
    monkeypatch.setattr("sddr_core.cli.main.load_refiner", lambda *a, **o: loads.append(a))
    assert main(pair) == 2
    assert (f"output folder '{out}' holds a clip refined with other settings (format differ)"
            in capsys.readouterr().err)
    assert loads == []


def test_without_pyav_the_error_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    video = make_video(tmp_path / "clip.mkv", 2)
    monkeypatch.setitem(sys.modules, "av", None)  # import av now fails
    assert main(["refine", str(video), "-o", str(tmp_path / "out")]) == 2
    assert 'needs PyAV, the \'video\' extra: pip install "sddr[video]"' in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--mode", "two-stage"], "--mode two-stage is not available for a clip"),
    (["--snap-edges"], "--snap-edges is not available for a clip: a rerun continues"),
    (["--format", "png8"], "--format png8: a clip's frames are written as png16"),
    (["--depth-video", "d.mp4"], "must be a .mkv file"),
])
def test_bad_clip_arguments_are_refused_before_any_model_loads(tmp_path, capsys, args,
                                                               message):
    video = make_video(tmp_path / "clip.mkv", 2)
    assert main(["refine", str(video), "-o", str(tmp_path / "out"), *args]) == 2
    assert message in capsys.readouterr().err


def test_a_resolution_cap_for_depth_clips_is_refused(tmp_path, capsys):
    video = make_video(tmp_path / "clip.mkv", 2)
    assert main(["refine", "--low", str(video), "--high", str(video), "-o",
                 str(tmp_path / "out"), "--resolution-cap", "1"]) == 2
    assert "--resolution-cap is for photos" in capsys.readouterr().err


def test_ray_for_a_clip_is_refused_before_any_model_loads_without_ray_or_with_depth_clips(
        tmp_path, capsys, monkeypatch):
    video = str(make_video(tmp_path / "clip.mkv", 2))
    out = tmp_path / "out"
    assert main(["refine", "--low", video, "--high", video, "-o", str(out), "--engine",
                 "ray"]) == 2
    assert "--low/--high clips have none (refine them without it)" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    assert main(["refine", video, "-o", str(out), "--engine", "ray"]) == 2
    assert "--engine ray needs the 'distributed' extra (Ray)" in capsys.readouterr().err
    assert not out.exists()


def test_depth_video_round_trips_16_bit_codes_exactly(tmp_path):
    rng = np.random.default_rng(0)
    codes = [rng.integers(0, TOP + 1, (HEIGHT, WIDTH), dtype=np.uint16) for _ in range(3)]
    with DepthVideoWriter(tmp_path / "d.mkv") as writer:
        for index, frame in enumerate(codes):
            writer.write(frame, index, None)
    read = [frame.data for frame in read_video(tmp_path / "d.mkv", depth=True)]
    assert all(np.array_equal(a, b) for a, b in zip(codes, read, strict=True))


def test_clip_codes_clip_and_count_values_outside_the_range():
    codes = ClipCodes.around(np.array([[1.0, 3.0]]))  # 1..3 widened by half: 0..4
    stored, clipped = codes.codes(np.array([[-1.0, 0.0, 2.0, 4.0, 5.0, np.nan]]))
    assert stored.tolist() == [[0, 0, round(TOP / 2), TOP, TOP, 0]] and clipped == 2
    assert codes.values(stored)[0, 2] == pytest.approx(2.0, abs=4 / TOP)


def test_a_failed_video_write_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError), DepthVideoWriter(tmp_path / "d.mkv") as writer:
        writer.write(np.zeros((8, 8), np.uint16), 0, None)
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_without_frames_or_frame_numbers_is_refused(tmp_path):
    with pytest.raises(InputError, match="holds no frames"):
        next(read_clip(tmp_path))
    (tmp_path / "cover.png").write_bytes(b"")
    with pytest.raises(InputError, match="frame '.*cover.png' has no number in its name"):
        next(read_clip(tmp_path))
    with pytest.raises(InputError, match="not a video file"):
        read_clip(tmp_path / "cover.png")


def test_reading_a_truncated_video_raises_after_its_good_frames(tmp_path):
    cut_video(make_video(tmp_path / "clip.mkv"), tmp_path / "cut.mkv")
    read = []
    with pytest.raises(DamagedClip) as error:
        for frame in read_video(tmp_path / "cut.mkv"):
            read.append(frame.index)
    assert read == list(range(len(read))) and 0 < len(read) < FRAMES
    assert error.value.index == len(read)


def test_memory_does_not_grow_with_clip_length(tmp_path):
    """The CLI's loop (clip mode, codes, frame writer) keeps no frame: 36 frames at 384²
    raise peak memory by less than 20 frames' worth over 6 frames (keeping each frame's
    inputs, output and codes would add over 70)."""
    torch.manual_seed(0)
    refiner = Refiner(RefinementNetwork(TINY), device="cpu", max_side=TINY_MAX_SIDE)
    y, x = np.mgrid[0:384, 0:384].astype(np.float32)
    truth = 0.2 + 0.3 * y / 384 + 0.1 * x / 384

    def frames(count: int):
        for index in range(count):
            high = truth * (1 + 0.001 * index)
            yield Frame(index, None, (cv2.resize(high, (96, 96)), high), f"frame {index}")

    def run(count: int) -> int:
        output = ClipOutput(tmp_path / str(count), "png16", None, None, None, "test")
        run_clip(frames(count), lambda f, s: next(refiner.refine_clip([f.data], state=s)),
                 output, settings={}, total=count, rate=None, device=refiner.device,
                 label="memory")
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    warm = run(6)
    grown = run(36)
    assert len(list((tmp_path / "36").glob("*.png"))) == 36
    assert grown - warm < 20 * truth.nbytes // 1024


def test_bench_clip_reports_frames_per_second_and_the_ratio(capsys):
    assert main(["bench", "--clip", "--heights", "48", "--repeats", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (row,) = report["sizes"]
    assert (row["height"], row["width"]) == (48, 85)
    assert row["per_frame_fps"] == pytest.approx(1 / row["per_frame_seconds"])
    assert row["clip_fps"] == pytest.approx(1 / row["clip_seconds"])
    assert row["ratio_clip_to_per_frame"] == pytest.approx(
        row["clip_seconds"] / row["per_frame_seconds"])
    assert 0 < row["clip_fastest_seconds"] <= row["clip_seconds"]
    assert row["ratio_fastest"] == pytest.approx(
        row["clip_fastest_seconds"] / row["per_frame_fastest_seconds"])
