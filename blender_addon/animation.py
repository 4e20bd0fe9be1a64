"""An animated, camera-aligned mesh: a fixed grid of camera rays that a Geometry Nodes tree
moves every frame to the distances of that frame's depth file, read as an image sequence
(decision 260: it played back faster than the alternatives that keep memory flat).

The grid is built once (`geometry.grid_mesh` at distance 1, so each vertex is its pixel's ray)
and holds, per vertex, its pixel centre (`UV`) and, per face, its four corner vertices
(`CORNERS`). Per frame the tree

1. samples the depth frame at each vertex's pixel centre (Closest: the pixel itself),
2. turns the sample into a distance: t = t₀ + t₁·sample (keyframed per frame, since each
   frame's file maps its codes to values in its own way), then the first frame's
   `DistanceMap`, so every frame has the first frame's units,
3. moves the vertex along its ray to that distance,
4. with Cut Edges on, deletes every face whose farthest corner is more than Cut Ratio farther
   than its nearest (the still mesh's rule, on each frame's own depth),
5. deletes the vertices without a usable distance (≤ 0, NaN, infinite) and their faces.

Ramps are not snapped and cuts are not closed (numpy passes over the whole map, which the
tree does not run). Cut Edges and Cut Ratio are the modifier's inputs, so they stay editable.
"""

import bpy
import numpy as np
from bpy_extras import anim_utils

from .geometry import DistanceMap, GridMesh
from .sequence import FrameSequence

UV = "sddr_uv"
CORNERS = tuple(f"sddr_corner_{i}" for i in range(4))
DISTANCE = "sddr_distance"
MODIFIER = "SDDR Depth Frames"
FLOAT32_MAX = float(np.finfo(np.float32).max)


def add_grid_attributes(mesh: bpy.types.Mesh, grid: GridMesh) -> None:
    """The grid's per-vertex pixel centres and per-face corners, which the tree reads."""
    uv = np.zeros((len(grid.positions), 3), np.float32)
    uv[grid.corner_verts, :2] = grid.uvs  # a vertex's corners all show its pixel centre
    mesh.attributes.new(UV, "FLOAT_VECTOR", "POINT").data.foreach_set("vector", uv.ravel())
    for index, name in enumerate(CORNERS):
        corner = mesh.attributes.new(name, "INT", "FACE")
        corner.data.foreach_set("value", grid.corner_verts[index::4])


def depth_frames_modifier(obj: bpy.types.Object, depth: bpy.types.Image,
                          mapping: DistanceMap, t_per_frame: dict[int, tuple[float, float]],
                          *, cut_edges: bool, cut_ratio: float) -> bpy.types.NodesModifier:
    """The Geometry Nodes modifier that animates `obj`'s grid from the image sequence `depth`.

    `t_per_frame`: frame number → (t₀, t₁) of that frame's file (`DistanceMap.t_of_samples`).
    """
    tree = bpy.data.node_groups.new(f"{obj.name} depth frames", "GeometryNodeTree")
    interface = tree.interface
    interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    cut = interface.new_socket("Cut Edges", in_out="INPUT", socket_type="NodeSocketBool")
    ratio = interface.new_socket("Cut Ratio", in_out="INPUT", socket_type="NodeSocketFloat")
    ratio.min_value = 1e-4
    interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    _Builder(tree).build(depth, mapping, t_per_frame)
    modifier = obj.modifiers.new(MODIFIER, "NODES")
    modifier.node_group = tree
    modifier[cut.identifier] = cut_edges
    modifier[ratio.identifier] = cut_ratio
    return modifier


def play_photo_frames(obj: bpy.types.Object, frames: FrameSequence) -> None:
    """Make the photo texture of `obj`'s material show frame f of `frames` at scene frame f."""
    for node in obj.data.materials[0].node_tree.nodes:
        if node.type == "TEX_IMAGE":
            user = node.image_user
            user.frame_duration, user.frame_start = len(frames), frames.first
            user.frame_offset = frames.first - 1  # file number = scene frame
            user.use_auto_refresh = True


class _Builder:
    """Nodes and links of the tree, in the order of the module docstring's steps."""

    def __init__(self, tree: bpy.types.NodeTree) -> None:
        self.tree = tree

    def node(self, kind: str, *inputs, **settings) -> bpy.types.Node:
        """A new node; `inputs` are linked (sockets) or set (values) in order, skipping None."""
        node = self.tree.nodes.new(kind)
        for name, value in settings.items():
            setattr(node, name, value)
        for socket, value in zip(node.inputs, inputs, strict=False):
            if isinstance(value, bpy.types.NodeSocket):
                self.tree.links.new(value, socket)
            elif value is not None:
                socket.default_value = value
        return node

    def math(self, operation: str, *inputs, clamp: bool = False) -> bpy.types.NodeSocket:
        return self.node("ShaderNodeMath", *inputs, operation=operation,
                         use_clamp=clamp).outputs[0]

    def build(self, depth: bpy.types.Image, mapping: DistanceMap,
              t_per_frame: dict[int, tuple[float, float]]) -> None:
        group_in = self.node("NodeGroupInput")
        geometry, cut_edges, cut_ratio = group_in.outputs[:3]
        # 1. The frame's sample at each vertex's pixel.
        uv = self.node("GeometryNodeInputNamedAttribute", UV, data_type="FLOAT_VECTOR")
        frame = self.node("GeometryNodeInputSceneTime").outputs["Frame"]
        texture = self.node("GeometryNodeImageTexture", depth, uv.outputs["Attribute"], frame,
                            interpolation="Closest", extension="EXTEND")
        sample = self.node("FunctionNodeSeparateColor", texture.outputs["Color"]).outputs[0]
        # 2. Its distance.
        t0, t1 = self._per_frame(t_per_frame)
        t = self.math("MULTIPLY_ADD", sample, t1, t0, clamp=mapping.clamp)
        r = self.math("MULTIPLY_ADD", t, mapping.gain, mapping.offset)
        distance = self.math("DIVIDE", 1.0, r) if mapping.inverse else r
        stored = self.node("GeometryNodeStoreNamedAttribute", geometry, None, DISTANCE,
                           distance, data_type="FLOAT", domain="POINT").outputs[0]
        # 3. Each vertex along its ray (at distance 1 in the grid).
        ray = self.node("GeometryNodeInputPosition").outputs[0]
        position = self.node("ShaderNodeVectorMath", ray, None, None, distance,
                             operation="SCALE").outputs[0]
        moved = self.node("GeometryNodeSetPosition", stored, None, position).outputs[0]
        # 4. Faces across a depth discontinuity, when cutting.
        read = self.node("GeometryNodeInputNamedAttribute", DISTANCE, data_type="FLOAT")
        corners = [self.node("GeometryNodeSampleIndex", moved, read.outputs["Attribute"],
                             self.node("GeometryNodeInputNamedAttribute", name,
                                       data_type="INT").outputs["Attribute"],
                             data_type="FLOAT", domain="POINT").outputs[0]
                   for name in CORNERS]
        farthest = self.math("MAXIMUM", self.math("MAXIMUM", *corners[:2]),
                             self.math("MAXIMUM", *corners[2:]))
        nearest = self.math("MINIMUM", self.math("MINIMUM", *corners[:2]),
                            self.math("MINIMUM", *corners[2:]))
        limit = self.math("MULTIPLY", nearest, self.math("ADD", 1.0, cut_ratio))
        across = self.math("GREATER_THAN", farthest, limit)
        cut = self.node("GeometryNodeDeleteGeometry", moved, across, domain="FACE",
                        mode="ONLY_FACE").outputs[0]
        kept = self.node("GeometryNodeSwitch", cut_edges, moved, cut,
                         input_type="GEOMETRY").outputs[0]
        # 5. Vertices without a usable distance (comparisons with NaN are false).
        usable = self.node("FunctionNodeBooleanMath",
                           self.node("FunctionNodeCompare", read.outputs["Attribute"], 0.0,
                                     data_type="FLOAT", operation="GREATER_THAN").outputs[0],
                           self.node("FunctionNodeCompare", read.outputs["Attribute"],
                                     FLOAT32_MAX, data_type="FLOAT",
                                     operation="LESS_THAN").outputs[0],
                           operation="NAND").outputs[0]
        result = self.node("GeometryNodeDeleteGeometry", kept, usable, domain="POINT",
                           mode="ALL").outputs[0]
        self.tree.links.new(result, self.node("NodeGroupOutput").inputs[0])

    def _per_frame(self, t_per_frame: dict[int, tuple[float, float]]):
        """Value nodes holding t₀ and t₁: constant when every frame has the same, else one
        constant-interpolated key per frame."""
        values = [self.node("ShaderNodeValue", name=name) for name in ("t0", "t1")]
        first = next(iter(t_per_frame.values()))
        for node, value in zip(values, first, strict=True):
            node.outputs[0].default_value = value
        if any(pair != first for pair in t_per_frame.values()):
            for frame, pair in t_per_frame.items():
                for node, value in zip(values, pair, strict=True):
                    node.outputs[0].default_value = value
                    node.outputs[0].keyframe_insert("default_value", frame=frame)
            for curve in _fcurves(self.tree):
                for key in curve.keyframe_points:
                    key.interpolation = "CONSTANT"
        return [node.outputs[0] for node in values]


def _fcurves(data: bpy.types.ID):
    """The F-curves of `data`'s action: in its slot's channel bag since 4.4's layered actions."""
    action = data.animation_data.action
    if hasattr(action, "fcurves"):
        return action.fcurves
    return anim_utils.action_get_channelbag_for_slot(action, data.animation_data.action_slot
                                                     ).fcurves
