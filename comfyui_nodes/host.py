"""Everything the pack takes from ComfyUI, in one module.

`comfy_api.latest` (the V3 node schema) is imported here and nowhere else, so pinning the pack
to a numbered API later is one line. ComfyUI's runtime modules are imported inside functions:
`comfy.model_management` picks and initialises a device when it is first imported, which must
not happen when the pack is merely imported.
"""

from __future__ import annotations

import logging
from types import ModuleType

import torch
from comfy_api.latest import ComfyExtension, io

__all__ = ["ComfyExtension", "folder_paths", "interrupt_check", "io", "model_management",
           "model_patcher", "progress_bar", "warn_user"]


def model_management() -> ModuleType:
    """`comfy.model_management`: devices, loading and offloading, interrupts, OOM type."""
    import comfy.model_management

    return comfy.model_management


def folder_paths() -> ModuleType:
    """ComfyUI's `folder_paths`: the models and output folders."""
    import folder_paths

    return folder_paths


def progress_bar(total: int):
    """A `comfy.utils.ProgressBar` over `total` steps, shown on the running node."""
    import comfy.utils

    return comfy.utils.ProgressBar(total)


def interrupt_check() -> bool:
    """Raise ComfyUI's interrupt exception if the user pressed Cancel; else False.

    Used as the core's `cancel()` callable: the core polls it between windows, and the raise
    stops the run the way ComfyUI expects (the queue shows "interrupted", not an error).
    """
    model_management().throw_exception_if_processing_interrupted()
    return False


def model_patcher(module: torch.nn.Module, load_device: torch.device):
    """A `ModelPatcher` so ComfyUI loads `module` onto `load_device` when it runs and may move
    it to the offload device when other models of the graph need the memory."""
    from comfy.model_patcher import ModelPatcher

    return ModelPatcher(module, load_device=load_device,
                        offload_device=model_management().unet_offload_device())


def warn_user(node_id: str | None, text: str) -> None:
    """Show `text` on the running node in the web UI, as core's Get Image Size shows its
    figures (the text stays under the node until the next message), and in the server log.

    `node_id` is the node's `unique_id` (None outside a server: the log only).
    """
    logging.warning("[SDDR] %s", text)
    if node_id is not None:
        from server import PromptServer

        PromptServer.instance.send_progress_text(text, node_id)
