"""The tiny architecture the tests run: every part of N_r present, a few thousand weights."""

from sddr_core.network import NetworkConfig

TINY = NetworkConfig(
    stem_channels=(4, 8, 8),
    embed_dims=(8, 16, 16, 32),
    num_heads=(1, 1, 1, 2),
    depths=(1, 1, 1, 1),
    cross_attention_layers=1,
    cross_attention_heads=2,
    max_side=256,
)
