"""The ComfyUI nodes run directly (`define_schema`, `execute`) on small tensors with a tiny
model, against stand-in ComfyUI modules (tests/comfy_stand_ins.py) where ComfyUI is absent.
tests/test_comfyui_real.py runs the same nodes inside a real ComfyUI."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sddr_core import InputError, SddrError, WeightsError
from sddr_core.cli.demo import sample_inputs
from sddr_core.files.depth_io import read_depth, write_depth
from sddr_core.inference.windows import passes
from sddr_core.maps.resample import resize_maps
from sddr_core.predictors import fetch_command, load_predictor
from tests import comfy_stand_ins
from tests.comfyui_clip_memory import STEADY_MALLOC

if not comfy_stand_ins.install():
    pytest.skip("ComfyUI's own comfy_api is importable here: the nodes are tested against "
                "it by tests/test_comfyui_real.py", allow_module_level=True)

nodes = importlib.import_module("comfyui_nodes.nodes")
models = importlib.import_module("comfyui_nodes.models")

REPO = Path(__file__).resolve().parent.parent
NODE_IDS = ("SDDRLoadRefiner", "SDDRRefineDepth", "SDDRDepthFromImage", "SDDRDepthEdges",
            "SDDRSaveDepth", "SDDRLoadDepth")


@pytest.fixture
def comfy(tmp_path, weights):
    """Stand-ins over a fresh ComfyUI base folder whose models/sddr holds the tiny model."""
    comfy_stand_ins.folder_paths.use(tmp_path)
    comfy_stand_ins.management.reset()
    comfy_stand_ins.ProgressBar.seen.clear()
    comfy_stand_ins.PromptServer.texts.clear()
    (tmp_path / "models" / "sddr").mkdir(parents=True)
    shutil.copy(weights, tmp_path / "models" / "sddr" / "tiny.safetensors")
    return comfy_stand_ins


@pytest.fixture
def refiner(comfy):
    return nodes.SDDRLoadRefiner.execute("tiny.safetensors", "auto", "fp32", 256).result[0]


@pytest.fixture
def passthrough(refiner, monkeypatch):
    """The refiner with N_r replaced by its high input at the output size: the tiny network
    is random (its outputs follow no scene), so tests of what the nodes do with the
    refined depth (polarity, normalisation) use this."""
    def refine(low, high, out_size=None):
        high = torch.as_tensor(high, dtype=torch.float32)
        return resize_maps(high if high.ndim == 3 else high[None], out_size)

    monkeypatch.setattr(refiner.refiner, "refine", refine)
    return refiner


@pytest.fixture
def predictor(monkeypatch):
    """A stand-in Depth Anything in the predictor cache: near = bright, like the real one."""
    def predict(image: np.ndarray, resolution: int) -> np.ndarray:
        height, width = image.shape[:2]
        scale = resolution / max(height, width)
        size = (max(8, round(height * scale)), max(8, round(width * scale)))
        gray = torch.from_numpy(image.mean(axis=-1).astype(np.float32))[None, None]
        return torch.nn.functional.interpolate(gray, size=size, mode="area")[0, 0].numpy()

    fake = load_predictor(predict)
    monkeypatch.setitem(models._predictors, ("depth-anything-v2-small", "cpu"), (fake, []))
    return fake


def scene(height: int, width: int, frames: int = 1, near_bright: bool = True) -> torch.Tensor:
    """B×H×W×3 depth IMAGE: a floor getting nearer towards the bottom and a near box."""
    rows = torch.linspace(0.1, 0.7, height)[:, None].expand(height, width).clone()
    rows[height // 4: height // 2, width // 3: 2 * width // 3] = 0.9
    depth = rows if near_bright else 1.0 - rows
    return depth[None, ..., None].expand(frames, -1, -1, 3).contiguous()


def photo(height: int, width: int, frames: int = 1) -> torch.Tensor:
    """B×H×W×3 IMAGE whose brightness is the near-bright scene (what the stand-in predicts)."""
    return scene(height, width, frames)


def refine(refiner, low, high, **options):
    settings = {"width": 0, "height": 0, "normalisation": "per frame",
                "input_polarity": "auto"} | options
    return nodes.SDDRRefineDepth.execute(refiner, low, high, **settings).result


def bottom_minus_top(image: torch.Tensor) -> float:
    band = image.shape[1] // 5
    return float(image[:, -band:].mean() - image[:, :band].mean())


# ------------------------------------------------------------------------------- schema

def test_entrypoint_of_the_repository_root_lists_the_six_nodes(comfy, tmp_path, monkeypatch):
    """The root __init__.py loaded as ComfyUI loads a custom-node folder; loading it puts the
    sample scene into the input folder."""
    spec = importlib.util.spec_from_file_location(
        "sddr_pack_under_test", REPO / "__init__.py", submodule_search_locations=[str(REPO)])
    pack = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, pack)
    spec.loader.exec_module(pack)
    assert not hasattr(pack, "NODE_CLASS_MAPPINGS")
    extension = asyncio.run(pack.comfy_entrypoint())
    listed = asyncio.run(extension.get_node_list())
    assert tuple(node.define_schema().node_id for node in listed) == NODE_IDS
    assert sorted(path.name for path in (tmp_path / "input").iterdir()) == \
        ["sddr_sample_high.png", "sddr_sample_low.png", "sddr_sample_photo.png",
         "sddr_sample_video.mp4"]


def test_sample_scene_is_sddr_demos_and_never_overwrites(tmp_path, caplog):
    sample = importlib.import_module("comfyui_nodes.sample")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / sample.LOW).write_bytes(b"the user's own file")
    written = sample.install_sample_scene(tmp_path / "in")
    assert sorted(path.name for path in written) == [sample.HIGH, sample.PHOTO, sample.VIDEO]
    assert (tmp_path / "in" / sample.LOW).read_bytes() == b"the user's own file"
    assert sample.install_sample_scene(tmp_path / "in") == []
    demo = write_depth(tmp_path / "demo_high.png", sample_inputs()[2])  # as sddr demo does
    np.testing.assert_array_equal(read_depth(tmp_path / "in" / sample.HIGH), read_depth(demo))
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert sample.install_sample_scene(blocker / "input") == []
    assert "could not write the sample scene" in caplog.text


@pytest.mark.parametrize("node", nodes.NODES, ids=lambda node: node.__name__)
def test_schema_inputs_are_the_execute_parameters_and_have_tooltips(comfy, node):
    schema = node.define_schema()
    assert schema.node_id == node.__name__ and schema.node_id.startswith("SDDR")
    ids = [item.id for item in schema.inputs]
    assert ids == list(inspect.signature(node.execute).parameters)
    assert all(item.tooltip for item in schema.inputs), schema.node_id
    assert schema.category == nodes.CATEGORY


def test_loader_lists_the_default_and_the_models_folder(comfy, tmp_path):
    (tmp_path / "models" / "sddr" / "notes.txt").write_text("not weights")
    options = nodes.SDDRLoadRefiner.define_schema().inputs[0].options["options"]
    assert options == ["default", "tiny.safetensors"]
    assert nodes.SDDRLoadRefiner.define_schema().display_name == "SDDR Load Refiner"


def test_loader_hands_the_network_to_comfyui_model_management(refiner):
    assert refiner.patcher.model is refiner.refiner.network
    assert refiner.patcher.load_device == refiner.refiner.device == torch.device("cpu")
    assert refiner.refiner.max_side == 256


def test_default_weights_load(comfy):
    assert models.load("default", "cpu", "fp32", 256).name == "default"


def test_missing_and_corrupt_weights_name_the_file(comfy, tmp_path):
    with pytest.raises(WeightsError, match="'gone.safetensors'.*models"):
        models.load("gone.safetensors", "cpu", "fp32", 256)
    (tmp_path / "models" / "sddr" / "broken.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="broken.safetensors"):
        models.load("broken.safetensors", "cpu", "fp32", 256)


def test_fp16_on_the_cpu_is_refused_naming_precision(comfy):
    with pytest.raises(InputError, match="precision fp16"):
        models.load("tiny.safetensors", "cpu", "fp16", 256)


# ---------------------------------------------------------------------------- refine depth

def test_refine_depth_gives_a_float_near_bright_image_at_high_size_and_a_mask(comfy, refiner):
    depth, valid = refine(refiner, scene(40, 56), scene(80, 112))
    assert depth.shape == (1, 80, 112, 3) and depth.dtype == torch.float32
    assert float(depth.min()) == 0.0 and float(depth.max()) == 1.0
    assert torch.equal(depth[..., 0], depth[..., 2])
    assert len(torch.unique(depth)) > 256  # not quantised to 8 bits
    assert valid.shape == (1, 80, 112) and bool((valid == 1).all())
    assert comfy.management.placed[-1][0] == [refiner.patcher]
    assert comfy.ProgressBar.seen[-1] == (1, 1)


def test_mask_marks_pixels_that_were_not_finite(comfy, refiner):
    high = scene(80, 112)
    high[0, 10:20, 10:20] = float("nan")
    with pytest.warns(UserWarning, match="NaN"):
        depth, valid = refine(refiner, scene(40, 56), high)
    assert bool(torch.isfinite(depth).all())
    assert float(valid[0, 10:20, 10:20].max()) == 0.0 and float(valid[0, 40:].min()) == 1.0


@pytest.mark.parametrize(("width", "height", "expected"), [
    (64, 0, (46, 64)), (0, 40, (40, 56)), (30, 20, (20, 30)), (0, 0, (80, 112))])
def test_output_size_is_given_or_from_high_depth(comfy, refiner, width, height, expected):
    depth, valid = refine(refiner, scene(40, 56), scene(80, 112), width=width, height=height)
    assert depth.shape[1:3] == valid.shape[1:] == expected


@pytest.mark.parametrize(("given", "polarity", "bottom_brighter"), [
    (True, "near-bright", True), (False, "far-bright", True),
    (True, "auto", True), (False, "auto", True),
    (False, "near-bright", False), (True, "far-bright", False)])
def test_each_polarity_gives_near_bright_output(comfy, passthrough, given, polarity,
                                                bottom_brighter):
    """Told the truth (or left to auto), the nearer bottom comes out bright; told the
    opposite, the node believes it."""
    low, high = scene(40, 56, near_bright=given), scene(80, 112, near_bright=given)
    depth, _ = refine(passthrough, low, high, input_polarity=polarity)
    assert (bottom_minus_top(depth) > 0) == bottom_brighter


def test_whole_batch_normalisation_keeps_frames_comparable(comfy, passthrough):
    """Frame 1 spans half frame 0's depth range: per frame both fill 0..1; over the batch
    frame 1 stays darker, as a video should."""
    low, high = scene(40, 56, 2), scene(80, 112, 2)
    low[1], high[1] = low[1] * 0.5, high[1] * 0.5
    per_frame, _ = refine(passthrough, low, high, normalisation="per frame")
    batch, _ = refine(passthrough, low, high, normalisation="whole batch")
    assert [float(frame.max()) for frame in per_frame] == [1.0, 1.0]
    assert float(batch[0].max()) == 1.0 and float(batch[1].max()) < 0.75
    assert float(batch.min()) == 0.0


def test_cancel_stops_refine_depth(comfy, refiner):
    comfy.management.interrupt_after = 0
    with pytest.raises(comfy_stand_ins.InterruptProcessingException):
        refine(refiner, scene(40, 56, 3), scene(80, 112, 3))


def test_out_of_memory_halves_the_batch_then_explains(comfy, refiner, monkeypatch):
    original, batches = refiner.refiner.refine, []

    def refine_small_batches_only(low, high, out_size=None):
        batches.append(low.shape[0])
        if low.shape[0] > 1:
            raise torch.OutOfMemoryError("stand-in: out of memory")
        return original(low, high, out_size=out_size)

    monkeypatch.setattr(refiner.refiner, "refine", refine_small_batches_only)
    depth, _ = refine(refiner, scene(40, 56, 4), scene(80, 112, 4))
    assert depth.shape[0] == 4 and batches[:3] == [4, 2, 1]

    def always_out_of_memory(low, high, out_size=None):
        raise torch.OutOfMemoryError("stand-in: out of memory")

    monkeypatch.setattr(refiner.refiner, "refine", always_out_of_memory)
    with pytest.raises(SddrError, match="out of memory.*max_side"):
        refine(refiner, scene(40, 56), scene(80, 112))
    assert comfy.management.emptied == 1


@pytest.mark.parametrize(("low", "high", "message"), [
    (scene(40, 56, 2), scene(80, 112, 3), "low_depth has 2 depth map.*high_depth has 3"),
    (scene(40, 56), torch.cat([scene(80, 112), torch.ones(1, 80, 112, 1)], -1),
     "high_depth: .*4 channels"),
    (torch.rand(1, 40, 56, 3), scene(80, 112), "low_depth: .*colour"),
    (torch.full((1, 40, 56, 3), 0.5), scene(80, 112), "low_depth: frame 0 is constant"),
    (scene(40, 56), scene(80, 40), "low_depth is 40×56 and high_depth is 80×40"),
    (scene(40, 56)[:0], scene(80, 112), "low_depth: the IMAGE batch is empty"),
    (scene(40, 56), scene(80, 112)[:0], "high_depth: the IMAGE batch is empty"),
    (scene(40, 56), scene(80, 112)[0], "high_depth: expected an IMAGE"),
])
def test_bad_depth_inputs_are_refused_naming_the_input(comfy, refiner, low, high, message):
    with pytest.raises(InputError, match=message):
        refine(refiner, low, high)


def test_aspect_rule_is_the_cores_warned_pair_refined_refused_pair_named(comfy, refiner,
                                                                         monkeypatch):
    """The pairs of tests/test_refiner.py's aspect tests: a few percent apart is refined with
    the core's warning shown on the node; far apart is refused with the core's message."""
    monkeypatch.setattr(nodes.SDDRRefineDepth, "hidden", SimpleNamespace(unique_id="7"))
    result = nodes.SDDRRefineDepth.execute(refiner, scene(40, 56), scene(80, 120), 0, 0,
                                           "per frame", "auto")
    assert result.result[0].shape == (1, 80, 120, 3)
    [warning] = result.ui["text"]
    assert warning.startswith("low_depth is 40×56 and high_depth is 80×120: their aspect")
    assert warning.endswith("low_depth is resized to high_depth's aspect ratio")
    with pytest.raises(InputError, match="low_depth is 40×56 and high_depth is 80×160: their "
                       "aspect ratios differ .* by more than 10%"):
        refine(refiner, scene(40, 56), scene(80, 160))


def test_large_gray_depth_values_are_depth_not_colour(comfy, passthrough):
    """Metric depth of 1e7 and more through Load Depth raw: equal channels are gray at any
    magnitude (float32 rounding of a channel mean once took them for colour)."""
    low, high = scene(40, 56) * 3e7 + 1e7, scene(80, 112) * 3e7 + 1e7
    depth, _ = refine(passthrough, low, high, normalisation="raw")
    assert float(depth.min()) == pytest.approx(1e7 + 0.1 * 3e7, rel=1e-4)
    tinted = high.clone()
    tinted[..., 1] *= 1.2
    with pytest.raises(InputError, match="high_depth: this IMAGE is in colour"):
        refine(passthrough, low, tinted)


@pytest.mark.parametrize("node", ["SDDRDepthFromImage", "SDDRDepthEdges"])
def test_an_empty_image_batch_is_refused_naming_image(comfy, refiner, predictor, node):
    options = {"mode": "one-stage", "normalisation": "per frame"} \
        if node == "SDDRDepthFromImage" else {}
    with pytest.raises(InputError, match="image: the IMAGE batch is empty"):
        getattr(nodes, node).execute(refiner, photo(64, 96)[:0], "depth-anything-v2-small",
                                     steps=1, **options)


def test_clipped_depth_is_refined_with_a_warning_on_the_node(comfy, refiner, monkeypatch):
    """A 16-bit file through Load Image: nearly every pixel at 1.0."""
    monkeypatch.setattr(nodes.SDDRRefineDepth, "hidden", SimpleNamespace(unique_id="12"))
    clipped = torch.ones(1, 80, 112, 3)
    clipped[:, :2] = 0.5
    result = nodes.SDDRRefineDepth.execute(refiner, scene(40, 56), clipped, 0, 0, "per frame",
                                           "auto")
    [warning] = result.ui["text"]
    assert warning.startswith("high_depth: frame 0 has 97.50% of its pixels at its maximum")
    assert warning.endswith(nodes.LOAD_DEPTH_ADVICE) and "low_depth" not in warning
    assert comfy.PromptServer.texts == [("12", warning)]
    assert nodes.SDDRRefineDepth.execute(refiner, scene(40, 56), scene(80, 112), 0, 0,
                                         "per frame", "auto").ui is None
    assert len(comfy.PromptServer.texts) == 1


def test_raw_normalisation_keeps_the_low_inputs_units(comfy, passthrough):
    low, high = scene(40, 56) * 10 + 2, scene(80, 112) * 10 + 2
    depth, _ = refine(passthrough, low, high, normalisation="raw")
    assert float(depth.min()) == pytest.approx(3.0) and float(depth.max()) == pytest.approx(11.0)


def test_one_channel_depth_is_read_like_three_gray_channels(comfy, refiner):
    gray, _ = refine(refiner, scene(40, 56), scene(80, 112))
    single, _ = refine(refiner, scene(40, 56)[..., :1], scene(80, 112)[..., :1])
    assert torch.allclose(gray, single)


# ---------------------------------------------------------------------- depth from image

@pytest.mark.parametrize("mode", ["one-stage", "two-stage"])
def test_depth_from_image_gives_near_bright_depth_per_frame(comfy, passthrough, predictor,
                                                            mode):
    image = photo(64, 96, frames=2)
    (depth,) = nodes.SDDRDepthFromImage.execute(
        passthrough, image, "depth-anything-v2-small", mode, 1, "per frame").result
    assert depth.shape == (2, 64, 96, 3) and depth.dtype == torch.float32
    assert bottom_minus_top(depth) > 0
    per_frame = passes(1) if mode == "two-stage" else 1
    assert comfy.ProgressBar.seen[-1] == (2 * per_frame, 2 * per_frame)
    assert comfy.management.interrupt_checks > 0


def test_cancel_stops_two_stage_between_windows(comfy, refiner, predictor):
    comfy.management.interrupt_after = 3
    with pytest.raises(comfy_stand_ins.InterruptProcessingException):
        nodes.SDDRDepthFromImage.execute(refiner, photo(64, 96), "depth-anything-v2-small",
                                         "two-stage", 2, "per frame")
    done, total = comfy.ProgressBar.seen[-1]
    assert done < total == passes(2)


# ------------------------------------------------------------------------------ clip mode

def jittered_still_clip(frames: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) depth IMAGEs of a still scene whose every frame has its own scale and
    shift, as a depth node's per-frame normalisation gives them."""
    rng = np.random.default_rng(0)
    scales = torch.from_numpy(np.exp(rng.normal(0, 0.08, frames))).float()[:, None, None, None]
    shifts = torch.from_numpy(rng.normal(0, 0.03, frames)).float()[:, None, None, None]
    return scene(40, 56, frames) * scales + shifts, scene(80, 112, frames) * scales + shifts


def change(depth: torch.Tensor) -> float:
    """Mean |frame t+1 − frame t| of a depth IMAGE batch."""
    return float((depth[1:] - depth[:-1]).abs().mean())


def test_clip_mode_refines_a_still_batch_steadier_than_per_frame(comfy, refiner):
    low, high = jittered_still_clip()
    per_frame, _ = refine(refiner, low, high, normalisation="whole batch")
    clip, mask = refine(refiner, low, high, normalisation="whole batch", clip=True)
    assert clip.shape == per_frame.shape == (10, 80, 112, 3) and mask.shape == (10, 80, 112)
    assert float(clip.min()) == 0.0 and float(clip.max()) == 1.0
    assert change(per_frame) > 0.01
    assert change(clip) < 0.5 * change(per_frame)


def test_clip_mode_counts_progress_and_checks_cancel_per_frame(comfy, refiner):
    low, high = jittered_still_clip(4)
    refine(refiner, low, high, clip=True)
    assert comfy.ProgressBar.seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert comfy.management.interrupt_checks == 4
    assert comfy.management.placed[-1][1] == models.BYTES_PER_PIXEL * int(np.prod(
        refiner.refiner.network_input_size(80, 112)))  # one frame at a time
    comfy.ProgressBar.seen.clear()
    comfy.management.reset()
    comfy.management.interrupt_after = 2
    with pytest.raises(comfy_stand_ins.InterruptProcessingException):
        refine(refiner, low, high, clip=True)
    assert comfy.ProgressBar.seen[-1] == (2, 4)


def test_one_frame_clip_is_per_frame_refinement(comfy, refiner):
    low, high = jittered_still_clip(1)
    np.testing.assert_allclose(refine(refiner, low, high, clip=True)[0],
                               refine(refiner, low, high)[0], atol=1e-5)


def test_clip_snaps_each_frame_to_its_photo_and_needs_one_per_frame(comfy, refiner):
    low, high = jittered_still_clip(3)
    snapped, _ = refine(refiner, low, high, clip=True, image=photo(80, 112, 3))
    plain, _ = refine(refiner, low, high, clip=True)
    assert snapped.shape == plain.shape and not torch.equal(snapped, plain)
    with pytest.raises(InputError, match="image: 2 frame\\(s\\), but low_depth has 3"):
        refine(refiner, low, high, clip=True, image=photo(80, 112, 2))


def test_depth_from_image_refines_frames_as_a_clip_in_order(comfy, refiner, predictor):
    frames = photo(64, 96, frames=3) * torch.tensor([1.0, 0.9, 0.8])[:, None, None, None]
    (clip,) = nodes.SDDRDepthFromImage.execute(refiner, frames, "depth-anything-v2-small",
                                               "one-stage", 1, "raw", clip=True).result
    assert clip.shape == (3, 64, 96, 3) and bool(torch.isfinite(clip).all())
    assert comfy.ProgressBar.seen[-3:] == [(1, 3), (2, 3), (3, 3)]
    (first,) = nodes.SDDRDepthFromImage.execute(refiner, frames[:1], "depth-anything-v2-small",
                                                "one-stage", 1, "raw").result
    np.testing.assert_allclose(clip[0], first[0], atol=1e-5)  # the clip starts per frame


def test_two_stage_clip_is_refused_naming_mode(comfy, refiner, predictor):
    with pytest.raises(InputError, match="mode two-stage: clip mode refines one-stage only"):
        nodes.SDDRDepthFromImage.execute(refiner, photo(64, 96, 2), "depth-anything-v2-small",
                                         "two-stage", 1, "per frame", clip=True)


@pytest.mark.parametrize("node", ["refine", "image"])
def test_clip_mode_keeps_nothing_per_frame_but_the_output(node):
    """In a fresh process (tests/comfyui_clip_memory.py), 20 frames at 192×256: while the
    frames are refined, the resident size grows by the output IMAGE's frames and by less
    than half a depth map more per frame (keeping each refined map would add a whole one)."""
    done = subprocess.run([sys.executable, "-m", "tests.comfyui_clip_memory", node, "20"],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=os.environ | STEADY_MALLOC | {"PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["growth"] < 0.5 * measured["frame"], measured


def test_depth_edges_are_a_zero_to_one_image_at_image_size(comfy, passthrough, predictor):
    (edges,) = nodes.SDDRDepthEdges.execute(passthrough, photo(64, 96, frames=2),
                                            "depth-anything-v2-small", 1).result
    assert edges.shape == (2, 64, 96, 3)
    assert [float(frame.max()) for frame in edges] == [1.0, 1.0] and float(edges.min()) >= 0


def test_missing_predictor_offline_says_in_two_lines_what_to_fetch_where(comfy, refiner,
                                                                       monkeypatch):
    hub = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    with pytest.raises(InputError, match="depth-anything-v2-base.*sddr_predictors") as info:
        nodes.SDDRDepthFromImage.execute(refiner, photo(64, 96), "depth-anything-v2-base",
                                         "one-stage", 1, "per frame")
    what, how = str(info.value).split("\n")
    assert "Depth-Anything-V2-Base-hf" in what and "models/sddr_predictors" in what
    folder = comfy.folder_paths.get_folder_paths(models.PREDICTORS_FOLDER)[0]
    assert how.endswith(fetch_command("depth-anything-v2-base", cache_dir=folder))


# ----------------------------------------------------------------------------- save depth

@pytest.mark.parametrize("fmt", ["png16", "exr", "npy"])
def test_save_depth_writes_full_precision_files_with_a_counter(comfy, tmp_path, fmt):
    depth = torch.rand(2, 24, 32, 1).expand(-1, -1, -1, 3)
    for _ in range(2):
        output = nodes.SDDRSaveDepth.execute(depth, "sddr/test", fmt, "as is")
    suffix = nodes.SAVE_FORMATS[fmt]
    written = sorted((tmp_path / "output" / "sddr").glob(f"test_*.{suffix}"))
    assert [path.name for path in written] == [f"test_{n:05}_.{suffix}" for n in range(1, 5)]
    expected = depth[1, ..., 0].numpy()
    read = read_depth(written[-1])
    if fmt == "png16":
        np.testing.assert_array_equal(read, np.round(expected * 65535))
    else:
        np.testing.assert_array_equal(read, expected)
    listed = output.ui["images" if fmt == "png16" else "depth_files"]
    assert listed == [{"filename": path.name, "subfolder": "sddr", "type": "output"}
                      for path in written[2:]]
    assert not list((tmp_path / "output" / "sddr").glob(".*tmp*"))


@pytest.mark.parametrize("fmt, holes, message", [
    ("png16", "all", "frame 1 has no finite value"),
    ("exr", "all", "frame 1 has no finite value"),
    ("npy", "all", "frame 1 has no finite value"),
    ("png16", "some", "frame 1 has 12 NaN or infinite value.*16-bit PNG cannot store"),
])
@pytest.mark.parametrize("scaling", ["as is", "per frame", "whole batch"])
def test_save_depth_refuses_values_a_file_would_not_keep(comfy, tmp_path, fmt, holes, message,
                                                         scaling):
    """An all-NaN depth once became an all-zero PNG (NaN cast to 0 before any check)."""
    depth = torch.rand(2, 24, 32, 1).expand(-1, -1, -1, 3).clone()  # gray
    if holes == "all":
        depth[1] = float("nan")
    else:
        depth[1, :3, :2] = float("nan")
        depth[1, 5, :6] = float("inf")
    with pytest.raises(InputError, match=message):
        nodes.SDDRSaveDepth.execute(depth, "sddr/holes", fmt, scaling)
    assert not (tmp_path / "output" / "sddr").exists() or not any(
        (tmp_path / "output" / "sddr").iterdir())  # not even frame 0: nothing is written


def test_save_depth_refuses_a_nul_in_the_prefix_naming_it(comfy, tmp_path):
    with pytest.raises(InputError, match="filename_prefix: contains a NUL character"):
        nodes.SDDRSaveDepth.execute(scene(8, 8), "sddr/a\0b", "png16", "as is")
    assert not (tmp_path / "output").exists() or not any((tmp_path / "output").rglob("*.png"))


@pytest.mark.parametrize("fmt", ["exr", "npy"])
def test_save_depth_keeps_nan_holes_in_float_formats(comfy, tmp_path, fmt):
    depth = torch.rand(1, 24, 32, 1).expand(-1, -1, -1, 3).clone()
    depth[0, :3, :2] = float("nan")
    nodes.SDDRSaveDepth.execute(depth, "sddr/holes", fmt, "as is")
    (written,) = (tmp_path / "output" / "sddr").glob(f"holes_*.{nodes.SAVE_FORMATS[fmt]}")
    np.testing.assert_array_equal(read_depth(written), depth[0, ..., 0].numpy())


def test_each_save_format_counts_on_its_own(comfy, tmp_path):
    depth = torch.rand(1, 24, 32, 3).mean(dim=-1, keepdim=True).expand(-1, -1, -1, 3)
    for fmt in ("png16", "exr", "png16", "npy"):
        nodes.SDDRSaveDepth.execute(depth, "sddr/mixed", fmt, "as is")
    assert sorted(path.name for path in (tmp_path / "output" / "sddr").iterdir()) == [
        "mixed_00001_.exr", "mixed_00001_.npy", "mixed_00001_.png", "mixed_00002_.png"]


def test_save_depth_scales_per_frame_or_by_one_range_and_keeps_units_as_is(comfy, tmp_path):
    metres = torch.stack([torch.linspace(2, 4, 24 * 32), torch.linspace(1, 8, 24 * 32)])
    depth = metres.reshape(2, 24, 32, 1).expand(-1, -1, -1, 3)
    with pytest.raises(InputError, match="depth: values 1..8 do not fit png16's 0..1"):
        nodes.SDDRSaveDepth.execute(depth, "units", "png16", "as is")
    nodes.SDDRSaveDepth.execute(depth, "units", "exr", "as is")
    nodes.SDDRSaveDepth.execute(depth, "frame", "npy", "per frame")
    nodes.SDDRSaveDepth.execute(depth, "batch", "png16", "whole batch")
    output = tmp_path / "output"
    np.testing.assert_array_equal(read_depth(output / "units_00002_.exr"),
                                  metres[1].reshape(24, 32))
    per_frame = [read_depth(output / f"frame_{n:05}_.npy") for n in (1, 2)]
    assert [(frame.min(), frame.max()) for frame in per_frame] == [(0.0, 1.0), (0.0, 1.0)]
    batch = [read_depth(output / f"batch_{n:05}_.png") / 65535 for n in (1, 2)]
    assert batch[0].min() == pytest.approx(1 / 7, abs=1e-4)
    assert batch[0].max() == pytest.approx(3 / 7, abs=1e-4) and batch[1].max() == 1.0


# ----------------------------------------------------------------------------- load depth

def _input_file(tmp_path: Path, name: str, depth: np.ndarray) -> None:
    (tmp_path / "input").mkdir(exist_ok=True)
    write_depth(tmp_path / "input" / name, depth)


def test_load_depth_lists_the_depth_files_of_the_input_folder_with_upload(comfy, tmp_path):
    ramp = np.arange(12 * 16, dtype=np.float32).reshape(12, 16)
    for name in ("b.png", "a.exr", "c.npy"):
        _input_file(tmp_path, name, ramp)
    (tmp_path / "input" / "notes.txt").write_text("not depth")
    (tmp_path / "input" / "folder.png").mkdir()
    file_input = nodes.SDDRLoadDepth.define_schema().inputs[0]
    assert file_input.options["options"] == ["a.exr", "b.png", "c.npy"]
    assert file_input.options["upload"] == "image_upload"


def test_load_depth_reads_16_bit_png_at_full_precision_in_order(comfy, tmp_path):
    stored = np.random.default_rng(0).integers(1000, 60000, (30, 40)).astype(np.uint16)
    _input_file(tmp_path, "depth.png", stored)
    image, valid, low, high = nodes.SDDRLoadDepth.execute("depth.png", "0..1").result
    assert image.shape == (1, 30, 40, 3) and image.dtype == torch.float32
    assert (low, high) == (stored.min(), stored.max())
    expected = (stored.astype(np.float64) - low) / (high - low)
    np.testing.assert_allclose(image[0, ..., 0].numpy(), expected, atol=1e-7)
    assert len(torch.unique(image)) > 256 and bool((valid == 1).all())  # more than 8 bits
    raw = nodes.SDDRLoadDepth.execute("depth.png", "raw").result[0]
    np.testing.assert_array_equal(raw[0, ..., 2].numpy(), stored)


def test_load_depth_reads_exr_units_exactly_and_marks_non_finite_pixels(comfy, tmp_path):
    metres = np.random.default_rng(1).uniform(0.5, 80.0, (20, 24)).astype(np.float32)
    metres[3, 4] = np.nan
    _input_file(tmp_path, "metres.exr", metres)
    image, valid, low, high = nodes.SDDRLoadDepth.execute("metres.exr", "raw").result
    finite = np.isfinite(metres)
    np.testing.assert_array_equal(image[0, ..., 0].numpy()[finite], metres[finite])
    assert image[0, 3, 4, 0] == 0 and valid[0, 3, 4] == 0 and int(valid.sum()) == 20 * 24 - 1
    assert (low, high) == (np.nanmin(metres), np.nanmax(metres))


def test_load_depth_fingerprint_follows_the_content_and_errors_name_the_file(comfy, tmp_path):
    ramp = np.arange(12 * 16, dtype=np.float32).reshape(12, 16)
    _input_file(tmp_path, "d.npy", ramp)
    before = nodes.SDDRLoadDepth.fingerprint_inputs("d.npy", "0..1")
    assert nodes.SDDRLoadDepth.fingerprint_inputs("d.npy", "0..1") == before
    _input_file(tmp_path, "d.npy", ramp * 2)
    assert nodes.SDDRLoadDepth.fingerprint_inputs("d.npy", "0..1") != before
    with pytest.raises(InputError, match="cannot read depth map .*gone.png.*no such file"):
        nodes.SDDRLoadDepth.execute("gone.png", "0..1")
    np.save(tmp_path / "input" / "nan.npy", np.full((12, 16), np.nan, np.float32))
    with pytest.raises(InputError, match="file 'nan.npy': the file has no finite depth"):
        nodes.SDDRLoadDepth.execute("nan.npy", "0..1")
    (tmp_path / "input" / "nan.npy").write_bytes(b"\x93NUMPY broken")
    with pytest.raises(InputError, match="nan.npy.*not a valid .npy"):
        nodes.SDDRLoadDepth.execute("nan.npy", "0..1")


def test_saved_depth_loads_back_to_the_same_values(comfy, tmp_path):
    """Save Depth → the input folder → Load Depth: png16 as its 16-bit levels, exr exactly."""
    depth = torch.rand(1, 24, 32, 1).expand(-1, -1, -1, 3) * 5
    nodes.SDDRSaveDepth.execute(depth, "round", "exr", "as is")
    nodes.SDDRSaveDepth.execute(depth, "round", "png16", "per frame")
    (tmp_path / "input").mkdir()
    for name in ("round_00001_.exr", "round_00001_.png"):
        shutil.copy(tmp_path / "output" / name, tmp_path / "input" / name)
    exr = nodes.SDDRLoadDepth.execute("round_00001_.exr", "raw").result[0]
    assert torch.equal(exr, depth)
    png = nodes.SDDRLoadDepth.execute("round_00001_.png", "0..1").result[0]
    scaled = (depth - depth.min()) / (depth.max() - depth.min())
    assert float((png - scaled).abs().max()) <= 0.5 / 65535 + 1e-7


# ------------------------------------------------------------------------ example workflow

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "COMBO", "BOOLEAN")


@pytest.mark.parametrize("path", sorted((REPO / "example_workflows").glob("*.json")),
                         ids=lambda path: path.name)
def test_example_workflow_links_and_sddr_widgets_match_the_nodes(comfy, path):
    """Every link joins an output and an input of its type, and each SDDR node's widget values
    are its schema's widget inputs, in order, within their options."""
    workflow = json.loads(path.read_text())
    by_id = {node["id"]: node for node in workflow["nodes"]}
    for link_id, source, slot, target, target_slot, kind in workflow["links"]:
        assert by_id[source]["outputs"][slot]["type"] == kind
        assert link_id in by_id[source]["outputs"][slot]["links"]
        assert by_id[target]["inputs"][target_slot] | {"link": link_id} == \
            by_id[target]["inputs"][target_slot]
        assert by_id[target]["inputs"][target_slot]["type"] == kind
    schemas = {node.__name__: node.define_schema() for node in nodes.NODES}
    used = [node for node in workflow["nodes"] if node["type"] in schemas]
    assert "SDDRLoadRefiner" in {node["type"] for node in used}
    for node in used:
        widgets = [item for item in schemas[node["type"]].inputs
                   if item.io_type in WIDGET_TYPES]
        values = node["widgets_values"]
        if any("upload" in item.options for item in widgets):  # the web UI's upload button
            assert values[-1] == "image", node["type"]
            values = values[:-1]
        assert len(widgets) == len(values), node["type"]
        for item, value in zip(widgets, values, strict=True):
            if item.io_type == "COMBO" and item.id not in ("weights", "file"):
                assert value in item.options["options"], (node["type"], item.id)
    assert path.with_suffix(".jpg").is_file()


def floating(depth: torch.Tensor) -> int:
    """Pixels of a depth IMAGE more than 10 % of the frame's range from both its min and max
    along the box's left edge (the photo's box: rows H/4..H/2, from column W/3)."""
    frame = depth[0, ..., 0]
    rows, column = slice(frame.shape[0] // 4 + 2, frame.shape[0] // 2 - 2), frame.shape[1] // 3
    strip = frame[rows, column - 6: column + 6]
    low, high = float(strip.min()), float(strip.max())
    return int(((strip > low + 0.1 * (high - low)) & (strip < high - 0.1 * (high - low))).sum())


def test_depth_from_image_snaps_edges_unless_switched_off(comfy, refiner, predictor):
    image = photo(192, 288)
    on, off = (nodes.SDDRDepthFromImage.execute(
        refiner, image, "depth-anything-v2-small", "one-stage", 1, "per frame", snap).result[0]
        for snap in (True, False))
    assert floating(on) < floating(off)


def test_refine_depth_snaps_to_a_connected_image(comfy, refiner):
    low, high = scene(24, 36), scene(48, 72)
    plain, _ = refine(refiner, low, high, width=144, height=96)
    snapped, _ = refine(refiner, low, high, width=144, height=96, image=photo(96, 144))
    assert floating(snapped) < floating(plain)
    with pytest.raises(InputError, match="image holds 2 picture"):
        refine(refiner, low, high, image=photo(96, 144, frames=2))
