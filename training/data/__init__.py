"""Training data: scenes with exact depth (procedural ones from `sddr_core.scenes`), their
cached predictions, degradations and batches."""
