"""The six SDDR nodes (V3 schema). Each maps its inputs, makes one `sddr_core` call and maps
the result back. Node ids are saved in users' workflows: never rename a released one."""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch

from sddr_core import DepthPipeline, InputError, SddrError
from sddr_core.files.depth_io import READ_EXTENSIONS, read_depth, write_depth
from sddr_core.inference.coarse_to_fine import CoarseToFine
from sddr_core.inference.windows import STEPS, passes
from sddr_core.maps.edge_snap import snap_edges
from sddr_core.maps.inputs import check_pair
from sddr_core.maps.levels import damaged_levels

from . import depth_maps, host, models
from .host import io
from .sample import install_sample_scene

CATEGORY = "image/depth/sddr"
REFINER = io.Custom("SDDR_REFINER")
MAX_SIZE = 16384
MODES = ("one-stage", "two-stage")
SAVE_FORMATS = {"png16": "png", "exr": "exr", "npy": "npy"}

RESOLUTION_NOTE = ("The network runs at high_depth's size, its long side capped at the "
                   "loader's max_side.")
LOAD_DEPTH_ADVICE = ("Load 16-bit PNG, EXR or NPY depth files with SDDR Load Depth: Load "
                     "Image keeps 8 bits and clips 16-bit values.")


class SDDRLoadDepth(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SDDRLoadDepth",
            display_name="SDDR Load Depth",
            category=CATEGORY,
            description="Loads a depth map at full precision (16-bit PNG, EXR, NPY, PFM, "
                        "TIFF) from ComfyUI's input folder; Load Image would keep 8 bits.",
            inputs=[
                io.Combo.Input("file", options=_input_depth_files(), upload=io.UploadType.image,
                               tooltip="A depth file in ComfyUI's input folder. The upload "
                               "button takes PNG; copy EXR, NPY, PFM or TIFF files into the "
                               "input folder and refresh."),
                io.Combo.Input("values", options=list(depth_maps.LOAD_VALUES), default="0..1",
                               tooltip="0..1: the file's range mapped linearly onto 0..1, "
                               "its order kept (for ControlNet, previews and SDDR Refine "
                               "Depth). raw: the values as stored (16-bit PNG 0..65535, "
                               "EXR/NPY in their units)."),
            ],
            outputs=[
                io.Image.Output(display_name="depth", tooltip="The depth map at the file's "
                                "size, float32 (never 8-bit), gray in 3 channels, in the "
                                "file's own polarity."),
                io.Mask.Output(display_name="valid", tooltip="1 where the file has a finite "
                               "value, 0 where it has NaN or inf (those pixels are 0 in depth)."),
                io.Float.Output(display_name="min", tooltip="The file's smallest finite value."),
                io.Float.Output(display_name="max", tooltip="The file's largest finite value."),
            ],
        )

    @classmethod
    def execute(cls, file: str, values: str) -> io.NodeOutput:
        depth = read_depth(_input_path(file))
        return io.NodeOutput(*depth_maps.file_to_image(depth, values, f"file {file!r}"))

    @classmethod
    def fingerprint_inputs(cls, file: str, values: str) -> str:
        """The file's content: a file replaced under the same name is read again."""
        with open(_input_path(file), "rb") as stream:
            return hashlib.sha256(stream.read()).hexdigest() + values


class SDDRLoadRefiner(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SDDRLoadRefiner",
            display_name="SDDR Load Refiner",
            category=CATEGORY,
            description="Loads the SDDR depth-refinement network (safetensors only).",
            inputs=[
                io.Combo.Input("weights", options=models.weight_options(),
                               tooltip="'default': the weights bundled with sddr. Other "
                               "entries: .safetensors files in ComfyUI's models/sddr folder."),
                io.Combo.Input("device", options=list(models.DEVICES), default="auto",
                               tooltip="auto: the device ComfyUI runs models on (CUDA or "
                               "CPU); cpu: always the CPU."),
                io.Combo.Input("precision", options=list(models.PRECISIONS), default="auto",
                               tooltip="auto: fp16 on CUDA, fp32 on the CPU. The first "
                               "layer and the output stay fp32, so depth keeps full "
                               "precision."),
                io.Int.Input("max_side", default=2048, min=64, max=8192, step=64,
                             tooltip="Processing resolution: the network runs at the high "
                             "depth's (or photo's) size with its long side capped here. "
                             "Lower it to save memory and time. It does not change the "
                             "output size."),
            ],
            outputs=[REFINER.Output(display_name="refiner")],
        )

    @classmethod
    def execute(cls, weights: str, device: str, precision: str, max_side: int
                ) -> io.NodeOutput:
        return io.NodeOutput(models.load(weights, device, precision, max_side))


class SDDRRefineDepth(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SDDRRefineDepth",
            display_name="SDDR Refine Depth",
            category=CATEGORY,
            description="Fuses a low-resolution and a high-resolution run of any depth node "
                        "into one sharp, consistent depth map. " + RESOLUTION_NOTE,
            inputs=[
                _refiner_input(),
                io.Image.Input("low_depth", tooltip="Depth of the picture from a depth node "
                               "run at low resolution (e.g. 518 px): consistent but blurry. "
                               "Sets the structure and the value range."),
                io.Image.Input("high_depth", tooltip="Depth of the same picture from the "
                               "same node run at high resolution (e.g. 1024 px or more): "
                               "sharp but inconsistent. Sets the processing resolution and, "
                               "by default, the output size."),
                io.Int.Input("width", default=0, min=0, max=MAX_SIZE, step=8,
                             tooltip="Output width in pixels; 0: high_depth's width (or "
                             "from height, keeping high_depth's aspect ratio)."),
                io.Int.Input("height", default=0, min=0, max=MAX_SIZE, step=8,
                             tooltip="Output height in pixels; 0: high_depth's height (or "
                             "from width, keeping high_depth's aspect ratio)."),
                _normalisation_input(),
                io.Combo.Input("input_polarity", options=list(depth_maps.POLARITIES),
                               default="auto",
                               tooltip="How the inputs encode depth. near-bright: Depth "
                               "Anything, MiDaS, Zoe nodes. far-bright: metric depth. auto: "
                               "decided once per batch (the bottom of a picture is usually "
                               "nearer). The output is near = bright (with normalisation "
                               "raw: low_depth's own polarity)."),
                io.Image.Input("image", optional=True, tooltip="Optional: the photo the depth "
                               "is of (one frame per depth frame, any size). When connected, "
                               "the pixels of the refined depth's soft edges are snapped to "
                               "the nearer or farther side, as the photo's colours show."),
                _clip_input("the frames' low and high depth"),
            ],
            outputs=[
                io.Image.Output(display_name="depth", tooltip="Refined depth, near = bright, "
                                "float 0..1 (never 8-bit), gray in 3 channels; with "
                                "normalisation raw, in low_depth's units and polarity."),
                io.Mask.Output(display_name="valid", tooltip="1 where both inputs had a "
                               "finite value, 0 where a value was filled in."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, refiner: models.LoadedRefiner, low_depth: torch.Tensor,
                high_depth: torch.Tensor, width: int, height: int, normalisation: str,
                input_polarity: str, image: torch.Tensor | None = None, clip: bool = False
                ) -> io.NodeOutput:
        low = depth_maps.gray_view(low_depth, "low_depth")
        high = depth_maps.gray_view(high_depth, "high_depth")
        if image is not None:
            depth_maps.check_image(image, "image")
            if clip and len(image) != len(low):
                raise InputError(f"image: {len(image)} frame(s), but low_depth has {len(low)}; "
                                 "clip mode snaps each depth frame to its own photo frame")
        depth_maps.check_maps(low, "low_depth")
        depth_maps.check_maps(high, "high_depth")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_pair(low, high, ("low_depth", "high_depth"))
        damaged = [found for found in (damaged_levels(low, "low_depth"),
                                       damaged_levels(high, "high_depth")) if found]
        notes = [str(message.message) for message in caught]
        if damaged:
            notes += [*damaged, LOAD_DEPTH_ADVICE]
        warning = "\n".join(notes) or None
        if warning:
            host.warn_user(cls.hidden.unique_id if cls.hidden else None, warning)
        near_bright = depth_maps.is_near_bright(low, input_polarity)
        size = output_size(high.shape[-2:], width, height)
        working = refiner.refiner.network_input_size(*high.shape[-2:])
        frames_at_once = 1 if clip else len(low)
        models.place([refiner.patcher], frames_at_once * working[0] * working[1])
        bar = host.progress_bar(len(low))
        what = f"refining {frames_at_once} frame(s) at {working[0]}×{working[1]}"
        if clip:
            depth = _out_of_memory_explained(lambda: depth_maps.gray_image(
                _refined_clip(refiner, low, high, size, image, bar), len(low), size), what)
        else:
            run = CoarseToFine(refiner.refiner,
                               progress=lambda done, _: bar.update_absolute(done),
                               cancel=host.interrupt_check)
            refined = _out_of_memory_explained(lambda: run.first_passes(
                [(lo, hi, size) for lo, hi in zip(low, high, strict=True)]), what)
            depth = torch.stack([frame.cpu() for frame in refined])
            if image is not None:
                depth = snap_edges(depth, np.stack([depth_maps.image_to_rgb(image, index)
                                                    for index in range(len(image))]))
            depth = depth_maps.gray_image(depth, len(depth), size)
        return io.NodeOutput(depth_maps.normalise_image(depth, near_bright, normalisation),
                             depth_maps.valid_mask(low, high, size),
                             ui={"text": [warning]} if warning else None)


class SDDRDepthFromImage(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SDDRDepthFromImage",
            display_name="SDDR Depth From Image",
            category=CATEGORY,
            description="Depth of each image (or video frame): Depth Anything V2 at two "
                        "resolutions, refined by SDDR; two-stage also refines windows.",
            inputs=[
                _refiner_input(),
                io.Image.Input("image", tooltip="Photo or video frames. The output has this "
                               "size; the predictor runs at its training size (518 px) and "
                               "at an adaptive higher one, the refiner at the image's size "
                               "capped at the loader's max_side."),
                _predictor_input(),
                io.Combo.Input("mode", options=list(MODES), default="one-stage",
                               tooltip="one-stage: one refinement of the whole image. "
                               "two-stage: then 4, 9, 16… overlapping windows, coarse to "
                               "fine: sharper, about 15-20× slower."),
                _steps_input(),
                _normalisation_input(),
                io.Boolean.Input("snap_edges", default=True,
                                 tooltip="Snap the pixels of the refined depth's soft edges "
                                 "to the nearer or farther side, as the photo's colours "
                                 "show: crisp silhouettes, no pixels floating between "
                                 "foreground and background. Off: the edges as SDDR "
                                 "refines them."),
                _clip_input("the video frames"),
            ],
            outputs=[io.Image.Output(display_name="depth", tooltip="Refined depth at the "
                                     "image's size, near = bright, float 0..1.")],
        )

    @classmethod
    def execute(cls, refiner: models.LoadedRefiner, image: torch.Tensor, predictor: str,
                mode: str, steps: int, normalisation: str, snap_edges: bool = True,
                clip: bool = False) -> io.NodeOutput:
        if clip and mode != "one-stage":
            raise InputError(f"mode {mode}: clip mode refines one-stage only (two-stage's "
                             "windows would each need their own clip state); set mode to "
                             "one-stage, or turn clip off")
        pipeline, near_bright = _pipeline(refiner, predictor, image)
        if clip:
            bar = host.progress_bar(len(image))
            frames = pipeline.frames(
                (depth_maps.image_to_rgb(image, index) for index in range(len(image))),
                progress=lambda done, _: bar.update_absolute(done),
                cancel=host.interrupt_check, snap_edges=snap_edges)
            depth = _out_of_memory_explained(
                lambda: depth_maps.gray_image(frames, len(image), tuple(image.shape[1:3])),
                f"refining the clip's frames ({image.shape[1]}×{image.shape[2]})")
            return io.NodeOutput(depth_maps.normalise_image(depth, near_bright, normalisation))
        per_frame = passes(steps) if mode == "two-stage" else 1
        depth = _per_frame(image, per_frame, lambda rgb, progress: pipeline(
            rgb, mode=mode, steps=steps, progress=progress, cancel=host.interrupt_check,
            snap_edges=snap_edges))
        return io.NodeOutput(depth_maps.to_image(depth, near_bright, normalisation))


class SDDRDepthEdges(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SDDRDepthEdges",
            display_name="SDDR Depth Edges",
            category=CATEGORY,
            description="G_S, the depth-edge map of a two-stage run: white depth "
                        "discontinuities on black, for previews or a line-art ControlNet.",
            inputs=[
                _refiner_input(),
                io.Image.Input("image", tooltip="Photo or video frames; the edge map has "
                               "this size (processing as in SDDR Depth From Image)."),
                _predictor_input(),
                _steps_input(),
            ],
            outputs=[io.Image.Output(display_name="edges", tooltip="Edge strength 0..1 per "
                                     "frame, gray in 3 channels.")],
        )

    @classmethod
    def execute(cls, refiner: models.LoadedRefiner, image: torch.Tensor, predictor: str,
                steps: int) -> io.NodeOutput:
        pipeline, _ = _pipeline(refiner, predictor, image)
        edges = _per_frame(image, passes(steps), lambda rgb, progress: pipeline.edges(
            rgb, steps=steps, progress=progress, cancel=host.interrupt_check))
        return io.NodeOutput(depth_maps.edges_to_image(edges))


class SDDRSaveDepth(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SDDRSaveDepth",
            display_name="SDDR Save Depth",
            category=CATEGORY,
            description="Writes depth at full precision into ComfyUI's output folder: 16-bit "
                        "PNG, 32-bit float EXR or NumPy .npy (Save Image writes 8 bits).",
            is_output_node=True,
            inputs=[
                io.Image.Input("depth", tooltip="A depth IMAGE (near = bright, 0..1), e.g. "
                               "from SDDR Refine Depth. Written at its own size."),
                io.String.Input("filename_prefix", default="sddr/depth",
                                tooltip="Path under the output folder and file name start; "
                                "a counter follows, as in Save Image (%year%, %month%, "
                                "%day% … are filled in)."),
                io.Combo.Input("format", options=list(SAVE_FORMATS), default="png16",
                               tooltip="png16: 16-bit gray PNG, 0..1 stored as 0..65535. "
                               "exr: 32-bit float, the values exactly. npy: float32 array, "
                               "the values exactly."),
                io.Combo.Input("scaling", options=list(depth_maps.SAVE_SCALINGS),
                               default="as is",
                               tooltip="as is: the IMAGE's own values: 0..1 from the SDDR "
                               "nodes, units from SDDR Load Depth or SDDR Refine Depth set "
                               "to raw (png16 needs 0..1). per frame: each frame min-max "
                               "scaled to 0..1. whole batch: one range for all frames, so "
                               "a sequence does not flicker."),
            ],
            outputs=[],
        )

    @classmethod
    def execute(cls, depth: torch.Tensor, filename_prefix: str, format: str,
                scaling: str) -> io.NodeOutput:
        if "\0" in filename_prefix:
            raise InputError("filename_prefix: contains a NUL character (\\0), which no file "
                             "name may hold; remove it")
        if format not in SAVE_FORMATS:
            raise SddrError(f"format {format!r}: choose from {', '.join(SAVE_FORMATS)}")
        maps = depth_maps.image_to_maps(depth, "depth")
        _check_storable(maps, format)
        maps = depth_maps.scaled_for_saving(maps, scaling)
        finite = maps[torch.isfinite(maps)]
        if format == "png16" and finite.numel() and not 0 <= finite.min() <= finite.max() <= 1:
            raise InputError(f"depth: values {finite.min().item():g}..{finite.max().item():g} "
                             "do not fit png16's 0..1: set scaling to per frame or whole "
                             "batch, or save as exr or npy")
        maps = maps.numpy()
        folder_paths = host.folder_paths()
        folder, name, _, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory(), maps.shape[2], maps.shape[1])
        suffix = SAVE_FORMATS[format]
        counter = _next_counter(folder, name, suffix)
        saved = []
        for index, frame in enumerate(maps):
            filename = f"{name}_{counter + index:05}_.{suffix}"
            data = (np.round(frame * 65535).astype(np.uint16) if format == "png16" else frame)
            write_depth(os.path.join(folder, filename), data, format)
            saved.append({"filename": filename, "subfolder": subfolder, "type": "output"})
        return io.NodeOutput(ui={"images" if format == "png16" else "depth_files": saved})


NODES = [SDDRLoadRefiner, SDDRRefineDepth, SDDRDepthFromImage, SDDRDepthEdges, SDDRSaveDepth,
         SDDRLoadDepth]


class SDDRExtension(host.ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> SDDRExtension:
    install_sample_scene(host.folder_paths().get_input_directory())
    return SDDRExtension()


# --------------------------------------------------------------------------------- helpers

def output_size(high_size: tuple[int, int], width: int, height: int) -> tuple[int, int]:
    """(height, width) of the output: as given, high_depth's size for 0 × 0, or the missing
    side from the given one with high_depth's aspect ratio."""
    high_height, high_width = int(high_size[0]), int(high_size[1])
    if width < 0 or height < 0:
        raise SddrError(f"width {width} × height {height}: sizes are ≥ 0 (0 = from high_depth)")
    if width == 0 and height == 0:
        return high_height, high_width
    if width == 0:
        return height, max(1, round(height * high_width / high_height))
    if height == 0:
        return max(1, round(width * high_height / high_width)), width
    return height, width


def _input_depth_files() -> list[str]:
    """The files in ComfyUI's input folder (not its subfolders) that `read_depth` reads."""
    folder = host.folder_paths().get_input_directory()
    if not os.path.isdir(folder):
        return []
    return sorted(name for name in os.listdir(folder)
                  if os.path.splitext(name)[1].lower() in READ_EXTENSIONS
                  and os.path.isfile(os.path.join(folder, name)))


def _input_path(file: str) -> str:
    """The path of `file` in the input folder (ComfyUI has checked it is one the list
    offered)."""
    return os.path.join(host.folder_paths().get_input_directory(), file)


def _next_counter(folder: str, name: str, suffix: str) -> int:
    """One past the highest counter of `name`_NNNNN_.`suffix` in `folder`: each format
    counts on its own, so a PNG and an EXR of one frame get the same number."""
    pattern = re.compile(re.escape(name) + r"_(\d{5,})_\." + re.escape(suffix) + "$")
    found = [int(match[1]) for match in map(pattern.match, os.listdir(folder)) if match]
    return max(found, default=0) + 1


def _refiner_input():
    return REFINER.Input("refiner", tooltip="From SDDR Load Refiner.")


def _normalisation_input():
    return io.Combo.Input("normalisation", options=list(depth_maps.NORMALISATIONS),
                          default="per frame", tooltip="per frame: each frame spans 0..1. "
                          "whole batch: one range for all frames, so video does not flicker.")


def _clip_input(frames: str):
    """The clip switch, optional so that API prompts saved before it still run; it comes after
    every older widget, so saved workflows' widget values keep their places."""
    return io.Boolean.Input("clip", default=False, optional=True,
                            tooltip=f"On: {frames} are one clip, refined in order, each frame "
                            "joined to the one before (one scale for the clip, still where the "
                            "scene is still): video depth that does not flicker. Set "
                            "normalisation to whole batch (or raw) to keep that scale. Off: "
                            "each frame on its own. One-stage only.")


def _predictor_input():
    return io.Combo.Input("predictor", options=list(models.PREDICTOR_NAMES),
                          default=models.PREDICTOR_NAMES[0],
                          tooltip="Depth Anything V2 model, downloaded once at a pinned "
                          "revision into models/sddr_predictors and used offline afterwards. "
                          "Base and Large are licensed for non-commercial use only.")


def _steps_input():
    return io.Int.Input("steps", default=STEPS, min=1, max=8,
                        tooltip="Two-stage coarse-to-fine steps: step s refines (s+1)² "
                        "windows; 3 (the paper's) costs 30 network passes per frame.")


def _pipeline(refiner: models.LoadedRefiner, predictor: str, image: torch.Tensor
              ) -> tuple[DepthPipeline, bool]:
    """The core pipeline over this refiner and predictor, both placed by ComfyUI, and whether
    the predictor's output is near-bright (disparity)."""
    depth_maps.check_image(image, "image")
    model, patchers = models.depth_predictor(predictor, refiner.refiner.device)
    working = refiner.refiner.network_input_size(*image.shape[1:3])
    models.place([refiner.patcher, *patchers], working[0] * working[1])
    return DepthPipeline(refiner.refiner, model), model.polarity == "disparity"


def _per_frame(image: torch.Tensor, per_frame: int,
               run: Callable[[np.ndarray, Callable[[int, int], None]], np.ndarray]
               ) -> torch.Tensor:
    """`run(rgb, progress)` on each frame, the progress bar counting network passes."""
    frames = image.shape[0]
    bar = host.progress_bar(frames * per_frame)
    results = []
    for index in range(frames):
        rgb = depth_maps.image_to_rgb(image, index)

        def progress(done: int, _total: int, start: int = index * per_frame) -> None:
            bar.update_absolute(start + done)

        results.append(torch.from_numpy(np.asarray(_out_of_memory_explained(
            lambda rgb=rgb, progress=progress: run(rgb, progress),
            f"frame {index} of {frames} ({rgb.shape[0]}×{rgb.shape[1]})"))))
    return torch.stack(results)


def _refined_clip(refiner: models.LoadedRefiner, low: torch.Tensor, high: torch.Tensor,
                  size: tuple[int, int], image: torch.Tensor | None, bar
                  ) -> Iterator[torch.Tensor]:
    """The frames of B×H×W `low`, `high` refined in order as one clip (`Refiner.refine_clip`),
    snapped to `image`'s frames if given, one at a time: Cancel is checked before each frame
    and the progress bar advanced after it."""
    def pairs() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for pair in zip(low, high, strict=True):
            host.interrupt_check()
            yield pair

    for index, depth in enumerate(refiner.refiner.refine_clip(pairs(), size)):
        if image is not None:
            depth = snap_edges(depth, depth_maps.image_to_rgb(image, index))
        yield depth.cpu()
        bar.update_absolute(index + 1)


def _check_storable(maps: torch.Tensor, format: str) -> None:
    """Refuse, before any file is written, a frame with no finite value, and NaN or infinite
    values in a 16-bit PNG: cast to integers they would become 0, a depth, not a gap."""
    for index, frame in enumerate(maps):
        bad = int((~torch.isfinite(frame)).sum())
        if bad == frame.numel():
            raise InputError(f"depth: frame {index} has no finite value (all NaN or "
                             "infinite): there is no depth to save")
        if bad and format == "png16":
            raise InputError(f"depth: frame {index} has {bad} NaN or infinite value(s), "
                             "which a 16-bit PNG cannot store (they would become 0); save "
                             "it as exr or npy, which keep them")


def _out_of_memory_explained(work: Callable, what: str):
    """`work()`; the core already halves its window batch on out-of-memory, so one that still
    runs out becomes a message saying what to lower, and ComfyUI's cache is emptied."""
    management = host.model_management()
    try:
        return work()
    except management.OOM_EXCEPTION:
        management.soft_empty_cache()
        raise SddrError(f"out of memory {what}, even one window at a time: lower "
                        "max_side in SDDR Load Refiner, or free memory (fewer models in the "
                        "graph)") from None
