"""SDDR Depth to Mesh, a Blender extension (manifest: blender_manifest.toml).

Turns a photo, or an existing depth file, into a clean mesh lined up with a camera that
reproduces the photo. Depth is refined by sddr running in an external Python (worker.py), so
torch never loads inside Blender. Blender modules are imported only in register(), so the
bpy-free parts (geometry, backend) import and test without Blender.
"""


def _classes() -> tuple:
    from . import operators, panels, prefs, props

    return props.CLASSES + prefs.CLASSES + operators.CLASSES + panels.CLASSES


def register() -> None:
    import bpy

    from . import props

    for cls in _classes():
        bpy.utils.register_class(cls)
    props.attach()


def unregister() -> None:
    import bpy

    from . import props

    props.detach()
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
