"""The photo as the mesh's material: an Image Texture into Principled BSDF (roughness 1), or
into a Background shader when unlit, which the glTF exporter writes as KHR_materials_unlit."""

import bpy


def photo_material(name: str, image: bpy.types.Image, *, unlit: bool) -> bpy.types.Material:
    """A material showing `image` through the mesh's UVs."""
    material = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):  # node materials are the only kind from 5.0 on
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    output = nodes.new("ShaderNodeOutputMaterial")
    texture = nodes.new("ShaderNodeTexImage")
    texture.image = image
    texture.interpolation = "Closest"  # one texel per pixel, as the mesh's UVs are its centres
    if unlit:
        shader = nodes.new("ShaderNodeBackground")
        links.new(texture.outputs["Color"], shader.inputs["Color"])
        links.new(shader.outputs["Background"], output.inputs["Surface"])
    else:
        shader = nodes.new("ShaderNodeBsdfPrincipled")
        shader.inputs["Roughness"].default_value = 1.0
        links.new(texture.outputs["Color"], shader.inputs["Base Color"])
        links.new(shader.outputs["BSDF"], output.inputs["Surface"])
    texture.location, shader.location, output.location = (-500, 0), (-150, 0), (150, 0)
    return material
