"""The per-run figures (stir_jax.eval.figures): what a reader needs is on them."""
import numpy as np
import pytest

from stir_jax import metrics
from stir_jax.eval import evaluation, figures


def test_evaluation_uses_the_figures_module():
  assert evaluation.plot_indices is figures.plot_indices
  assert evaluation.plot_equivariance is figures.plot_equivariance
  assert evaluation.plot_accuracy_vs_scale is figures.plot_accuracy_vs_scale


def test_accuracy_at_100_percent_is_visible_and_the_legend_is_outside(tmp_path):
  per_scale = {c: 1.0 for c in metrics.SCALE_COLUMNS}
  fig = figures.accuracy_figure(per_scale, list(range(33, 49)), "t")
  (ax,) = fig.axes
  assert ax.get_ylim()[1] > 100
  legend = ax.get_legend()
  fig.canvas.draw()
  # the legend's box lies right of the data area
  assert legend.get_window_extent().x0 >= ax.get_window_extent().x1
  figures.save(fig, tmp_path / "a.png")
  assert (tmp_path / "a.png").stat().st_size > 5_000


def _per_object(rng, pool_max=(12, 20)):
  scale = np.broadcast_to(np.asarray(metrics.SCALES)[:, None, None], (48, 3, 1)).copy()
  out = {"scale": scale}
  for pool, top in zip(("pool1", "pool2"), pool_max):
    out[pool] = rng.integers(-1, top + 1, size=(48, 3, 1, 8)).astype(np.int32)
  return out


def test_index_ticks_are_real_kernel_sizes():
  """The SiConv kernels are 7 + 2i pixels: every tick names one of them, and the histogram's
  columns are shares (sum 1 per object size)."""
  per_object = _per_object(np.random.default_rng(0))
  fig = figures.indices_figure(per_object, "t", num_scales={"pool1": 29, "pool2": 26})
  panels = [ax for ax in fig.axes if ax.get_title().startswith("pool")]
  assert len(panels) == 2
  for ax, rows in zip(panels, (29, 26)):
    labels = [int(t.get_text()) for t in ax.get_yticklabels()]
    ticks = ax.get_yticks()
    assert labels and all((k - 7) % 2 == 0 and 7 <= k <= 7 + 2 * (rows - 1) for k in labels)
    assert [7 + 2 * int(t) for t in ticks] == labels
  hist = figures.index_histogram(per_object["pool1"], per_object["scale"], 29)
  assert hist.shape == (29, 48)
  np.testing.assert_allclose(hist.sum(0), 1.0)
  chosen = per_object["pool1"][0][per_object["pool1"][0] >= 0]
  assert hist[int(chosen.max()), 0] > 0 and np.all(hist[13:, :] == 0)
  figures.plt_module().close(fig)


def test_equivariance_stages_get_panels_of_their_own():
  """Stage 2's errors fifty times stage 1's do not flatten stage 1's boxes: each stage has its
  panel and y range; the y label is typeset, not ASCII."""
  rng = np.random.default_rng(1)
  errors = {"stage1": rng.uniform(0.1, 0.3, (36, 1, 6)), "stage2": rng.uniform(5, 15, (36, 1, 6))}
  errors["stage2"][..., 4:] = np.nan  # a pair without values is marked, not left blank
  fig = figures.equivariance_figure(errors, "t", shifted={k: v / 2 for k, v in errors.items()})
  axes = [ax for ax in fig.axes if ax.get_title() in errors]
  assert [ax.get_title() for ax in axes] == ["stage1", "stage2"]
  assert axes[0].get_ylim()[1] < 1.0 < axes[1].get_ylim()[1]
  assert all(ax.get_ylabel().startswith("$") for ax in axes)
  assert sum(t.get_text() == "no value" for t in axes[1].texts) == 2
  assert [t.get_text() for t in fig.legends[0].get_texts()] == ["as is", "scale axis shifted"]
  figures.plt_module().close(fig)


def test_plot_functions_write_files(tmp_path):
  rng = np.random.default_rng(2)
  figures.plot_indices(tmp_path / "i.png", _per_object(rng), "t")
  figures.plot_equivariance(tmp_path / "e.png", {"stage1": rng.uniform(size=(4, 1, 6))}, "t")
  assert (tmp_path / "i.png").stat().st_size > 5_000 and (tmp_path / "e.png").stat().st_size > 5_000
