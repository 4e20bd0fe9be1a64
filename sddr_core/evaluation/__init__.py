"""Evaluation: the paper's metrics, datasets with ground truth, baselines, the `sddr eval`
runner and its figures."""
