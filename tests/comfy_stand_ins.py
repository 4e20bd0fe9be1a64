"""Stand-ins for the parts of ComfyUI the node pack uses, for machines without ComfyUI (CI).

`install()` puts them into `sys.modules` only when the real `comfy_api` cannot be imported;
where ComfyUI is importable the real modules are used. They record what the nodes asked of
ComfyUI (progress, model placement) so tests can check it; `tests/test_comfyui_real.py`
checks the nodes against the real API, which keeps these honest.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# ------------------------------------------------------------------------- comfy_api.latest


class _Input:
    def __init__(self, id: str, **options: Any):
        self.id = id
        self.options = options
        self.tooltip = options.get("tooltip")


class _Output:
    def __init__(self, display_name: str | None = None, tooltip: str | None = None, **_: Any):
        self.display_name = display_name
        self.tooltip = tooltip


def _io_type(io_type: str) -> type:
    return type(io_type, (), {"io_type": io_type,
                              "Input": type("Input", (_Input,), {"io_type": io_type}),
                              "Output": type("Output", (_Output,), {"io_type": io_type})})


@dataclass
class Schema:
    node_id: str
    display_name: str | None = None
    category: str = "sd"
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    description: str = ""
    is_output_node: bool = False
    hidden: list = field(default_factory=list)


class ComfyNode:
    hidden = None


class NodeOutput:
    def __init__(self, *args: Any, ui: Any = None):
        self.args = args
        self.ui = ui

    @property
    def result(self):
        return self.args if self.args else None


class ComfyExtension:
    async def get_node_list(self) -> list:
        raise NotImplementedError


def _io_module() -> types.ModuleType:
    io = types.ModuleType("comfy_api.latest.io")
    io.ComfyNode, io.Schema, io.NodeOutput = ComfyNode, Schema, NodeOutput
    io.UploadType = types.SimpleNamespace(image="image_upload")
    io.Hidden = types.SimpleNamespace(unique_id="UNIQUE_ID")
    for name, io_type in (("Image", "IMAGE"), ("Mask", "MASK"), ("Int", "INT"),
                          ("Float", "FLOAT"), ("String", "STRING"), ("Combo", "COMBO"),
                          ("Boolean", "BOOLEAN")):
        setattr(io, name, _io_type(io_type))
    io.Custom = _io_type
    return io


# ------------------------------------------------------------------ comfy.* and folder_paths


class InterruptProcessingException(Exception):
    pass


class ModelManagement(types.ModuleType):
    """`comfy.model_management` on the CPU: records placements; `interrupt()` arms Cancel."""

    OOM_EXCEPTION = torch.OutOfMemoryError
    InterruptProcessingException = InterruptProcessingException

    def __init__(self) -> None:
        super().__init__("comfy.model_management")
        self.reset()

    def reset(self) -> None:
        self.placed: list[tuple[list, int]] = []
        self.interrupt_after = None
        self.interrupt_checks = 0
        self.emptied = 0

    def get_torch_device(self) -> torch.device:
        return torch.device("cpu")

    def unet_offload_device(self) -> torch.device:
        return torch.device("cpu")

    def load_models_gpu(self, models: list, memory_required: int = 0, **_: Any) -> None:
        self.placed.append((list(models), memory_required))

    def soft_empty_cache(self, force: bool = False) -> None:
        self.emptied += 1

    def throw_exception_if_processing_interrupted(self) -> None:
        self.interrupt_checks += 1
        if self.interrupt_after is not None and self.interrupt_checks > self.interrupt_after:
            raise InterruptProcessingException()


class ProgressBar:
    """Records every value it is set to (in `ProgressBar.seen`, across bars)."""

    seen: list[tuple[int, int]] = []

    def __init__(self, total: int, node_id: str | None = None):
        self.total = total
        self.current = 0

    def update_absolute(self, value: int, total: int | None = None, preview=None) -> None:
        self.total = total or self.total
        self.current = min(value, self.total)
        ProgressBar.seen.append((self.current, self.total))

    def update(self, value: int) -> None:
        self.update_absolute(self.current + value)


class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size: int = 0):
        self.model, self.load_device, self.offload_device = model, load_device, offload_device


class PromptServer:
    """`server.PromptServer`: records the texts sent to nodes (`PromptServer.texts`)."""

    instance: PromptServer
    texts: list[tuple[str, str]] = []

    def send_progress_text(self, text: str, node_id: str, sid=None) -> None:
        PromptServer.texts.append((node_id, text))


PromptServer.instance = PromptServer()


class FolderPaths(types.ModuleType):
    """`folder_paths` over one base folder (`use(base)`): models/, input/ and output/."""

    def __init__(self) -> None:
        super().__init__("folder_paths")
        self.use(Path(os.devnull).parent)

    def use(self, base: Path) -> None:
        self.models_dir = str(base / "models")
        self.input_directory = str(base / "input")
        self.output_directory = str(base / "output")
        self.folder_names_and_paths: dict[str, tuple[list[str], set[str]]] = {}

    def get_folder_paths(self, name: str) -> list[str]:
        return list(self.folder_names_and_paths[name][0])

    def get_filename_list(self, name: str) -> list[str]:
        folders, extensions = self.folder_names_and_paths[name]
        return sorted(str(path.relative_to(folder)) for folder in map(Path, folders)
                      if folder.is_dir() for path in folder.rglob("*")
                      if path.suffix in extensions)

    def get_full_path(self, name: str, filename: str) -> str | None:
        for folder in self.folder_names_and_paths[name][0]:
            path = Path(folder) / filename
            if path.is_file():
                return str(path)
        return None

    def get_output_directory(self) -> str:
        return self.output_directory

    def get_input_directory(self) -> str:
        return self.input_directory

    def get_save_image_path(self, prefix: str, output_dir: str, width: int = 0,
                            height: int = 0) -> tuple[str, str, int, str, str]:
        subfolder, filename = os.path.split(os.path.normpath(prefix))
        folder = os.path.join(output_dir, subfolder)
        os.makedirs(folder, exist_ok=True)
        taken = [name for name in os.listdir(folder) if name.startswith(filename + "_")]
        return folder, filename, len(taken) + 1, subfolder, prefix


# ------------------------------------------------------------------------------- install

management = ModelManagement()
folder_paths = FolderPaths()


def install() -> bool:
    """Put the stand-ins into sys.modules unless ComfyUI's own `comfy_api` is importable;
    returns whether they are in use."""
    if "comfy_api" not in sys.modules and importlib.util.find_spec("comfy_api") is not None:
        return False
    if getattr(sys.modules.get("comfy_api"), "__stand_in__", False):
        return True
    latest = types.ModuleType("comfy_api.latest")
    latest.io, latest.ComfyExtension = _io_module(), ComfyExtension
    comfy_api = types.ModuleType("comfy_api")
    comfy_api.latest, comfy_api.__stand_in__ = latest, True
    comfy = types.ModuleType("comfy")
    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = ProgressBar
    patcher = types.ModuleType("comfy.model_patcher")
    patcher.ModelPatcher = ModelPatcher
    server = types.ModuleType("server")
    server.PromptServer = PromptServer
    comfy.model_management, comfy.utils, comfy.model_patcher = management, utils, patcher
    sys.modules.update({
        "comfy_api": comfy_api, "comfy_api.latest": latest, "comfy": comfy,
        "comfy.model_management": management, "comfy.utils": utils,
        "comfy.model_patcher": patcher, "folder_paths": folder_paths, "server": server,
    })
    return True
