"""The per-run figures of eval.py --workdir: accuracy against size, chosen kernel sizes, equivariance.

  plot_accuracy_vs_scale  test accuracy (%) per object size, training sizes shaded
  plot_indices            per pool, the share of channels choosing each kernel size at each object
                          size (the SiConv kernels are 7 + 2i pixels, i the scale index), median over
                          it
  plot_equivariance       the equivariance error per size pair, one panel per stage (each its own
                          y range: stage 2's errors can be 50 times stage 1's)

Each plot_* writes one PNG and closes its figure; the *_figure function under it builds the
figure (tests inspect it). matplotlib runs headless (Agg).
"""
from __future__ import annotations

import pathlib

import numpy as np

from stir_jax import metrics

KERNEL_BASE = 7  # the SiConv kernel at scale index i is KERNEL_BASE + 2 i pixels (k = 7)
ACC_YLIM = (0, 103)  # a little above 100%: a curve at 100% stays visible


def plt_module():
  """matplotlib.pyplot on the Agg backend (no display needed)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def contiguous(values) -> list[tuple[int, int]]:
  """Contiguous runs of sorted integers: [17..32, 49..64] -> [(17, 32), (49, 64)]."""
  out = []
  for v in sorted(values):
    if out and v == out[-1][1] + 1:
      out[-1] = (out[-1][0], v)
    else:
      out.append((v, v))
  return out


def shade_training(ax, train_scales, label: str | None = "training sizes") -> None:
  """Grey bands over the training sizes (one per contiguous run of them)."""
  for k, (lo, hi) in enumerate(contiguous(train_scales)):
    ax.axvspan(lo - 0.5, hi + 0.5, color="grey", alpha=0.15, lw=0,
               label=label if k == 0 else None)


def save(fig, path: pathlib.Path, **kwargs) -> None:
  """Writes the figure to path and closes it."""
  fig.savefig(path, **kwargs)
  plt_module().close(fig)


def plot_accuracy_vs_scale(path: pathlib.Path, per_scale: dict, train_scales, title: str) -> None:
  """Test accuracy (%) against object size; per_scale maps s17..s64 to accuracy in [0, 1]."""
  save(accuracy_figure(per_scale, train_scales, title), path)


def accuracy_figure(per_scale: dict, train_scales, title: str):
  """The figure of `plot_accuracy_vs_scale`."""
  plt = plt_module()
  sizes = np.asarray(metrics.SCALES)
  acc = np.asarray([per_scale[c] for c in metrics.SCALE_COLUMNS]) * 100
  fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
  shade_training(ax, train_scales)
  ax.plot(sizes, acc, marker="o", ms=3, color="tab:blue", label="test accuracy")
  ax.set(xlabel="object size s (pixels)", ylabel="test accuracy (%)", ylim=ACC_YLIM,
         xlim=(sizes[0] - 1, sizes[-1] + 1), title=title)
  ax.title.set_fontsize(9)
  ax.grid(alpha=0.3)
  ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
  fig.tight_layout()
  return fig


def plot_levels(path: pathlib.Path, rows: list[dict], train_scales, title: str) -> None:
  """A pyramid ensemble's levels (`evaluation.level_rows`): accuracy and logit margin against
  object size, each level alone (thin) and the average of their logits (thick)."""
  plt = plt_module()
  sizes = np.asarray(metrics.SCALES)
  fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.6), dpi=120)
  levels = list(dict.fromkeys(r["level"] for r in rows))
  colors = dict(zip(levels, ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown"]))
  for ax, quantity in zip(axes, ("accuracy", "margin")):
    shade_training(ax, train_scales, label="training sizes" if quantity == "accuracy" else None)
    for r in rows:
      if r["quantity"] != quantity:
        continue
      y = np.asarray([r[c] for c in metrics.SCALE_COLUMNS]) * (100 if quantity == "accuracy" else 1)
      average = r["level"] == "average"
      ax.plot(sizes, y, color="black" if average else colors[r["level"]], lw=2 if average else 1.1,
              label="average of the levels' logits (the model)" if average
              else f"level {r['level']} alone")
    ax.set_xlim(sizes[0] - 1, sizes[-1] + 1)
    ax.set_xlabel("object size s (pixels)")
    ax.grid(alpha=0.3)
  axes[0].set(ylabel="test accuracy (%)", ylim=ACC_YLIM)
  axes[1].set(ylabel="mean margin: top logit - runner-up", ylim=(0, None))
  axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  save(fig, path)


def index_histogram(indices: np.ndarray, scales: np.ndarray,
                    num_scales: int | None = None) -> np.ndarray:
  """(num_scales, 48): per object size (columns, 17..64), the share of (object, channel) choices
  of each kernel scale index (rows); channels that chose nothing (-1) are left out, a size with
  no choice is all NaN. indices (S, n, m, C), scales (S, n, m)."""
  idx = np.asarray(indices)
  size = np.broadcast_to(np.asarray(scales)[..., None], idx.shape)
  keep = idx >= 0
  idx, size = idx[keep], size[keep]
  rows = int(num_scales if num_scales is not None else (idx.max() + 1 if idx.size else 1))
  counts = np.zeros((rows, len(metrics.SCALES)))
  np.add.at(counts, (np.clip(idx, 0, rows - 1), size - metrics.MIN_SCALE), 1)
  total = counts.sum(0, keepdims=True)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(total > 0, counts / total, np.nan)


def plot_indices(path: pathlib.Path, per_object: dict, title: str,
                 num_scales: dict[str, int] | None = None) -> None:
  """Per pool: the share of channels choosing each kernel size (7 + 2i pixels, a real SiConv
  kernel) at each object size, as a heat map, with the median choice over it. num_scales: the
  pools' scale counts (pool1, pool2); default the largest index chosen + 1."""
  save(indices_figure(per_object, title, num_scales), path, bbox_inches="tight")


def indices_figure(per_object: dict, title: str, num_scales: dict[str, int] | None = None):
  """The figure of `plot_indices`."""
  plt = plt_module()
  sizes = np.asarray(metrics.SCALES)
  fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.8), dpi=120)
  image = None
  for ax, pool in zip(axes, ("pool1", "pool2")):
    idx = np.asarray(per_object[pool])
    hist = index_histogram(idx, per_object["scale"], (num_scales or {}).get(pool))
    rows = hist.shape[0]
    image = ax.imshow(hist, origin="lower", aspect="auto", cmap="Blues", vmin=0, vmax=1,
                      extent=(sizes[0] - 0.5, sizes[-1] + 0.5, -0.5, rows - 0.5),
                      interpolation="nearest")
    # the median chosen index per size (over the channels that chose one)
    med = []
    for s in sizes:
      v = idx[per_object["scale"] == s].ravel()
      v = v[v >= 0]
      med.append(np.median(v) if v.size else np.nan)
    ax.plot(sizes, med, color="tab:orange", lw=1.5, label="median choice")
    step = max(1, -(-rows // 8))
    ticks = np.arange(0, rows, step)
    ax.set_yticks(ticks, [str(KERNEL_BASE + 2 * int(i)) for i in ticks])
    ax.set(xlabel="object size s (pixels)", ylabel="chosen kernel size (pixels)",
           title=f"{pool}: share of channels per kernel size")
    ax.title.set_fontsize(9)
    ax.legend(loc="upper left", fontsize=7, framealpha=0.9)
  fig.colorbar(image, ax=list(axes), fraction=0.025, pad=0.02,
               label="share of (object, channel) choices")
  fig.suptitle(title, fontsize=9)
  return fig


STAGE_COLOURS = ("tab:blue", "tab:green")
ERROR_LABEL = r"$\|a - b\|^2 \,/\, \|a\|^2$"


def plot_equivariance(path: pathlib.Path, errors: dict, title: str,
                      shifted: dict | None = None) -> None:
  """Box plots of the equivariance error per (reference <- resized) size pair: one panel per
  stage with its own y range; errors[stage] (..., 6) in EQUIVARIANCE_PAIRS order (NaN pairs left
  out). shifted: the scale-covariant errors of the same stages, drawn beside in a second colour."""
  save(equivariance_figure(errors, title, shifted), path)


def equivariance_figure(errors: dict, title: str, shifted: dict | None = None):
  """The figure of `plot_equivariance`."""
  plt = plt_module()
  stages = list(errors)
  fig, axes = plt.subplots(1, max(len(stages), 1), figsize=(4.2 * max(len(stages), 1), 3.6),
                           dpi=120, squeeze=False)
  labels = [f"{r}\u2190{o}" for r, o in metrics.EQUIVARIANCE_PAIRS]
  for ax, stage in zip(axes[0], stages):
    series = [("as is", errors[stage], STAGE_COLOURS[0])]
    if shifted and stage in shifted:
      series.append(("scale axis shifted", shifted[stage], STAGE_COLOURS[1]))
    width = 0.8 / len(series)
    for j, (name, err, colour) in enumerate(series):
      data = [e[np.isfinite(e)] for e in np.asarray(err).reshape(-1, 6).T]
      pos = np.arange(6) + (j - (len(series) - 1) / 2) * width
      bp = ax.boxplot(data, positions=pos, widths=width * 0.85, patch_artist=True,
                      showfliers=False, medianprops={"color": "black"})
      for patch in bp["boxes"]:
        patch.set_facecolor(colour)
        patch.set_alpha(0.6)
      for x, d in zip(pos, data):
        if j == 0 and not d.size:  # a pair with no finite error (the map is dead or too small)
          ax.annotate("no value", (x + (len(series) - 1) * width / 2, 0), xytext=(0, 4),
                      textcoords="offset points", ha="center", fontsize=6, color="grey",
                      rotation=90)
      ax.plot([], [], color=colour, lw=6, alpha=0.6, label=name)
    ax.set_xticks(np.arange(6), labels, fontsize=7)
    ax.set_ylim(bottom=0)
    ax.set(xlabel="object sizes (reference \u2190 resized)", ylabel=ERROR_LABEL, title=stage)
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3, axis="y")
  fig.suptitle(title, fontsize=9)
  handles, names = axes[0][0].get_legend_handles_labels()
  if len(handles) > 1:  # below the panels, clear of the boxes
    fig.legend(handles, names, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
  fig.tight_layout(rect=(0, 0.07 if len(handles) > 1 else 0, 1, 1))
  return fig
