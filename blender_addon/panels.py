"""The "SDDR" tab of the 3D viewport's sidebar: input files, refinement, mesh, camera/export.
Panels only draw; the operators change data."""

import bpy

from .operators import draw_mesh_settings, draw_vertex_count


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
        if progress.running:
            layout.progress(factor=progress.factor, type="BAR", text=progress.text)
            layout.label(text="Esc cancels", icon="INFO")
        else:
            layout.operator("sddr.estimate_and_refine", icon="PLAY")


class SDDR_PT_mesh(_SubPanel):
    bl_label = "Mesh"

    def draw(self, context: bpy.types.Context) -> None:
        settings = context.scene.sddr
        draw_mesh_settings(self.layout, settings)
        draw_vertex_count(self.layout, settings, settings.depth_path)
        row = self.layout.row(align=True)
        row.operator("sddr.build_mesh", icon="MESH_GRID")
        row.operator("sddr.build_displaced_plane", icon="MOD_DISPLACE")


class SDDR_PT_output(_SubPanel):
    bl_label = "Camera & Export"

    def draw(self, context: bpy.types.Context) -> None:
        row = self.layout.row(align=True)
        row.operator("sddr.add_camera", icon="CAMERA_DATA")
        row.operator("sddr.export_gltf", icon="EXPORT")


CLASSES = (SDDR_PT_main, SDDR_PT_refine, SDDR_PT_mesh, SDDR_PT_output)
