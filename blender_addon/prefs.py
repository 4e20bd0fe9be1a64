"""Machine-level settings (the add-on's preferences): which Python runs sddr, on what device,
with which weights and predictor, and where refined depth goes."""

import bpy
from bpy.props import EnumProperty, StringProperty


class SDDR_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    __annotations__ = {
        "python": StringProperty(
            name="External Python", subtype="FILE_PATH",
            description="A Python with sddr and torch installed (e.g. <venv>/bin/python); "
                        "refinement runs there, never inside Blender"),
        "device": EnumProperty(name="Device", default="auto", items=[
            ("auto", "Auto", "CUDA when available, else CPU"),
            ("cpu", "CPU", ""), ("cuda", "CUDA", "")]),
        "weights": StringProperty(
            name="Weights", default="default",
            description="'default' (bundled), a .safetensors path or hf://owner/repo/file@rev"),
        "predictor": StringProperty(
            name="Predictor", default="depth-anything-v2-small",
            description="Depth predictor sddr runs on the photo (see sddr info)"),
        "output_folder": StringProperty(
            name="Depth Folder", subtype="DIR_PATH",
            description="Where refined depth maps are written (empty: the add-on's user "
                        "folder)"),
    }

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "python")
        row = layout.row()
        row.prop(self, "device")
        row.operator("sddr.check_backend", icon="CHECKMARK")
        layout.prop(self, "weights")
        layout.prop(self, "predictor")
        layout.prop(self, "output_folder")


def preferences(context: bpy.types.Context) -> SDDR_AP_preferences:
    return context.preferences.addons[__package__].preferences


CLASSES = (SDDR_AP_preferences,)
