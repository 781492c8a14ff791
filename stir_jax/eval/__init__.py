"""Evaluation: the metrics train and eval share, a run's evaluation outputs, equivariance, reports.

  metrics.py      sums and counts per batch, merged and divided once; equivariance error
  evaluation.py   `evaluate(workdir)` (eval.py): per-scale accuracy, plots, indices, consistency
  equivariance.py the public equivariance helper (error of a model's feature maps under rescaling)
  report.py       `aggregate(runs_dir, out_dir)`: many runs against the paper's table
"""
