"""Refining many inputs: a job's items and settings (`job`), the work on one item (`work`),
the manifest that lets a rerun skip what is done (`manifest`), the Ray engine (`ray_engine`),
a clip's predictor runs on Ray (`ray_clip`), and what those two share (`ray_cluster`, which
imports Ray only when a job runs)."""

from .job import Item, RefineSettings, pair_items, photo_items
from .manifest import Manifest
from .ray_clip import ClipPredictors
from .ray_engine import BatchReport, refine_on_ray
from .work import ItemRefiner

__all__ = ["BatchReport", "ClipPredictors", "Item", "ItemRefiner", "Manifest", "RefineSettings",
           "pair_items", "photo_items", "refine_on_ray"]
