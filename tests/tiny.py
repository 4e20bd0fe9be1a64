"""The tiny architecture the tests run: every part of N_r present, a few thousand weights."""

from sddr_core.network import NetworkConfig

TINY = NetworkConfig(
    stem_channels=(4, 8, 8),
    embed_dims=(8, 16, 16, 32),
    num_heads=(1, 1, 1, 2),
    depths=(1, 1, 1, 1),
    cross_attention_layers=1,
    cross_attention_heads=2,
    residual=True,
)

TINY_MAX_SIDE = 256
"""The working-size cap for refiners in tests (`Refiner(…, max_side=TINY_MAX_SIDE)`), so a
large test input runs the network at 256 px at most."""
