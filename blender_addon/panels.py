"""The "SDDR" tab of the 3D viewport's sidebar: input files, refinement, mesh, camera/export.
Panels only draw; the operators change data."""

import bpy

from .operators import ANIMATED_NOTE, draw_mesh_settings, draw_vertex_count


class SDDR_PT_main(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "SDDR"
    bl_label = "SDDR Depth"

    def draw(self, context: bpy.types.Context) -> None:
        settings = context.scene.sddr
        self.layout.prop(settings, "image_path")
        self.layout.prop(settings, "depth_path")


class _SubPanel(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "SDDR"
    bl_parent_id = "SDDR_PT_main"


class SDDR_PT_refine(_SubPanel):
    bl_label = "Refine"

    def draw(self, context: bpy.types.Context) -> None:
        settings, progress = context.scene.sddr, context.window_manager.sddr
        layout = self.layout
        layout.prop(settings, "mode")
        if settings.mode == "two-stage":
            layout.prop(settings, "steps")
        layout.prop(settings, "snap_edges")
        if not draw_progress(layout, progress):
            layout.operator("sddr.estimate_and_refine", icon="PLAY")


def draw_progress(layout, progress) -> bool:
    """The running refinement's bar, if one runs."""
    if progress.running:
        layout.progress(factor=progress.factor, type="BAR", text=progress.text)
        layout.label(text="Esc cancels", icon="INFO")
    return progress.running


LABELS = {"depth_kind": "Depth Kind", "depth_scale": "Depth Scale", "near": "Near",
          "far": "Far", "fov": "Field of View", "focal_length": "Focal Length",
          "sensor_width": "Sensor Width"}


class SDDR_PT_mesh(_SubPanel):
    bl_label = "Mesh"

    def draw(self, context: bpy.types.Context) -> None:
        settings = context.scene.sddr
        draw_file_meaning(self.layout, settings)
        draw_mesh_settings(self.layout, settings)
        self.layout.label(text="Distances in scene units (metres when Near/Far are metres)",
                          icon="DRIVER_DISTANCE")
        draw_vertex_count(self.layout, settings, settings.depth_path)
        row = self.layout.row(align=True)
        row.operator("sddr.build_mesh", icon="MESH_GRID")
        row.operator("sddr.build_displaced_plane", icon="MOD_DISPLACE")


def draw_file_meaning(layout, settings) -> None:
    """Which of the settings in use the depth file's sidecar gave, and which are assumed."""
    if settings.file_error:
        layout.label(text=settings.file_error, icon="ERROR")
        return
    if not settings.depth_path:
        return
    in_use = ["depth_kind", *(("depth_scale",) if settings.depth_kind == "DEPTH"
                              else ("near", "far")),
              *(("fov",) if settings.camera_model == "FOV" else ("focal_length", "sensor_width"))]
    given = settings.from_file.split(",")
    assumed = [LABELS[name] for name in in_use if name not in given]
    if not assumed:
        layout.label(text=f"From {settings.sidecar}", icon="CHECKMARK")
    elif settings.sidecar:
        layout.label(text=f"Assumed, not in {settings.sidecar}: {', '.join(assumed)}",
                     icon="QUESTION")
    else:
        layout.label(text=f"Assumed, the depth file has no sidecar: {', '.join(assumed)}",
                     icon="QUESTION")


class SDDR_PT_animation(_SubPanel):
    bl_label = "Animation"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        settings, progress = context.scene.sddr, context.window_manager.sddr
        layout = self.layout
        layout.prop(settings, "photo_frames")
        if not draw_progress(layout, progress):
            layout.operator("sddr.refine_frames", icon="SEQUENCE")
        layout.prop(settings, "depth_frames")
        layout.label(text=ANIMATED_NOTE, icon="INFO")
        layout.label(text="Mesh settings: the Mesh panel's; camera from the first frame",
                     icon="MESH_GRID")
        layout.operator("sddr.build_animated_mesh", icon="MOD_DISPLACE")


class SDDR_PT_output(_SubPanel):
    bl_label = "Camera & Export"

    def draw(self, context: bpy.types.Context) -> None:
        row = self.layout.row(align=True)
        row.operator("sddr.add_camera", icon="CAMERA_DATA")
        row.operator("sddr.export_gltf", icon="EXPORT")


CLASSES = (SDDR_PT_main, SDDR_PT_refine, SDDR_PT_mesh, SDDR_PT_animation, SDDR_PT_output)
