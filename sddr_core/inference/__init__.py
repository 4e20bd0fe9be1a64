"""Inference: the single-pass `Refiner` over N_r, and the one- and two-stage pipeline over a
refiner and a depth predictor."""
