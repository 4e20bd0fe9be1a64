"""The refinement network N_r (method.md §2): config and presets, shared encoder,
cross-resolution attention, fusion decoder."""

from .config import PRESETS, NetworkConfig, preset
from .model import NetworkOutput, RefinementNetwork

__all__ = ["PRESETS", "NetworkConfig", "NetworkOutput", "RefinementNetwork", "preset"]
