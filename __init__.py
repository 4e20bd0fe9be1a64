"""A clone of this repository in ComfyUI/custom_nodes/ is the SDDR node pack.

ComfyUI imports this file and calls `comfy_entrypoint`. The nodes (and with them ComfyUI's
`comfy_api`) are imported inside it, never at module level: pytest imports this folder as a
package before the project's tests, where ComfyUI is absent. See docs/comfyui.md.
"""

import importlib.util
import sys
from pathlib import Path

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    """The pack's `ComfyExtension` (six SDDR nodes)."""
    if importlib.util.find_spec("sddr_core") is None:
        _use_bundled_core()
    from .comfyui_nodes.nodes import comfy_entrypoint as entrypoint

    return await entrypoint()


def _use_bundled_core() -> None:
    """Import this clone's `sddr_core` under its own name when ComfyUI's Python has no
    installed one (an install through ComfyUI-Manager runs only requirements.txt)."""
    folder = Path(__file__).parent / "sddr_core"
    spec = importlib.util.spec_from_file_location(
        "sddr_core", folder / "__init__.py", submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["sddr_core"] = module
    spec.loader.exec_module(module)
