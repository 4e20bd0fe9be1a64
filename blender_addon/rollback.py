"""Leave the scene as it was when an operator fails half-way: whatever data it created is
removed again, so an error never leaves a stray object, mesh, image or material behind."""

import contextlib
from collections.abc import Iterator

import bpy

COLLECTIONS = ("objects", "meshes", "materials", "images", "textures", "cameras", "node_groups",
               "actions")


@contextlib.contextmanager
def rollback_on_error() -> Iterator[None]:
    """Remove the datablocks created inside the block if it raises; re-raise."""
    before = {name: set(getattr(bpy.data, name)) for name in COLLECTIONS}
    try:
        yield
    except BaseException:
        for name in COLLECTIONS:  # objects first: they use the other data
            blocks = getattr(bpy.data, name)
            for block in [b for b in blocks if b not in before[name]]:
                blocks.remove(block)
        raise
