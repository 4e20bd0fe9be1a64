"""The add-on's operators (`sddr.*`; the ids are the contract scripts and tests use).

Each reads its settings, calls the bpy-free geometry or backend, copies the result into Blender
and reports. Any failure is reported with `self.report` and rolls back what it created, so the
scene is left as it was.
"""

import math
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import bpy
import numpy as np
from bpy.props import FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper

from . import animation, images
from .backend import (
    BackendError,
    Job,
    check_backend,
    frames_command,
    refine_command,
    refine_result,
    video_command,
)
from .camera import camera_data, match_render
from .file_meaning import settings_from_meaning
from .geometry import (
    GeometryError,
    Intrinsics,
    distance_map,
    distances,
    grid_mesh,
    plane_distance,
    plane_strength,
    snap_ramps,
    step_for_vertex_count,
    vertex_count,
)
from .materials import photo_material
from .meshes import write_mesh
from .prefs import preferences
from .props import MESH_SETTINGS, mesh_properties
from .rollback import rollback_on_error
from .sequence import FrameError, FrameSequence, find_frames, is_video

CAMERA_ROTATION = (math.pi / 2, 0.0, 0.0)
"""Camera and meshes share this rotation: camera space (−Z forward, +Y up) becomes world +Y
forward, +Z up, so the scene stands upright in Blender's Z-up world."""
INTRINSICS_KEY = "sddr_intrinsics"
"""Custom property on built objects: [width, height, fx, fy, cx, cy], read by add_camera."""
KIND_FOR_POLARITY = {"disparity": "DISPARITY", "depth": "DEPTH"}
PROBLEMS = (GeometryError, images.DepthFileError, BackendError, FrameError)


# ------------------------------------------------------------------------------- building

def intrinsics(settings, width: int, height: int) -> Intrinsics:
    if settings.camera_model == "LENS":
        return Intrinsics.from_lens(width, height, settings.focal_length, settings.sensor_width)
    return Intrinsics.from_fov(width, height, settings.fov)


def mesh_step(settings, width: int, height: int) -> int:
    if settings.density == "TARGET":
        return step_for_vertex_count(width, height, settings.target_vertices)
    return settings.step


def load_inputs(depth_path: str, image_path: str):
    """(depth H×W, photo image or None); a photo must have the depth map's size."""
    depth = images.read_depth(depth_path)
    photo = images.load_photo(image_path) if image_path else None
    if photo is not None and tuple(photo.size) != (depth.shape[1], depth.shape[0]):
        raise images.DepthFileError(
            f"image '{image_path}' is {photo.size[0]}×{photo.size[1]} but depth file "
            f"'{depth_path}' is {depth.shape[1]}×{depth.shape[0]}: they must be the same size")
    return depth, photo


def add_object(context, name: str, mesh: bpy.types.Mesh, k: Intrinsics,
               photo: bpy.types.Image | None, unlit: bool) -> bpy.types.Object:
    """Link a new object in the active collection, textured, selected and active."""
    if photo is not None:
        mesh.materials.append(photo_material(name, photo, unlit=unlit))
    obj = bpy.data.objects.new(name, mesh)
    obj.rotation_euler = CAMERA_ROTATION
    obj[INTRINSICS_KEY] = [k.width, k.height, k.fx, k.fy, k.cx, k.cy]
    context.collection.objects.link(obj)
    for other in context.selected_objects:
        other.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj
    return obj


def build_depth_mesh(context, settings, depth_path: str, image_path: str) -> bpy.types.Object:
    """The unprojected, cut, textured mesh of a depth file (and photo, when given)."""
    with rollback_on_error():
        depth, photo = load_inputs(depth_path, image_path)
        height, width = depth.shape
        k = intrinsics(settings, width, height)
        z = distances(depth, settings.depth_kind, scale=settings.depth_scale,
                      near=settings.near, far=settings.far)
        if settings.cut_edges and settings.snap_ramps:
            z = snap_ramps(z, settings.cut_ratio, settings.ramp_reach)
        grid = grid_mesh(z, k, step=mesh_step(settings, width, height),
                         cut_ratio=settings.cut_ratio if settings.cut_edges else None,
                         close_gaps=settings.close_gaps)
        if grid.face_count == 0:
            raise GeometryError(f"depth file '{depth_path}' gives no face: every quad was cut "
                                "or has no depth; raise Cut Ratio or check the depth kind")
        name = f"SDDR {Path(depth_path).stem}"
        return add_object(context, name, write_mesh(name, grid), k, photo, settings.unlit)


def build_animated_mesh(context, settings, depth_frames: FrameSequence,
                        photo_frames: FrameSequence | None) -> bpy.types.Object:
    """The mesh that follows the depth frames (`animation`), textured with the photo frames
    when given; camera, units and the sidecar's settings from the first frame. Sets the
    scene's frame range to the frames'."""
    with rollback_on_error():
        width, height = images.check_sizes(depth_frames, "depth frames")
        if photo_frames is not None:
            if (photo_frames.first, photo_frames.last) != (depth_frames.first, depth_frames.last):
                raise FrameError(f"photo frames {photo_frames.first}…{photo_frames.last} and "
                                 f"depth frames {depth_frames.first}…{depth_frames.last}: "
                                 "they must have the same frame numbers")
            images.check_sizes(photo_frames, "photo frames", (width, height), "the depth frames")
        first = str(depth_frames.files[0])
        values = images.read_depth(first)
        settings = with_file_meaning(settings, first, values)
        distances(values, settings.depth_kind, scale=settings.depth_scale, near=settings.near,
                  far=settings.far)  # refuses settings whose distances a mesh cannot hold
        mapping = distance_map(values, settings.depth_kind, scale=settings.depth_scale,
                               near=settings.near, far=settings.far)
        t_per_frame = {depth_frames.first + index: mapping.t_of_samples(
            *images.sample_values(str(file))) for index, file in enumerate(depth_frames.files)}
        k = intrinsics(settings, width, height)
        grid = grid_mesh(np.ones((height, width), np.float32), k,
                         step=mesh_step(settings, width, height))
        name = f"SDDR {depth_frames.files[0].stem} frames"
        mesh = write_mesh(name, grid)
        animation.add_grid_attributes(mesh, grid)
        photo = None if photo_frames is None else images.load_sequence(
            photo_frames, "photo frames", data=False)
        obj = add_object(context, name, mesh, k, photo, settings.unlit)
        if photo_frames is not None:
            animation.play_photo_frames(obj, photo_frames)
        animation.depth_frames_modifier(
            obj, images.load_sequence(depth_frames, "depth frames", data=True), mapping,
            t_per_frame, cut_edges=settings.cut_edges, cut_ratio=settings.cut_ratio)
        scene = context.scene
        scene.frame_start, scene.frame_end = depth_frames.first, depth_frames.last
        scene.frame_set(depth_frames.first)
        return obj


def with_file_meaning(settings, path: str, depth: np.ndarray) -> SimpleNamespace:
    """The mesh settings with what the sidecar of the depth file `path` (whose values are
    `depth`) says in place of the scene's, as choosing the file as Depth does for a still."""
    values = {name: getattr(settings, name) for name in MESH_SETTINGS}
    meaning = images.read_meaning(path)
    if meaning is not None:
        values.update(settings_from_meaning(meaning, depth))
    return SimpleNamespace(**values)


def frames_at(path: str, what: str) -> FrameSequence:
    """The numbered frames a (blend-relative) folder or file setting points at."""
    if not path:
        raise FrameError(f"no {what} set")
    if is_video(path):
        raise FrameError(f"{what} '{path}' is a video: Refine Frames decodes and refines it "
                         "(and points Photo Frames at the frames it decoded); Build Animated "
                         "Mesh takes numbered image frames")
    return find_frames(bpy.path.abspath(path), images.IMAGE_SUFFIXES, what)


def take_scene_settings(operator: bpy.types.Operator, scene_settings) -> None:
    """Fill the operator's mesh settings the caller did not set from the scene, so the redo
    panel starts from the sidebar's values."""
    for name in MESH_SETTINGS:
        if not operator.properties.is_property_set(name):
            setattr(operator, name, getattr(scene_settings, name))


def draw_vertex_count(layout, settings, depth_path: str) -> None:
    """The vertex count the current density gives, before building."""
    size = images.image_size(depth_path)
    if size is None:
        layout.label(text="Vertices: (no readable depth file)", icon="INFO")
        return
    try:
        count = vertex_count(*size, mesh_step(settings, *size))
    except GeometryError as err:
        layout.label(text=str(err), icon="ERROR")
        return
    layout.label(text=f"Vertices: {count:,} of {size[0]}×{size[1]} px", icon="MESH_GRID")


class _MeshBuilder:
    """`execute` of the operators that build from the mesh settings (the sidebar's values,
    changed in the redo panel): `_build` returns the object and a summary to report."""

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene_settings = context.scene.sddr
        take_scene_settings(self, scene_settings)
        try:
            obj, summary = self._build(context, scene_settings)
        except PROBLEMS as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{obj.name}: {len(obj.data.vertices):,} vertices, {summary}")
        return {"FINISHED"}


class SDDR_OT_build_mesh(_MeshBuilder, bpy.types.Operator):
    """Build a mesh whose vertices are the depth map's pixels unprojected through the camera,
    with depth ramps snapped to their sides and faces across discontinuities cut and closed"""

    bl_idname = "sddr.build_mesh"
    bl_label = "Build Mesh"
    bl_options = {"REGISTER", "UNDO"}
    __annotations__ = mesh_properties(for_operator=True)

    def _build(self, context, scene_settings) -> tuple[bpy.types.Object, str]:
        obj = build_depth_mesh(context, self, scene_settings.depth_path,
                               scene_settings.image_path)
        return obj, f"{len(obj.data.polygons):,} faces"

    def draw(self, context: bpy.types.Context) -> None:
        draw_mesh_settings(self.layout, self)
        draw_vertex_count(self.layout, self, context.scene.sddr.depth_path)


def draw_mesh_settings(layout, settings, *, animated: bool = False) -> None:
    """The mesh settings, for the sidebar and the redo panels alike; an animated mesh has no
    ramp snapping or gap closing."""
    for switch, value, when, otherwise in (
            ("depth_kind", "DEPTH", ("depth_scale",), ("near", "far")),
            ("camera_model", "FOV", ("fov",), ("focal_length", "sensor_width")),
            ("density", "STEP", ("step",), ("target_vertices",))):
        layout.prop(settings, switch)
        row = layout.row(align=True)
        for name in when if getattr(settings, switch) == value else otherwise:
            row.prop(settings, name)
    row = layout.row()
    row.prop(settings, "cut_edges")
    sub = row.row()
    sub.active = settings.cut_edges
    sub.prop(settings, "cut_ratio")
    if animated:
        layout.label(text=ANIMATED_NOTE, icon="INFO")
    else:
        row = layout.row()
        row.active = settings.cut_edges
        row.prop(settings, "snap_ramps")
        sub = row.row()
        sub.active = settings.cut_edges and settings.snap_ramps
        sub.prop(settings, "ramp_reach")
        layout.prop(settings, "close_gaps")
    layout.prop(settings, "unlit")


ANIMATED_NOTE = "Animated: cut per frame; ramps not snapped, cuts not closed"


class SDDR_OT_build_animated_mesh(_MeshBuilder, bpy.types.Operator):
    """Build a mesh that follows numbered depth frames, read as an image sequence by a
    Geometry Nodes modifier: each frame's depth along the first frame's camera rays, cut per
    frame"""

    bl_idname = "sddr.build_animated_mesh"
    bl_label = "Build Animated Mesh"
    bl_options = {"REGISTER", "UNDO"}
    __annotations__ = mesh_properties(for_operator=True)

    def _build(self, context, scene_settings) -> tuple[bpy.types.Object, str]:
        depth = frames_at(scene_settings.depth_frames, "depth frames")
        photos = (frames_at(scene_settings.photo_frames, "photo frames")
                  if scene_settings.photo_frames else None)
        obj = build_animated_mesh(context, self, depth, photos)
        return obj, f"frames {depth.first}…{depth.last}"

    def draw(self, context: bpy.types.Context) -> None:
        draw_mesh_settings(self.layout, self, animated=True)


class SDDR_OT_build_displaced_plane(bpy.types.Operator):
    """Build a subdivided plane facing the camera with a Displace modifier driven by the depth
    as a float texture: live and editable, but an orthographic relief without cut edges"""

    bl_idname = "sddr.build_displaced_plane"
    bl_label = "Build Displaced Plane"
    bl_options = {"REGISTER", "UNDO"}
    __annotations__ = {
        "strength": FloatProperty(name="Strength", default=1.0, soft_min=0.0, soft_max=10.0,
                                  description="Relief scale: 1 gives the true distances, in "
                                              "scene units. Left unset, the depth range sets "
                                              "it: the nearest part comes a quarter of the "
                                              "way to the camera, so the view stays usable"),
        "subdivisions": IntProperty(name="Subdivisions", default=256, min=2, soft_max=2048,
                                    description="Vertices along the image's long side"),
    }

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.sddr
        try:
            with rollback_on_error():
                obj = self._build(context, settings)
        except PROBLEMS as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{obj.name}: {len(obj.data.vertices):,} vertices, displaced "
                              f"at strength {self.strength:.3g} (1: true distances)")
        return {"FINISHED"}

    def draw(self, context: bpy.types.Context) -> None:
        self.layout.prop(self, "strength")
        self.layout.prop(self, "subdivisions")
        self.layout.label(text="Strength 1: true relief, in scene units (m)")

    def _build(self, context, settings) -> bpy.types.Object:
        depth, photo = load_inputs(settings.depth_path, settings.image_path)
        height, width = depth.shape
        k = intrinsics(settings, width, height)
        z = distances(depth, settings.depth_kind, scale=settings.depth_scale,
                      near=settings.near, far=settings.far)
        plane = plane_distance(z)
        if not self.properties.is_property_set("strength"):
            self.strength = plane_strength(z)
        relief = np.nan_to_num(np.clip(plane - z, 0.0, None), nan=0.0)  # towards the camera
        step = max(1, math.ceil(max(width, height) / self.subdivisions))
        grid = grid_mesh(np.full_like(z, plane), k, step=step)
        name = f"SDDR {Path(settings.depth_path).stem} plane"
        obj = add_object(context, name, write_mesh(name, grid), k, photo, settings.unlit)
        texture = bpy.data.textures.new(name, "IMAGE")
        texture.image = images.float_image(f"{name} relief", relief)
        texture.extension = "EXTEND"
        displace = obj.modifiers.new("SDDR Displace", "DISPLACE")
        displace.texture = texture
        displace.texture_coords = "UV"
        displace.uv_layer = "UVMap"
        displace.direction = "Z"
        displace.space = "LOCAL"
        displace.mid_level = 0.0
        displace.strength = self.strength
        return obj


class SDDR_OT_add_camera(bpy.types.Operator):
    """Add a camera with the depth mesh's intrinsics, so the mesh lines up with the photo seen
    through it; it becomes the scene camera and sets the render size"""

    bl_idname = "sddr.add_camera"
    bl_label = "Add Camera"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            with rollback_on_error():
                k = self._intrinsics(context)
                camera = bpy.data.objects.new("SDDR Camera", camera_data("SDDR Camera", k))
                camera.rotation_euler = CAMERA_ROTATION
                context.collection.objects.link(camera)
                context.scene.camera = camera
                match_render(context.scene, k)
        except PROBLEMS as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{camera.name}: {camera.data.lens:.2f} mm, {k.width}×{k.height}")
        return {"FINISHED"}

    @staticmethod
    def _intrinsics(context) -> Intrinsics:
        """The active SDDR object's camera, or the scene settings' for the depth file."""
        obj = context.active_object
        if obj is not None and INTRINSICS_KEY in obj:
            width, height, fx, fy, cx, cy = obj[INTRINSICS_KEY]
            return Intrinsics(int(width), int(height), fx, fy, cx, cy)
        settings = context.scene.sddr
        size = images.image_size(settings.depth_path or settings.image_path)
        if size is None:
            raise images.DepthFileError("no SDDR mesh is active and no readable depth or image "
                                        "file is set, so the camera's image size is unknown")
        return intrinsics(settings, *size)


# ------------------------------------------------------------------------------ refinement

class _WorkerRun:
    """An operator that runs the worker: to the end in one call (`execute`: background mode
    and scripts), or polled from a timer (`invoke`, `modal`) with progress and Esc. Each
    operator starts its job (`_start`) and uses the outcome (`_finish`); `UNIT` names one
    progress step, `CANCELLED` is the message after Esc."""

    def execute(self, context: bpy.types.Context) -> set[str]:
        """Background mode and scripts: run to the end in this call."""
        try:
            job = self._start(context)
            event = job.wait(on_event=lambda e: self._show(context, e))
        except PROBLEMS as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        return self._finish(context, event)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        """Interactive: poll the worker from a timer so Blender stays responsive."""
        try:
            self._job = self._start(context)
        except PROBLEMS as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        self._begin(context)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _begin(self, context) -> None:
        """The timer that polls the worker, and the progress displays at zero."""
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.progress_begin(0, 1)
        wm.sddr.running, wm.sddr.factor, wm.sddr.text = True, 0.0, "Starting sddr…"

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type == "ESC":
            self._job.cancel()
            self._end(context)
            self.report({"WARNING"}, self.CANCELLED)
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        for update in self._job.poll():
            self._show(context, update)
        if self._job.running:
            return {"PASS_THROUGH"}
        self._end(context)
        try:
            outcome = self._job.outcome()
        except BackendError as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        return self._finish(context, outcome)

    def _show(self, context, event: dict) -> None:
        """A worker event as progress (cursor, sidebar bar, status bar) or a warning."""
        if event["event"] == "warning":
            self.report({"WARNING"}, f"sddr: {event['message']}")
            return
        done, total = int(event["done"]), int(event["total"])  # 0: a video that says none
        text = f"SDDR: refining, {self.UNIT} {done}" + (f"/{total}" if total else "")
        factor = min(1.0, done / total) if total else 0.0
        wm = context.window_manager
        wm.progress_update(factor)
        wm.sddr.factor, wm.sddr.text = factor, text
        if context.workspace is not None:
            context.workspace.status_text_set(text)
        for area in context.screen.areas if context.screen else ():
            area.tag_redraw()

    def _end(self, context) -> None:
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        wm.sddr.running = False
        if context.workspace is not None:
            context.workspace.status_text_set(None)


class SDDR_OT_estimate_and_refine(_WorkerRun, bpy.types.Operator):
    """Estimate the photo's depth and refine it with sddr in the external Python (Esc cancels),
    then build the mesh"""

    bl_idname = "sddr.estimate_and_refine"
    bl_label = "Estimate & Refine"
    bl_options = {"UNDO"}  # no REGISTER: a redo panel would run the refinement again
    UNIT = "pass"
    CANCELLED = "Refinement cancelled; no depth file written"

    def _start(self, context) -> Job:
        settings, prefs = context.scene.sddr, preferences(context)
        photo = images.resolve(settings.image_path, "image file")
        self._output = depth_folder(prefs) / f"{photo.stem}.{settings.mode}.exr"
        return Job(refine_command(
            bpy.path.abspath(prefs.python), str(photo), str(self._output), mode=settings.mode,
            steps=settings.steps, weights=prefs.weights, predictor=prefs.predictor,
            device=prefs.device, snap_edges=settings.snap_edges), online=bpy.app.online_access)

    def _finish(self, context, outcome: dict) -> set[str]:
        """Build the mesh from the refined depth; only then point the scene at it."""
        settings = context.scene.sddr
        try:
            result = refine_result(outcome)
        except BackendError as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        mesh_settings = refined_settings(settings, result.polarity)
        kind = mesh_settings.depth_kind
        try:
            obj = build_depth_mesh(context, mesh_settings, str(result.path),
                                   settings.image_path)
        except PROBLEMS as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        settings.depth_path, settings.depth_kind = str(result.path), kind
        self.report({"INFO"}, f"Refined depth: {result.path}; {obj.name}: "
                              f"{len(obj.data.vertices):,} vertices")
        return {"FINISHED"}


class SDDR_OT_refine_frames(_WorkerRun, bpy.types.Operator):
    """Estimate and refine the depth of numbered photo frames or of a video as one clip in the
    external Python (Esc cancels; the frames refined so far stay), then build the animated
    mesh"""

    bl_idname = "sddr.refine_frames"
    bl_label = "Refine Frames"
    bl_options = {"UNDO"}  # no REGISTER: a redo panel would run the refinement again
    UNIT = "frame"
    CANCELLED = ("Refinement cancelled; the depth frames refined so far are complete, in the "
                 "Depth Folder")

    def _start(self, context) -> Job:
        settings, prefs = context.scene.sddr, preferences(context)
        options = {"weights": prefs.weights, "predictor": prefs.predictor,
                   "device": prefs.device, "snap_edges": settings.snap_edges}
        python, source = bpy.path.abspath(prefs.python), bpy.path.abspath(settings.photo_frames)
        if settings.photo_frames and is_video(source):
            if not Path(source).is_file():
                raise FrameError(f"photo frames: video '{source}' does not exist")
            self._photos = None  # the worker decodes them, beside the depth frames
            folder = depth_folder(prefs) / f"{Path(source).stem}.clip"
            return Job(video_command(python, source, str(folder), **options),
                       online=bpy.app.online_access)
        self._photos = frames_at(settings.photo_frames, "photo frames")
        images.check_sizes(self._photos, "photo frames")
        folder = depth_folder(prefs) / f"{self._photos.files[0].parent.name}.clip"
        return Job(frames_command(python, [str(f) for f in self._photos.files], str(folder),
                                  **options), online=bpy.app.online_access)

    def _finish(self, context, outcome: dict) -> set[str]:
        """Build the animated mesh from the frames the worker wrote, then point the scene at
        them (a video's Photo Frames at its decoded frames, which the mesh shows)."""
        settings = context.scene.sddr
        try:
            result = refine_result(outcome)
            photos = self._photos or FrameSequence(
                tuple(Path(f) for f in outcome.get("photos", ())), 1)
            written = FrameSequence(tuple(Path(f) for f in outcome.get("files", ())),
                                    photos.first)
            if len(written) != len(photos):
                raise BackendError(f"the worker wrote {len(written)} depth frames for "
                                   f"{len(photos)} photo frames")
            mesh_settings = refined_settings(settings, result.polarity)
            obj = build_animated_mesh(context, mesh_settings, written, photos)
        except PROBLEMS as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        settings.depth_frames, settings.depth_kind = str(result.path), mesh_settings.depth_kind
        if self._photos is None:
            settings.photo_frames = str(photos.files[0])
        self.report({"INFO"}, f"Refined {len(written)} frames into {result.path.parent}; "
                              f"{obj.name}: {len(obj.data.vertices):,} vertices")
        return {"FINISHED"}


def refined_settings(settings, polarity: str) -> SimpleNamespace:
    """The scene's mesh settings with the depth kind of the worker's predictor."""
    values = {name: getattr(settings, name) for name in MESH_SETTINGS}
    return SimpleNamespace(**{**values, "depth_kind": KIND_FOR_POLARITY.get(polarity,
                                                                              "DISPARITY")})


def depth_folder(prefs) -> Path:
    """Where refined depth goes: the preferences' Depth Folder, or the add-on's user folder."""
    if prefs.output_folder:
        return Path(bpy.path.abspath(prefs.output_folder))
    return Path(bpy.utils.extension_path_user(__package__, path="depth", create=True))


class SDDR_OT_check_backend(bpy.types.Operator):
    """Run the external Python and report its sddr, torch and device, or what Estimate &
    Refine still needs there (the predictors extra, the predictor's weights)"""

    bl_idname = "sddr.check_backend"
    bl_label = "Check Backend"

    def execute(self, context: bpy.types.Context) -> set[str]:
        prefs = preferences(context)
        try:
            summary = check_backend(bpy.path.abspath(prefs.python), prefs.predictor,
                                    online=bpy.app.online_access)
        except BackendError as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        self.report({"INFO"}, summary)
        return {"FINISHED"}


# ----------------------------------------------------------------------------------- export

class SDDR_OT_export_gltf(bpy.types.Operator, ExportHelper):
    """Export the active object as one GLB with its texture embedded (scaled down to Max
    Texture Size) and modifiers applied"""

    bl_idname = "sddr.export_gltf"
    bl_label = "Export GLB"
    filename_ext = ".glb"
    __annotations__ = {
        "filter_glob": StringProperty(default="*.glb", options={"HIDDEN"}),
        "max_texture_size": IntProperty(name="Max Texture Size", default=2048, min=16,
                                        max=16384, description="Longest texture side in the "
                                                               "file, in pixels"),
    }

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.active_object is not None and context.active_object.type == "MESH"

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = context.active_object
        target = Path(bpy.path.abspath(self.filepath)).with_suffix(".glb")
        temporary = target.with_name(f".{target.stem}.tmp-{secrets.token_hex(4)}.glb")
        try:
            with textures_at_most(obj, self.max_texture_size), only_selected(context, obj):
                bpy.ops.export_scene.gltf(filepath=str(temporary), export_format="GLB",
                                          use_selection=True, export_apply=True)
            os.replace(temporary, target)  # the file appears complete or not at all
        except (RuntimeError, OSError) as err:
            self.report({"ERROR"}, f"cannot export '{target}': {err}")
            return {"CANCELLED"}
        finally:
            temporary.unlink(missing_ok=True)
        self.report({"INFO"}, f"Exported {target}")
        return {"FINISHED"}


@contextmanager
def textures_at_most(obj: bpy.types.Object, side: int):
    """Swap images longer than `side` in the object's materials for scaled copies while
    exporting, then put the originals back."""
    swapped = []
    for material in filter(None, getattr(obj.data, "materials", ())):
        for node in material.node_tree.nodes if material.node_tree else ():
            image = getattr(node, "image", None)
            if image is not None and max(image.size) > side:
                factor = side / max(image.size)
                small = image.copy()
                small.scale(max(1, round(image.size[0] * factor)),
                            max(1, round(image.size[1] * factor)))
                swapped.append((node, image, small))
                node.image = small
    try:
        yield
    finally:
        for node, image, small in swapped:
            node.image = image
            bpy.data.images.remove(small)


@contextmanager
def only_selected(context, obj: bpy.types.Object):
    """Select just `obj` for the exporter's use_selection, then restore the selection."""
    selected = list(context.selected_objects)
    for other in selected:
        other.select_set(False)
    obj.select_set(True)
    try:
        yield
    finally:
        obj.select_set(False)
        for other in selected:
            other.select_set(True)


CLASSES = (SDDR_OT_build_mesh, SDDR_OT_build_displaced_plane, SDDR_OT_build_animated_mesh,
           SDDR_OT_add_camera, SDDR_OT_estimate_and_refine, SDDR_OT_refine_frames,
           SDDR_OT_check_backend, SDDR_OT_export_gltf)
