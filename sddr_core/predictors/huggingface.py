"""Hugging Face depth models (Depth Anything V2, DPT, ZoeDepth) as `DepthPredictor`s.

Named models of `PREDICTORS` (the `predictors` extra) are read from the local cache at pinned
revisions, and downloaded only when missing and the Hub answers at once; `load_predictor` also
takes a local model folder (`save_pretrained`), a predictor object or a plain callable.
docs/predictors.md is the user guide.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import shlex
import subprocess
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, SddrError, WeightsError
from ..maps.resample import resize_maps
from ..runtime import resolve_device, resolve_dtype
from .base import (
    GRADIENT_PRIOR,
    CallablePredictor,
    DepthPredictor,
    as_rgb,
    check_polarity,
    check_resolution,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
DOWNLOAD_PATTERNS = ("config.json", "preprocessor_config.json", "*.safetensors",
                     "*.safetensors.index.json")
"""What a snapshot needs: never pickled weights (.bin, .pt), which can run code when loaded."""
INSTALL_EXTRA = "pip install -e '/path/to/sddr[predictors]'"
"""The extra from a clone of the repository (README, Install): sddr is not on PyPI."""


@dataclass(frozen=True)
class PredictorSpec:
    """A Hugging Face depth model and what running it right takes."""

    repo: str
    revision: str | None
    """Full commit hash the weights are pinned to (None: not known, must be passed)."""
    polarity: str
    training_resolution: int
    """r̂, long side in px."""
    patch_multiple: int
    """Each input side is rounded to a multiple of this (ViT patch / decoder stride)."""
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    gradient_prior: float = GRADIENT_PRIOR
    square: bool = False
    """transformers' DPT-ViT regroups its tokens into a square grid, so these models take only
    square inputs: the image is resized to resolution × resolution (as Hugging Face's own
    processor and the Boost/SDDR code do)."""
    reflect_pad: bool = False
    """ZoeDepth's recipe: reflect-pad the input by about 3·√(side/2) px against border
    artefacts and cut the padding off the output."""
    backbone_attention: str | None = None
    """transformers' attention for the backbone: "sdpa" (PyTorch's fused attention) for Depth
    Anything's DINOv2, which the model as a whole does not accept yet; None keeps the model's
    default. Same output to 1e-6 of its range, 0.82× the time at 518 px on CPU (decision 281)."""


PREDICTORS: dict[str, PredictorSpec] = {
    "depth-anything-v2-small": PredictorSpec(
        "depth-anything/Depth-Anything-V2-Small-hf", "5426e4f0f36572d16453bbda7a8389317b1bef99",
        "disparity", 518, 14, IMAGENET_MEAN, IMAGENET_STD, backbone_attention="sdpa"),
    "depth-anything-v2-base": PredictorSpec(
        "depth-anything/Depth-Anything-V2-Base-hf", "b1958afc87fb45a9e3746cb387596094de553ed8",
        "disparity", 518, 14, IMAGENET_MEAN, IMAGENET_STD, backbone_attention="sdpa"),
    "depth-anything-v2-large": PredictorSpec(
        "depth-anything/Depth-Anything-V2-Large-hf", "7581137eff8d4e94f6e796d3baea0e9fa79b22d2",
        "disparity", 518, 14, IMAGENET_MEAN, IMAGENET_STD, backbone_attention="sdpa"),
    "dpt-large": PredictorSpec(
        "Intel/dpt-large", "bc15f29aa3a80d532f2ed650b5e16ac48d8958f9",
        "disparity", 384, 32, HALF, HALF, square=True),
    "zoedepth-nyu-kitti": PredictorSpec(
        "Intel/zoedepth-nyu-kitti", "f364d4c7936e91f465abba182208dd68142bf0ca",
        "depth", 512, 32, HALF, HALF, reflect_pad=True),
}
"""Named predictors for `load_predictor`; docs/predictors.md gives sources and licences
(and why Intel/dpt-hybrid-midas is not among them: its pinned commit has pickle weights only)."""
FAMILIES = {"depth_anything": "depth-anything-v2-small", "dpt": "dpt-large",
            "zoedepth": "zoedepth-nyu-kitti"}
"""A local model folder's `model_type` (config.json) → the named predictor whose recipe (r̂,
patch multiple, polarity, padding) it shares: a fine-tune keeps its base model's."""


class HuggingFacePredictor:
    """A transformers depth-estimation model, fed at exactly the requested resolution.

    The image is resized and normalised here rather than by the model's image processor, which
    would impose its own size. Output: `predicted_depth` at the inference size.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        spec: PredictorSpec,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "auto",
        name: str = "huggingface",
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.spec = spec
        self.name = name
        self.polarity = check_polarity(spec.polarity, name)
        self.training_resolution = spec.training_resolution
        self.gradient_prior = spec.gradient_prior

    def predict(
        self, image: np.ndarray, resolution: int,
        region: tuple[int, int, int, int] | None = None,
    ) -> np.ndarray:
        """Prediction for `image` with its long side at `resolution`, each side rounded to the
        model's patch multiple (`region` is not used)."""
        return self.predict_batch([image], resolution)[0]

    def predict_batch(self, images: Sequence[np.ndarray], resolution: int) -> list[np.ndarray]:
        """`predict` of each of `images`, all of one size, as one batch through the model."""
        images = [as_rgb(image, f"images[{index}]") for index, image in enumerate(images)]
        shapes = {image.shape for image in images}
        if len(shapes) != 1:
            raise InputError(f"images: a batch must hold images of one size, got "
                             f"{sorted(shapes)}")
        height, width = self._input_size(images[0].shape[:2], check_resolution(resolution))
        pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
        pixels = resize_maps(pixels.flatten(0, 1), (height, width)).unflatten(0, (-1, 3))
        mean = torch.tensor(self.spec.mean).view(3, 1, 1)
        std = torch.tensor(self.spec.std).view(3, 1, 1)
        pixels = (pixels - mean) / std  # [B,3,h,w]
        rows = cols = (0, 0)
        if self.spec.reflect_pad:
            rows, cols = (_border(side, self.spec.patch_multiple) for side in (height, width))
            pixels = F.pad(pixels, (*cols, *rows), mode="reflect")
        with torch.inference_mode():
            output = self.model(pixel_values=pixels.to(self.device, self.dtype))
        depth = output.predicted_depth.float()
        depth = depth.reshape(len(images), *depth.shape[-2:])  # [B,h,w]
        if self.spec.reflect_pad:  # cut the padding off, in output pixels
            (top, bottom), (left, right) = (
                [round(p * depth.shape[i + 1] / pixels.shape[i + 2]) for p in pad]
                for i, pad in enumerate((rows, cols))
            )
            depth = depth[:, top: depth.shape[1] - bottom, left: depth.shape[2] - right]
        return list(depth.cpu().numpy())

    def _input_size(self, shape: tuple[int, int], resolution: int) -> tuple[int, int]:
        """(h, w): long side ≈ resolution, aspect kept (unless square), sides multiples."""
        multiple = self.spec.patch_multiple
        if self.spec.square:
            side = max(multiple, round(resolution / multiple) * multiple)
            return side, side
        factor = resolution / max(shape)
        return tuple(max(multiple, round(side * factor / multiple) * multiple) for side in shape)


def _border(side: int, multiple: int) -> tuple[int, int]:
    """ZoeDepth's reflect padding, ⌊3·√(side/2)⌋ px a side, grown so the padded side stays a
    multiple of `multiple`."""
    total = math.ceil(2 * int(3 * math.sqrt(side / 2)) / multiple) * multiple
    return total // 2, total - total // 2


# ---------------------------------------------------------------------------------- loading

class MissingWeightsError(InputError):
    """A named predictor's weights are not in the cache and cannot be downloaded now.

    Its fields let a host say what to do in its own terms (ComfyUI's models folder, Blender's
    online setting); `command` fetches the weights into `cache`.
    """

    def __init__(self, predictor: str, repo: str, revision: str, cache: str, reason: str,
                 command: str) -> None:
        self.predictor, self.repo, self.revision = predictor, repo, revision
        self.cache, self.reason, self.command = cache, reason, command
        super().__init__(
            f"predictor {predictor}: the weights of {repo} at revision {revision} are not in "
            f"the Hugging Face cache ({cache}) and cannot be downloaded: {reason}. Fetch them "
            f"once: {command} (or point HF_HOME, or cache_dir, at a cache that holds them)")


def load_predictor(
    name_or_predictor: str | DepthPredictor | Callable[[np.ndarray, int], np.ndarray],
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    cache_dir: str | Path | None = None,
    revision: str | None = None,
) -> DepthPredictor:
    """A DepthPredictor from a name in PREDICTORS, a predictor object, or a plain callable.

    Named models are read from the Hugging Face cache (`cache_dir`, default the HF_HOME one) at
    their pinned revision (or `revision`), downloaded once when missing, and loaded from
    safetensors only. A callable is wrapped in `CallablePredictor` with its defaults.

    Raises
    ------
    MissingWeightsError
        The weights are not cached, and offline mode is on or the Hub does not answer: raised
        at once, without the Hub client's retries.
    """
    if isinstance(name_or_predictor, DepthPredictor):
        return name_or_predictor
    if callable(name_or_predictor):
        return CallablePredictor(name_or_predictor)
    name = name_or_predictor
    local = isinstance(name, str | os.PathLike) and Path(name).is_dir()
    if not local:
        spec, revision = _named(name, revision)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    try:
        from transformers import AutoModelForDepthEstimation
    except ImportError:
        raise SddrError(f"predictor {name} needs the 'predictors' extra (transformers): "
                        f"{INSTALL_EXTRA}") from None
    if local:
        folder = Path(name)
        spec = _with_processor_normalisation(_folder_spec(folder), folder)
    else:
        folder = _snapshot(name, spec.repo, revision, cache_dir)
        spec = _with_processor_normalisation(replace(spec, revision=revision), folder)
    try:
        model = _from_pretrained(AutoModelForDepthEstimation, folder, spec.backbone_attention)
    except (OSError, ValueError, RuntimeError) as err:
        raise WeightsError(f"predictor {name}: could not load the model in '{folder}': "
                           f"{err}") from None
    return HuggingFacePredictor(model, spec, device, dtype, name=str(name))


def _from_pretrained(auto_class, folder: Path, backbone_attention: str | None):
    """The model in `folder` from safetensors, its backbone on `backbone_attention` where this
    transformers takes a per-config attention (5.x does; older ones may refuse the dict, and
    then get the model's default)."""
    if backbone_attention is not None:
        try:
            return auto_class.from_pretrained(
                folder, use_safetensors=True,
                attn_implementation={"backbone_config": backbone_attention})
        except (TypeError, ValueError):
            pass
    return auto_class.from_pretrained(folder, use_safetensors=True)


def _folder_spec(folder: Path) -> PredictorSpec:
    """The spec of a local `save_pretrained` folder: its family's recipe (`FAMILIES`), depth
    polarity for a metric Depth Anything, and only when it holds safetensors weights."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"predictor folder '{folder}': no readable config.json (a transformers "
                         f"model saved with save_pretrained has one): {err}") from None
    family = FAMILIES.get(config.get("model_type") if isinstance(config, dict) else None)
    if family is None:
        raise InputError(f"predictor folder '{folder}': model_type {config.get('model_type')!r} "
                         f"is not one sddr can run; supported: {', '.join(FAMILIES)}")
    if not any(folder.glob("*.safetensors")):
        raise WeightsError(f"predictor folder '{folder}' has no .safetensors weights; sddr never "
                           "loads pickled ones (save with save_pretrained(..., "
                           "safe_serialization=True))")
    spec = replace(PREDICTORS[family], repo=str(folder), revision=None)
    if config.get("depth_estimation_type") == "metric":
        spec = replace(spec, polarity="depth")
    return spec


def cached_weights(name: str, cache_dir: str | Path | None = None,
                   revision: str | None = None) -> Path | None:
    """The cached snapshot of named predictor `name` at its pinned revision (or `revision`)
    when it holds safetensors weights, else None; never touches the network."""
    spec, revision = _named(name, revision)
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(spec.repo, revision=revision, cache_dir=cache_dir,
                                        allow_patterns=list(DOWNLOAD_PATTERNS),
                                        local_files_only=True))
    except Exception:  # not cached (huggingface_hub raises several types)
        return None
    return folder if any(folder.glob("*.safetensors")) else None


def fetch_command(name: str, cache_dir: str | Path | None = None,
                  revision: str | None = None) -> str:
    """The `hf download` command line that puts `name`'s weights into the cache sddr reads."""
    spec, revision = _named(name, revision)
    words = ["hf", "download", spec.repo, "--revision", revision,
             *(word for pattern in DOWNLOAD_PATTERNS for word in ("--include", pattern)),
             *(["--cache-dir", str(cache_dir)] if cache_dir else [])]
    return subprocess.list2cmdline(words) if os.name == "nt" else shlex.join(words)


def _named(name: str, revision: str | None) -> tuple[PredictorSpec, str]:
    """The spec of a name in PREDICTORS and the revision to load, or an InputError."""
    if not isinstance(name, str):
        raise InputError(f"predictor: expected a name, a DepthPredictor or a callable, "
                         f"got {type(name).__name__}")
    if name == "simulated":
        raise InputError("predictor 'simulated' cannot be loaded by name: it builds its "
                         "predictions from the scene's ground-truth depth. Create it with "
                         "sddr_core.predictors.SimulatedPredictor(depth) and pass the object")
    if name not in PREDICTORS:
        raise InputError(f"predictor {name!r} is not known; known predictors: "
                         f"{', '.join(PREDICTORS)} (or pass a model folder saved with "
                         "save_pretrained, a DepthPredictor or a callable "
                         "fn(image, resolution) -> depth)")
    spec = PREDICTORS[name]
    revision = revision or spec.revision
    if revision is None:
        raise InputError(f"no pinned revision known for {name} ({spec.repo}); pass "
                         "revision=... explicitly (a commit hash of that repository)")
    return spec, revision


def _snapshot(name: str, repo: str, revision: str, cache_dir: str | Path | None) -> Path:
    """Local folder of repo@revision: the cached snapshot when it has weights, else a download
    (after one quick look at the Hub, so an offline machine fails at once)."""
    from huggingface_hub import constants, snapshot_download

    folder = cached_weights(name, cache_dir, revision)
    if folder is not None:
        return folder
    reason = _hub_unavailable(repo, revision)
    if reason is None:
        try:
            folder = Path(snapshot_download(repo, revision=revision, cache_dir=cache_dir,
                                            allow_patterns=list(DOWNLOAD_PATTERNS)))
        except Exception as err:
            reason = f"the download failed ({type(err).__name__}: {err})"
    if reason is not None:
        raise MissingWeightsError(name, repo, revision, str(cache_dir or constants.HF_HUB_CACHE),
                                  reason, fetch_command(name, cache_dir, revision)) from None
    if not any(folder.glob("*.safetensors")):
        raise WeightsError(
            f"predictor {name}: {repo} at revision {revision} has no safetensors weights, only "
            "pickled ones, which sddr never loads (unpickling can run arbitrary code). Pass "
            "revision=... with a commit of that repository that has model.safetensors"
        )
    return folder


def _hub_unavailable(repo: str, revision: str) -> str | None:
    """Why nothing can be downloaded now (offline mode, or the Hub does not answer one request
    without retries), or None. huggingface_hub's own listing retries a dead connection for
    about 25 s, which is why this asks first."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import HfHubHTTPError

    if constants.HF_HUB_OFFLINE:
        return "offline mode is on (HF_HUB_OFFLINE=1)"
    url = hf_hub_url(repo, "config.json", revision=revision)
    try:
        get_hf_file_metadata(url, timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except HfHubHTTPError:  # the Hub answered: the download reports what is wrong
        return None
    except Exception as err:  # no answer: DNS, refused, timeout, proxy, TLS
        return f"{constants.ENDPOINT} cannot be reached ({err or type(err).__name__})"
    return None


def _with_processor_normalisation(spec: PredictorSpec, folder: Path) -> PredictorSpec:
    """The spec with the mean/std of the snapshot's preprocessor_config.json, when it has
    usable ones (3 values each in [0, 1]); the spec's known defaults otherwise."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return spec
    try:
        config = json.loads(path.read_text())
    except ValueError:  # unreadable: treated like a config without mean/std
        config = {}
    mean, std = config.get("image_mean"), config.get("image_std")
    usable = all(
        isinstance(values, list) and len(values) == 3
        and all(isinstance(v, numbers.Real) and 0 <= v <= 1 for v in values)
        for values in (mean, std)
    ) and min(std) > 0
    if not usable:
        warnings.warn(f"'{path}': image_mean/image_std missing or not 3 values in [0, 1]; "
                      f"using the known defaults for {spec.repo}", stacklevel=3)
        return spec
    return replace(spec, mean=tuple(mean), std=tuple(std))
