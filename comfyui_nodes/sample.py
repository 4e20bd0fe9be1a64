"""The sample scene in ComfyUI's input folder, so the example workflows run as installed.

Load Image and SDDR Load Depth list only files in the input folder, as core's workflows load
its `example.png` from there. The pack writes `sddr demo`'s photo and 16-bit low/high depth
there once, under names no user file is likely to have, and never overwrites a file.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sddr_core import SddrError
from sddr_core.cli.demo import sample_inputs
from sddr_core.files.depth_io import write_depth, write_image

PHOTO = "sddr_sample_photo.png"
LOW = "sddr_sample_low.png"
HIGH = "sddr_sample_high.png"


def install_sample_scene(folder: str | Path) -> list[Path]:
    """Write the sample photo, low and high depth into `folder` where missing (atomically);
    the paths written. A folder that cannot be written is logged, not raised: the pack's
    nodes work without the sample."""
    folder = Path(folder)
    if all((folder / name).is_file() for name in (PHOTO, LOW, HIGH)):
        return []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        rgb, low, high, _ = sample_inputs()
        writers = {PHOTO: lambda path: write_image(path, rgb),
                   LOW: lambda path: write_depth(path, low),
                   HIGH: lambda path: write_depth(path, high)}
        return [write(folder / name) for name, write in writers.items()
                if not (folder / name).exists()]
    except (OSError, SddrError) as error:  # write_depth turns OSError into InputError
        logging.warning("[SDDR] could not write the sample scene into %s (%s): the example "
                        "workflows need its files there", folder, error)
        return []
