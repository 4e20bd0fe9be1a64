"""SDDR depth refinement as ComfyUI nodes (V3 schema), over `sddr_core`.

`nodes` holds the six nodes and `comfy_entrypoint`; `host` every import from ComfyUI;
`models` the model folders, devices and memory; `depth_maps` the IMAGE ↔ depth-map rules,
which need no ComfyUI; `sample` the sample scene the example workflows load. Importing
this package imports nothing from ComfyUI.
"""
