"""Settings: per scene (`scene.sddr`: files, refinement, mesh) and the refinement's progress on
the window manager. The mesh settings are shared with the build operators, whose redo panel
shows them."""

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from . import images
from .depth_meaning import sidecar_path
from .file_meaning import settings_from_meaning
from .geometry import RAMP_REACH

DEPTH_KIND_ITEMS = [
    ("DISPARITY", "Disparity (relative)",
     "Larger values are nearer (Depth Anything, MiDaS, sddr with them); mapped onto Near…Far"),
    ("RELATIVE_DEPTH", "Depth (relative)", "Larger values are farther; mapped onto Near…Far"),
    ("DEPTH", "Depth (metric)", "Values are distances; multiplied by Depth Scale"),
]


def mesh_properties(*, for_operator: bool = False) -> dict:
    """The mesh settings, as annotations for both the scene settings and the operators.

    An operator's copies are not remembered between calls (SKIP_SAVE): each call starts from
    the sidebar's values, and only its redo panel changes them.
    """
    properties = {
        "depth_kind": EnumProperty(name="Depth Kind", items=DEPTH_KIND_ITEMS,
                                   default="DISPARITY"),
        "depth_scale": FloatProperty(name="Depth Scale", default=1.0, min=1e-6, soft_max=100,
                                     description="Metric depth: scene units per depth unit"),
        "near": FloatProperty(name="Near", default=1.0, min=1e-4, unit="LENGTH",
                              description="Relative depth: distance of the nearest values"),
        "far": FloatProperty(name="Far", default=10.0, min=1e-3, unit="LENGTH",
                             description="Relative depth: distance of the farthest values"),
        "camera_model": EnumProperty(name="Camera", default="FOV", items=[
            ("FOV", "Field of View", "Horizontal field of view"),
            ("LENS", "Focal Length", "Focal length and sensor width in millimetres")]),
        "fov": FloatProperty(name="Field of View", default=60.0, min=1.0, max=179.0,
                             description="Horizontal field of view of the photo, in degrees"),
        "focal_length": FloatProperty(name="Focal Length", default=35.0, min=0.1,
                                      description="Focal length in millimetres"),
        "sensor_width": FloatProperty(name="Sensor Width", default=36.0, min=0.1,
                                      description="Sensor width in millimetres"),
        "density": EnumProperty(name="Density", default="TARGET", items=[
            ("STEP", "Pixel Step", "One vertex every Step pixels"),
            ("TARGET", "Vertex Count", "The finest step with at most Target Vertices")]),
        "step": IntProperty(name="Step", default=1, min=1, soft_max=16,
                            description="Keep every n-th pixel as a vertex"),
        "target_vertices": IntProperty(name="Target Vertices", default=1_000_000, min=4,
                                       description="Most vertices the pixel grid may have "
                                                   "(Close Gaps adds some along cuts)"),
        "cut_edges": BoolProperty(name="Cut Edges", default=True,
                                  description="Remove faces across depth discontinuities"),
        "cut_ratio": FloatProperty(name="Cut Ratio", default=0.05, min=1e-4, soft_max=1.0,
                                   description="Cut a face when its farthest corner is more "
                                               "than this fraction farther than its nearest"),
        "snap_ramps": BoolProperty(name="Snap Ramps", default=True,
                                   description="Before cutting, move pixels floating on a "
                                               "depth ramp onto its nearer or farther side"),
        "ramp_reach": IntProperty(name="Ramp Reach", default=RAMP_REACH, min=1, soft_max=64,
                                  description="Pixels a ramp may extend on either side of a "
                                              "pixel on it; slopes longer than that are kept"),
        "close_gaps": BoolProperty(name="Close Gaps", default=True,
                                   description="Close each cut (the background goes on under "
                                               "the foreground's edge, which covers its whole "
                                               "pixels) and the half pixel along the image's "
                                               "border, so the camera sees no gap"),
        "unlit": BoolProperty(name="Unlit", default=False,
                              description="Show the photo as is (exports as KHR_materials_"
                                          "unlit) instead of a lit, fully rough surface"),
    }
    if not for_operator:
        return properties
    return {name: deferred.function(**{**deferred.keywords, "options": {"SKIP_SAVE"}})
            for name, deferred in properties.items()}


MESH_SETTINGS = tuple(mesh_properties())


def take_file_meaning(settings, context=None) -> None:
    """`depth_path`'s update: set the mesh settings its sidecar gives and record which
    (`from_file`), so the sidebar can call the rest assumed; a sidecar or depth file that cannot
    be read is recorded in `file_error` (the build operators refuse it, naming it)."""
    settings.sidecar = settings.from_file = settings.file_error = ""
    if not settings.depth_path:
        return
    try:
        meaning = images.read_meaning(settings.depth_path)
        if meaning is None:
            return
        given = settings_from_meaning(meaning, images.read_depth(settings.depth_path))
    except (images.DepthFileError, ValueError) as err:
        settings.file_error = str(err)
        return
    for name, value in given.items():
        setattr(settings, name, value)
    settings.sidecar = sidecar_path(settings.depth_path).name
    settings.from_file = ",".join(given)


class SDDR_PG_scene(bpy.types.PropertyGroup):
    """Per-scene settings (`scene.sddr`)."""

    __annotations__ = {
        "image_path": StringProperty(name="Image", subtype="FILE_PATH",
                                     description="The photo (texture, and input to refine)"),
        "depth_path": StringProperty(name="Depth", subtype="FILE_PATH",
                                     description="Depth map (EXR, 16-bit PNG, TIFF, NPY); its "
                                                 "sidecar (.sddr.json), if any, sets the "
                                                 "kind, Near/Far and field of view",
                                     update=take_file_meaning),
        "sidecar": StringProperty(description="The sidecar the depth file's settings came "
                                              "from; empty: none"),
        "from_file": StringProperty(description="Comma-separated settings the sidecar gave"),
        "file_error": StringProperty(description="Why the depth file or its sidecar cannot "
                                                 "be read"),
        "photo_frames": StringProperty(
            name="Photo Frames", subtype="FILE_PATH",
            description="Numbered photo frames (a folder, or one of them: shot_0001.png, …) "
                        "or a video file (.mp4, .mkv, .mov, …): the input of Refine Frames "
                        "and the animated mesh's texture"),
        "depth_frames": StringProperty(
            name="Depth Frames", subtype="FILE_PATH",
            description="Numbered depth frames (a folder, or one of them) for Build Animated "
                        "Mesh; the first frame's sidecar, if any, sets the kind, Near/Far and "
                        "field of view"),
        "mode": EnumProperty(name="Mode", default="one-stage", items=[
            ("one-stage", "One-Stage", "One refinement pass"),
            ("two-stage", "Two-Stage", "Coarse to fine windows: sharper, about 15-19× slower")]),
        "steps": IntProperty(name="Steps", default=3, min=1, max=8,
                             description="Coarse-to-fine steps of two-stage refinement"),
        "snap_edges": BoolProperty(
            name="Snap edges to photo", default=False,
            description="Move the pixels of the refined depth's soft edges onto the nearer "
                        "or farther side, as the photo's colours show, so no vertex floats "
                        "between foreground and background"),
        **mesh_properties(),
    }


class SDDR_PG_progress(bpy.types.PropertyGroup):
    """A running refinement, for the sidebar's progress bar (`window_manager.sddr`)."""

    __annotations__ = {
        "running": BoolProperty(default=False),
        "factor": FloatProperty(default=0.0, min=0.0, max=1.0),
        "text": StringProperty(default=""),
    }


CLASSES = (SDDR_PG_scene, SDDR_PG_progress)


def attach() -> None:
    bpy.types.Scene.sddr = PointerProperty(type=SDDR_PG_scene)
    bpy.types.WindowManager.sddr = PointerProperty(type=SDDR_PG_progress)


def detach() -> None:
    del bpy.types.Scene.sddr
    del bpy.types.WindowManager.sddr
