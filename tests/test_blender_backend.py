"""The add-on's refinement backend (blender_addon/backend.py + worker.py) end to end: the real
worker in a real subprocess of this Python, running sddr with a tiny refiner and a tiny Depth
Anything predictor from an offline Hugging Face cache. No Blender needed.

`make_backend_fixtures` is also what tests/test_blender_addon.py runs (through this Python) to
give the bpy tests the same tiny backend.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blender_addon.backend import (
    BackendError,
    Job,
    check_backend,
    frames_command,
    refine_command,
    refine_result,
    video_command,
)

PREDICTOR = "depth-anything-v2-small"


def make_backend_fixtures(folder: str | os.PathLike) -> dict[str, str]:
    """Tiny refiner weights, an offline HF cache holding a tiny predictor at its pinned revision,
    and a 64×48 photo, in `folder`; returns their paths (and the cache) by name."""
    import cv2
    import torch

    from sddr_core.inference.refiner import Refiner
    from sddr_core.network.model import RefinementNetwork
    from tests.test_predictors import save_tiny_predictor
    from tests.tiny import TINY

    folder = Path(folder)
    torch.manual_seed(0)
    weights = folder / "tiny.safetensors"
    Refiner(RefinementNetwork(TINY), device="cpu").save(weights)
    cache = folder / "hub"
    save_tiny_predictor(cache, PREDICTOR)
    photo = folder / "photo.png"
    cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8))
    return {"weights": str(weights), "hf_cache": str(cache), "photo": str(photo)}


@pytest.fixture(scope="module")
def backend(tmp_path_factory) -> dict[str, str]:
    pytest.importorskip("transformers")
    return make_backend_fixtures(tmp_path_factory.mktemp("backend"))


@pytest.fixture(autouse=True)
def offline_cache(backend, monkeypatch):
    """The worker inherits this environment: the tiny predictor's cache, and no network."""
    monkeypatch.setenv("HF_HUB_CACHE", backend["hf_cache"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _refine(backend, output: Path, **options) -> Job:
    settings = {"mode": "one-stage", "steps": 3, "weights": backend["weights"],
                "predictor": PREDICTOR, "device": "cpu", **options}
    return Job(refine_command(sys.executable, backend["photo"], str(output), **settings))


@pytest.mark.parametrize("online", [True, False])
def test_check_reports_sddr_torch_device_and_cached_weights(online):
    import torch

    import sddr_core

    summary = check_backend(sys.executable, PREDICTOR, online=online)
    assert summary.startswith(f"sddr {sddr_core.__version__}, torch {torch.__version__}, "
                              "device c")  # cpu or cuda
    assert summary.endswith(f"{PREDICTOR} weights cached ({sys.executable})")


def test_check_without_cached_weights_offline_names_blenders_setting_and_the_command():
    from sddr_core.predictors import fetch_command

    with pytest.raises(BackendError, match="cannot run Estimate & Refine") as info:
        check_backend(sys.executable, "depth-anything-v2-base", online=False)
    message = str(info.value)
    assert "Allow Online Access (Edit › Preferences › System › Network) is off" in message
    assert message.endswith(fetch_command("depth-anything-v2-base"))
    assert "HF_HUB_OFFLINE" not in message and "'predictors' extra" not in message


def test_check_without_cached_weights_online_says_they_will_download():
    summary = check_backend(sys.executable, "depth-anything-v2-base", online=True)
    assert summary.endswith("depth-anything-v2-base weights not cached yet: the first "
                            f"Estimate & Refine downloads them ({sys.executable})")


def _python_without_transformers(tmp_path: Path) -> str:
    """This Python, with `import transformers` failing as where the extra is not installed."""
    script = tmp_path / "python"
    script.write_text(f"""#!/bin/sh
exec "{sys.executable}" -c 'import runpy, sys
sys.modules["transformers"] = None
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")' "$@"
""")
    script.chmod(0o755)
    return str(script)


def test_check_names_a_missing_predictors_extra_with_the_checkout_install(tmp_path):
    import sddr_core

    checkout = Path(sddr_core.__file__).resolve().parents[1]
    with pytest.raises(BackendError, match="'predictors' extra \\(transformers\\) is not "
                                          "installed") as info:
        check_backend(_python_without_transformers(tmp_path), PREDICTOR, online=True)
    assert f"-m pip install -e '{checkout}[predictors]'" in str(info.value)


def test_refine_offline_without_weights_names_blenders_setting(backend, tmp_path):
    job = Job(refine_command(sys.executable, backend["photo"], str(tmp_path / "out.exr"),
                             mode="one-stage", steps=1, weights=backend["weights"],
                             predictor="depth-anything-v2-base", device="cpu"), online=False)
    with pytest.raises(BackendError) as info:
        job.wait(timeout=120)
    message = str(info.value)
    assert message.startswith("the weights of predictor depth-anything-v2-base are not in "
                              "the Hugging Face cache, and Blender's Allow Online Access")
    assert "hf download depth-anything/Depth-Anything-V2-Base-hf --revision" in message
    assert "HF_HUB_OFFLINE" not in message


@pytest.mark.parametrize("mode, steps, passes", [("one-stage", 3, 1), ("two-stage", 1, 1 + 4)])
def test_refine_writes_the_depth_file_and_streams_progress(backend, tmp_path, mode, steps,
                                                           passes):
    from sddr_core.files.depth_io import read_depth

    events = []
    output = tmp_path / "out" / "photo.exr"
    job = _refine(backend, output, mode=mode, steps=steps)
    result = refine_result(job.wait(on_event=events.append))
    assert result.path == output and (result.width, result.height) == (64, 48)
    assert result.polarity == "disparity"
    depth = read_depth(output)
    assert depth.shape == (48, 64) and np.isfinite(depth).all()
    done = [e["done"] for e in events if e["event"] == "progress"]
    assert done[0] == 0 and done[-1] == passes and done == sorted(done)
    assert {e["total"] for e in events if e["event"] == "progress"} == {passes}


def test_snap_edges_is_on_unless_switched_off(backend, tmp_path):
    from sddr_core.files.depth_io import read_depth

    options = {"mode": "one-stage", "steps": 1, "weights": "w", "predictor": "p",
               "device": "cpu"}
    assert "--no-snap-edges" not in refine_command(sys.executable, "a.png", "a.exr", **options)
    command = refine_command(sys.executable, "a.png", "a.exr", snap_edges=False, **options)
    assert command[-1] == "--no-snap-edges"
    output = tmp_path / "unsnapped.exr"
    result = refine_result(_refine(backend, output, snap_edges=False).wait())
    assert result.path == output and np.isfinite(read_depth(output)).all()


def _photo_frames(folder: Path, count: int, size=(48, 64)) -> list[str]:
    """A camera panning over one random picture, one frame per pixel."""
    import cv2

    folder.mkdir()
    picture = np.random.default_rng(1).integers(0, 256, (size[0], size[1] + count, 3), np.uint8)
    for frame in range(count):
        cv2.imwrite(str(folder / f"f_{frame + 1:03d}.png"), picture[:, frame:frame + size[1]])
    return [str(folder / f"f_{frame + 1:03d}.png") for frame in range(count)]


def _frames(backend, photos: list[str], folder: Path) -> Job:
    return Job(frames_command(sys.executable, photos, str(folder), weights=backend["weights"],
                              predictor=PREDICTOR, device="cpu"))


def test_frames_are_refined_as_one_clip_with_progress_per_frame(backend, tmp_path):
    """The depth frames are the clip mode's (`DepthPipeline.frames`), not per-frame
    refinement's, to the 16-bit PNG's precision, each with a sidecar."""
    from sddr_core import DepthPipeline, load_refiner
    from sddr_core.files.depth_io import read_depth, read_image
    from sddr_core.files.depth_meaning import read_sidecar
    from sddr_core.predictors import load_predictor

    photos = _photo_frames(tmp_path / "photos", 4)
    events = []
    outcome = _frames(backend, photos, tmp_path / "depth").wait(on_event=events.append)
    files = [tmp_path / "depth" / f"f_{frame:03d}.png" for frame in range(1, 5)]
    assert outcome["files"] == [str(f) for f in files]
    assert refine_result(outcome).path == files[0]
    assert [(e["done"], e["total"]) for e in events if e["event"] == "progress"] == [
        (done, 4) for done in range(5)]
    pipeline = DepthPipeline(load_refiner(backend["weights"], device="cpu"),
                             load_predictor(PREDICTOR, device="cpu",
                                            cache_dir=backend["hf_cache"]))
    images = [read_image(p) for p in photos]
    clip = list(pipeline.frames(images, snap_edges=True))  # the worker's default
    for file, expected in zip(files, clip, strict=True):
        meaning = read_sidecar(file)
        depth = meaning.values(read_depth(file))
        assert meaning.kind == "disparity"
        assert np.abs(depth - expected).max() <= np.ptp(expected) / 65535
    alone = pipeline(images[-1], snap_edges=True)  # per-frame refinement of the last frame
    assert np.abs(clip[-1] - alone).max() > np.ptp(alone) / 100  # the clip mode's own result


def test_cancelled_frames_leave_the_frames_before_complete(backend, tmp_path):
    from sddr_core.files.depth_io import read_depth

    photos = _photo_frames(tmp_path / "photos", 40)
    job = _frames(backend, photos, tmp_path / "depth")
    _first_pass(job)
    job.cancel()
    assert job.process.returncode == 143
    written = sorted((tmp_path / "depth").iterdir())
    names = [p.name for p in written if not p.name.endswith(".sddr.json")]
    assert 1 <= len(names) < 40 and names == [f"f_{f:03d}.png" for f in range(1, len(names) + 1)]
    assert all(read_depth(p).shape == (48, 64) for p in written if p.suffix == ".png")
    assert all(p.name.startswith("f_") for p in written)  # no temporary file left


def test_a_frame_of_another_size_is_refused_naming_it(backend, tmp_path):
    photos = _photo_frames(tmp_path / "photos", 3)
    photos.append(_photo_frames(tmp_path / "other", 1, size=(40, 64))[0])
    with pytest.raises(BackendError, match=r"photo frame '.*other/f_001.png' is 64×40 but "
                                           r"'.*photos/f_001.png' is 64×48"):
        _frames(backend, photos, tmp_path / "depth").wait()


def _video(backend, video: Path, folder: Path) -> Job:
    return Job(video_command(sys.executable, str(video), str(folder), weights=backend["weights"],
                             predictor=PREDICTOR, device="cpu"))


def test_a_video_is_refined_as_one_clip_beside_its_decoded_frames(backend, tmp_path):
    """Depth frames numbered from 1 after the video's name, each decoded frame kept as the
    mesh's texture, and the depth the clip mode gives those very pixels."""
    pytest.importorskip("av")
    from sddr_core import DepthPipeline, load_refiner
    from sddr_core.files.depth_io import read_depth, read_image
    from sddr_core.files.depth_meaning import read_sidecar
    from sddr_core.files.video import read_clip
    from sddr_core.predictors import load_predictor
    from tests.test_video_cli import make_video

    video = make_video(tmp_path / "walk.mkv", frames=5)
    events = []
    outcome = _video(backend, video, tmp_path / "depth").wait(on_event=events.append)
    files = [tmp_path / "depth" / f"walk_{frame:06d}.png" for frame in range(1, 6)]
    photos = [tmp_path / "depth" / "photos" / f.name for f in files]
    assert outcome["files"] == [str(f) for f in files]
    assert outcome["photos"] == [str(p) for p in photos]
    assert [(e["done"], e["total"]) for e in events if e["event"] == "progress"] == [
        (done, 5) for done in range(6)]
    decoded = [frame.data for frame in read_clip(video)]
    for photo, frame in zip(photos, decoded, strict=True):
        np.testing.assert_array_equal(read_image(photo), frame)  # lossless: what was refined
    pipeline = DepthPipeline(load_refiner(backend["weights"], device="cpu"),
                             load_predictor(PREDICTOR, device="cpu",
                                            cache_dir=backend["hf_cache"]))
    for file, expected in zip(files, pipeline.frames(decoded), strict=True):
        depth = read_sidecar(file).values(read_depth(file))
        assert np.abs(depth - expected).max() <= np.ptp(expected) / 65535


def test_a_damaged_video_keeps_the_frames_before_the_damage_and_warns(backend, tmp_path):
    pytest.importorskip("av")
    from tests.test_video_cli import cut_video, make_video

    cut = cut_video(make_video(tmp_path / "walk.mkv", frames=12), tmp_path / "cut.mkv")
    events = []
    outcome = _video(backend, cut, tmp_path / "depth").wait(on_event=events.append)
    kept = sorted((tmp_path / "depth").glob("cut_*.png"))
    assert 0 < len(outcome["files"]) == len(kept) == len(outcome["photos"]) < 12
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert any(f"video '{cut}' ends at frame {len(kept)}" in w and
               f"the {len(kept)} frames before it are refined" in w for w in warnings)


def test_a_file_that_is_no_video_is_refused_naming_it(backend, tmp_path):
    pytest.importorskip("av")
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(b"not a video")
    with pytest.raises(BackendError, match=f"'{fake}'"):
        _video(backend, fake, tmp_path / "depth").wait()
    assert not list((tmp_path / "depth").glob("*.png"))


def _first_pass(job: Job) -> None:
    """Wait until the worker has finished at least one network pass."""
    for event in iter(job.events.get, None):
        if event["event"] == "progress" and event["done"] >= 1:
            return
        if event["event"] in ("error", "done"):
            pytest.fail(f"the worker ended early: {event}")


def test_cancel_stops_the_worker_and_leaves_no_file(backend, tmp_path):
    output = tmp_path / "cancelled.exr"
    job = _refine(backend, output, mode="two-stage", steps=8)
    _first_pass(job)
    job.cancel()
    assert not job.running and job.process.returncode == 143
    with pytest.raises(BackendError, match="cancelled"):
        job.outcome()
    assert list(tmp_path.iterdir()) == []


def test_a_crashed_worker_is_reported_and_leaves_no_file(backend, tmp_path):
    output = tmp_path / "crashed.exr"
    job = _refine(backend, output, mode="two-stage", steps=8)
    _first_pass(job)
    os.kill(job.process.pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    with pytest.raises(BackendError, match="killed by signal SIGKILL before finishing"):
        job.wait(timeout=30)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("problem, message", [
    ("steps", "--steps 60: choose 1..8"),
    ("photo", "cannot read photo|not an image|image"),
    ("weights", "missing.safetensors"),
    ("predictor", "not known; known predictors"),
])
def test_sddr_errors_come_back_as_the_message(backend, tmp_path, problem, message):
    bad = {"photo": {}, "steps": {"mode": "two-stage", "steps": 60},
           "weights": {"weights": str(tmp_path / "missing.safetensors")},
           "predictor": {"predictor": "no-such-model"}}[problem]
    if problem == "photo":
        (tmp_path / "notes.png").write_text("not a picture")
        backend = {**backend, "photo": str(tmp_path / "notes.png")}
    with pytest.raises(BackendError, match=message):
        _refine(backend, tmp_path / "out.exr", **bad).wait(timeout=120)
    assert not (tmp_path / "out.exr").exists()


@pytest.mark.parametrize("link", ["same path", "hard link", "symbolic link"])
def test_an_output_that_is_the_photo_is_refused_and_the_photo_kept(backend, tmp_path, link):
    """`worker.py refine PHOTO PHOTO` once replaced the photo with the EXR's bytes."""
    photo = tmp_path / "photo.png"
    photo.write_bytes(Path(backend["photo"]).read_bytes())
    output = tmp_path / "result.png"
    {"same path": lambda: None, "hard link": lambda: output.hardlink_to(photo),
     "symbolic link": lambda: output.symlink_to(photo)}[link]()
    target = photo if link == "same path" else output
    with pytest.raises(BackendError, match=f"output '{target}' is the photo itself"):
        _refine({**backend, "photo": str(photo)}, target).wait(timeout=120)
    assert photo.read_bytes() == Path(backend["photo"]).read_bytes()
    assert set(tmp_path.iterdir()) == {photo, target}  # no temporary file left either


@pytest.mark.parametrize("event, message", [
    ({"event": "done"}, "malformed \\(KeyError\\('path'\\)\\)"),
    ({"event": "done", "path": "d.exr", "width": "wide", "height": 2, "polarity": "disparity"},
     "malformed .*invalid literal"),
    ({"event": "done", "path": None, "width": 2, "height": 2, "polarity": "disparity"},
     "malformed .*TypeError"),
    ({"event": "done", "path": "d.exr", "width": 0, "height": 2, "polarity": "disparity"},
     "has size 0×2"),
])
def test_a_malformed_done_event_is_a_backend_error(event, message):
    """It was a raw KeyError/ValueError from inside the operator."""
    with pytest.raises(BackendError, match=message):
        refine_result(event)


def test_a_python_without_sddr_is_named(tmp_path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")],
                   check=True)
    bare = tmp_path / "bare" / "bin" / "python"
    with pytest.raises(BackendError, match=f"this Python .*{bare}.* cannot import sddr") as info:
        check_backend(str(bare), PREDICTOR, online=True)
    assert "pip install torch==2.13.0 -e '/path/to/sddr[predictors]'" in str(info.value)
    assert "pip install sddr" not in str(info.value)


@pytest.mark.parametrize("python, message", [
    ("", "no external Python set"),
    ("/nonexistent/python3", "does not exist"),
    (__file__, "not executable"),
])
def test_an_unusable_python_path_is_refused_before_starting(python, message):
    with pytest.raises(BackendError, match=message):
        check_backend(python, PREDICTOR, online=True)


def test_a_silent_crash_says_so(tmp_path):
    script = tmp_path / "python"
    script.write_text("#!/bin/sh\nexit 3\n")
    script.chmod(0o755)
    with pytest.raises(BackendError, match="exited with status 3 .*printed nothing"):
        check_backend(str(script), PREDICTOR, online=True)
