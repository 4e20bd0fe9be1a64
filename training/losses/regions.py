"""The edge-dense regions P_n of L_grad: top-5 % binarised G_S, clustered by k-means.

The paper binarises G_S (top 5 % → 1) and runs k-means "on the binary label" into N_g
"non-overlapping edge-dense regions" (method.md §4.1, Fig. 10 shows 4); it says no more. Here
k-means runs on the (row, column) coordinates of the edge pixels, batched in torch, from a
deterministic farthest-point start, so a region is a place in the image where edges crowd.
A region is the part of its cluster's Voronoi cell inside the bounding box of the cluster's
edge pixels (`shape="box"`, default): non-overlapping, dense in edges, and holding the
pixels between and beside those edges, where a blurred or spurious ∇D0 must be penalised too;
flat areas far from any cluster stay unconstrained. `shape="edges"` keeps the edge pixels only.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

TOP = 0.05
"""Fraction of each image's valid G_S pixels that are edges."""
REGIONS = 4
"""N_g (Fig. 10)."""
ITERATIONS = 10
"""Lloyd iterations; a fixed count keeps the cost known and the result reproducible."""

RegionShape = Literal["box", "edges"]


def binarise(edges: torch.Tensor, mask: torch.Tensor, top: float = TOP) -> torch.Tensor:
    """The top `top` fraction (⌈top·M⌉ pixels, ties included) of each image's M valid G_S
    pixels, B×H×W bool; a pixel with G_S = 0 is never an edge."""
    values = torch.where(mask, edges, torch.full_like(edges, -math.inf)).flatten(1)
    rank = torch.ceil(top * mask.flatten(1).sum(1)).long().clamp(min=1) - 1
    largest = values.topk(int(rank.max()) + 1, dim=1).values  # cheaper than a full sort
    threshold = largest.gather(1, rank[:, None])
    return mask & (edges >= threshold[:, :, None]) & (edges > 0)


def _farthest_points(points: torch.Tensor, weights: torch.Tensor, count: int) -> torch.Tensor:
    """`count` starting centres per image (B×count×2): the edge pixel farthest from the edge
    centroid, then repeatedly the edge pixel farthest from the centres chosen so far."""
    total = weights.sum(1, keepdim=True).clamp_min(1)
    centroid = (weights[..., None] * points).sum(1, keepdim=True) / total[..., None]
    nearest = ((points - centroid) ** 2).sum(-1)
    centres = []
    for _ in range(count):
        pick = torch.where(weights > 0, nearest, torch.full_like(nearest, -1.0)).argmax(1)
        centre = points.gather(1, pick[:, None, None].expand(-1, 1, 2))
        centres.append(centre)
        nearest = torch.minimum(nearest, ((points - centre) ** 2).sum(-1))
    return torch.cat(centres, dim=1)


def edge_regions(
    edges: torch.Tensor,
    mask: torch.Tensor,
    *,
    regions: int = REGIONS,
    top: float = TOP,
    shape: RegionShape = "box",
    iterations: int = ITERATIONS,
) -> torch.Tensor:
    """The regions P_n of each image as a B×N_g×H×W boolean stack (pairwise disjoint).

    Parameters
    ----------
    edges : torch.Tensor
        (B, H, W) G_S.
    mask : torch.Tensor
        (B, H, W) bool, valid pixels; regions hold valid pixels only.
    regions : int
        N_g. An image with fewer edge pixels than N_g has empty regions.
    top : float
        Fraction of valid pixels binarised as edges.
    shape : "box" or "edges"
        Voronoi cell ∩ bounding box of the cluster's edges, or the cluster's edges only.
    iterations : int
        Lloyd iterations after the farthest-point start.
    """
    batch, height, width = edges.shape
    binary = binarise(edges, mask, top).flatten(1)  # [B,N]
    rows = torch.arange(height, device=edges.device, dtype=torch.float32)
    cols = torch.arange(width, device=edges.device, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).reshape(-1, 2)
    # k-means on the edge pixels only (~top·N per image), padded to the largest count with
    # weight-0 points: twenty times fewer distances than clustering every pixel.
    most = max(int(binary.sum(1).max()), 1)
    weights, index = binary.float().topk(most, dim=1)  # [B,P]: the edge pixels first
    points = grid[index]  # [B,P,2]
    centres = _farthest_points(points, weights, regions)
    for _ in range(iterations):
        member = _members(points, centres, weights)
        size = member.sum(1)  # [B,K]
        moved = torch.einsum("bpk,bpc->bkc", member, points) / size.clamp_min(1)[..., None]
        centres = torch.where(size[..., None] > 0, moved, centres)
    cells = _nearest(grid.expand(batch, -1, -1), centres)  # [B,N]
    cells = cells[:, None] == torch.arange(regions, device=edges.device)[None, :, None]
    if shape == "edges":
        chosen = cells & binary[:, None]
    else:
        member = _members(points, centres, weights) > 0
        chosen = cells & _inside_boxes(member, points, height, width)
    return chosen.reshape(batch, regions, height, width) & mask[:, None]


def _members(points: torch.Tensor, centres: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """B×P×K: each point's weight in the column of its nearest centre."""
    nearest = _nearest(points, centres)
    return torch.nn.functional.one_hot(nearest, centres.shape[1]).float() * weights[..., None]


def _nearest(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """B×P: the index of each point's nearest centre: argmin of |c|² − 2·p·c, which orders the
    centres as |p − c|² does, in one batched product."""
    return (centres.pow(2).sum(-1)[:, None] - 2 * points @ centres.transpose(1, 2)).argmin(-1)


def _inside_boxes(
    member: torch.Tensor, points: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """B×K×N: whether each pixel of the H×W image lies in the bounding box of the points
    (B×P×2) that `member` (B×P×K) gives to cluster k."""
    inf = torch.tensor(math.inf, device=points.device)
    chosen = member[..., None]  # [B,P,K,1]
    lower = torch.where(chosen, points[:, :, None], inf).amin(1)  # [B,K,2]
    upper = torch.where(chosen, points[:, :, None], -inf).amax(1)
    rows = torch.arange(height, device=points.device, dtype=points.dtype)
    cols = torch.arange(width, device=points.device, dtype=points.dtype)
    in_rows = (rows >= lower[..., :1]) & (rows <= upper[..., :1])  # [B,K,H]
    in_cols = (cols >= lower[..., 1:]) & (cols <= upper[..., 1:])  # [B,K,W]
    return (in_rows[..., :, None] & in_cols[..., None, :]).flatten(2)
