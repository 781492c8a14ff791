"""Evaluation of finished runs: a run's evaluation outputs, equivariance, reports over many runs.

  evaluation.py   `evaluate(workdir)` (eval.py): per-scale accuracy, plots, indices, consistency
  equivariance.py the public equivariance helper (error of a model's feature maps under rescaling)
  report.py       `aggregate(runs_dir, out_dir)`: many runs against the paper's table

The metrics themselves (sums and counts per batch) are `stir_jax.metrics`, shared with training.
"""
