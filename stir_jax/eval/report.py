"""Aggregation over many run directories: the paper's tables and figures for our runs.

`aggregate(runs_dir, out_dir)` (eval.py --runs DIR --out REPORT_DIR) finds every run under
runs_dir (a directory holding results.json), whatever the mix of models, datasets, scenarios and
seeds, and writes to out_dir:
  results.csv        one row per run
  summary.csv        mean and std of test accuracy per model x data x scenario x lr, next to the
                     paper's published mean (stir_jax/resources/paper_results.csv), the
                     difference and where our mean falls among the paper's runs
  generalization.png accuracy against object size, one panel per data x scenario, one line per
                     model, a band of +-1 std over seeds (like the paper's Figure 5)
  size_bands.csv     mean accuracy below, inside and above the training sizes, ours and the paper's
  paper_comparison.png  per cell, our per-size accuracy against the paper's runs' (when the paper
                     ran that cell at our learning rate)
  epoch_time.csv     epoch seconds relative to the standard model (like the paper's Table 2)
  equivariance.csv   mean equivariance error per model (runs evaluated by eval.py --workdir)
  families.csv       the field's other families (dss, gauss_der, sevf, ss) next to pixel_pool,
                     hermite and disco, with the difference to pixel_pool (when they have runs)
  report.md          the tables and figures together
and, when there are MNIST-scale runs (results.json with "benchmark": "mnist_scale"; they have no
object sizes and no scenarios, so they get a section of their own):
  mnist_scale_runs.csv      one row per MNIST-scale run
  mnist_scale.csv           test error (100 - accuracy, %) mean and std over the runs
                            (realisations x seeds) per model x learning rate: the quantity of
                            Table 2 of Sosnovik, Szmaja, Smeulders (ICLR 2020; 28x28), whose
                            numbers are not included
  mnist_scale_bins.csv      mean test accuracy (%) per bin of the scale factor s, from the runs'
  mnist_scale_accuracy.png  accuracy_vs_scale.csv (eval.py --workdir writes it), when any run has one
Either kind alone, or both, can be under runs_dir; the STIR files are written only for STIR runs.
"""
from __future__ import annotations

import csv
import json
import pathlib
from collections import defaultdict

import numpy as np

from stir_jax import metrics
from stir_jax.eval.paper_tables import paper_per_size, paper_results, paper_runs
from stir_jax.rundir import RunError, read_metrics

SCENARIO_NAMES = {1: "Small2Large", 2: "Mid2Rest", 3: "Large2Small", 4: "All2All"}
# classes of the paper's four STIR domains (DESIGN.md, the data table): chance accuracy is 1 / n
STIR_CLASSES = {"emoji": 36, "mnist": 10, "trafficsign": 16, "aerial": 9}
# a run "collapsed" when its test accuracy stays below this many times chance
COLLAPSE_FACTOR = 2.0


def find_runs(runs_dir: pathlib.Path) -> list[dict]:
  """Every STIR run (results.json) under runs_dir, with its directory; RunError if there is none.
  (`find_all_runs` also gives the MNIST-scale runs.)"""
  runs, _ = find_all_runs(runs_dir)
  if not runs:
    raise RunError(f"no finished STIR runs (results.json) under {runs_dir}")
  return runs


def find_all_runs(runs_dir: pathlib.Path) -> tuple[list[dict], list[dict]]:
  """(STIR runs, MNIST-scale runs): every results.json under runs_dir, with its directory;
  RunError if there is none at all."""
  runs_dir = pathlib.Path(runs_dir)
  if not runs_dir.is_dir():
    raise RunError(f"{runs_dir} is not a directory")
  runs, mnist_runs = [], []
  for path in sorted(runs_dir.rglob("results.json")):
    try:
      res = json.loads(path.read_text())
      if res.get("benchmark") == "mnist_scale":
        mnist_runs.append(_mnist_scale_run(path, res, runs_dir))
        continue
      cfg, host = res["config"], _host(res)
      runs.append({
          "run": str(path.parent.relative_to(runs_dir)), "model": res["model"],
          "data": pathlib.Path(str(res["dataset"])).stem, "eval": int(res["scenario"]),
          "seed": cfg.get("seed"), "lr": cfg.get("learning_rate"),
          "train_order": cfg.get("train_order", "reshuffle"),
          "test_accuracy": res["test_accuracy"], "best_val_accuracy": res["best_val_accuracy"],
          "epochs_run": res["epochs_run"], "mean_epoch_seconds": res["mean_epoch_seconds"],
          "median_epoch_seconds": _median_epoch_seconds(path.parent),
          # one machine: the host, its boot and the malloc (None for runs from before they
          # were recorded)
          "host": host, "machine": (host, *((res.get("host") or {}).get(k)
                                            for k in ("boot_id", "allocator"))),
          **_consistency(path.parent), **_equivariance(path.parent), **res["per_scale"]})
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
      raise RunError(f"{path} is not a stir_jax results file ({e!r})") from None
  if not runs and not mnist_runs:
    raise RunError(f"no finished runs (results.json) under {runs_dir}")
  orders = defaultdict(list)
  for r in runs + mnist_runs:
    orders[r["train_order"]].append(r["run"])
  if len(orders) > 1:
    counts = ", ".join(f"{k}: {len(v)} runs (e.g. {v[0]})" for k, v in sorted(orders.items()))
    raise RunError(f"runs under {runs_dir} mix training orders ({counts}); their cells would "
                   "merge: report each order's runs from a directory of their own")
  return runs, mnist_runs


def _mnist_scale_run(path: pathlib.Path, res: dict, runs_dir: pathlib.Path) -> dict:
  """One MNIST-scale results.json as a row, with its accuracy per scale-factor bin ("bins": the
  rows of eval.py's accuracy_vs_scale.csv, None when the run has none)."""
  cfg = res["config"]
  acc = float(res["test_accuracy"])
  bins_path = path.parent / "accuracy_vs_scale.csv"
  bins = None
  if bins_path.exists():
    with open(bins_path, newline="") as f:
      bins = [{"scale_min": float(r["scale_min"]), "scale_max": float(r["scale_max"]),
               "count": int(r["count"]), "accuracy": float(r["accuracy"])}
              for r in csv.DictReader(f)]
  return {"run": str(path.parent.relative_to(runs_dir)), "model": res["model"],
          "train_order": cfg.get("train_order", "reshuffle"),
          "data": pathlib.Path(str(res["dataset"])).stem, "seed": cfg.get("seed"),
          "lr": cfg.get("learning_rate"), "test_accuracy": acc,
          "test_error": 100.0 * (1.0 - acc), "best_val_accuracy": res["best_val_accuracy"],
          "best_epoch": res.get("best_epoch"), "epochs_run": res["epochs_run"],
          "mean_epoch_seconds": res["mean_epoch_seconds"], "bins": bins}


def _host(res: dict) -> str | None:
  """A run's machine in words ("AMD EPYC x2", "NVIDIA H200 x1", with ", tcmalloc" or ", system
  malloc" where the allocator was recorded); None where results.json predates the host record."""
  h = res.get("host")
  if not h:
    return None
  name = h.get("cpu") if res.get("jax_backend") == "cpu" else h.get("device_kind")
  count = h.get("cpus") if res.get("jax_backend") == "cpu" else res.get("num_devices")
  alloc = {None: "", "system": ", system malloc"}.get(h.get("allocator"), f", {h.get('allocator')}")
  return (f"{name} x{count}" if count else str(name)) + alloc


def _median_epoch_seconds(run_dir: pathlib.Path) -> float | None:
  """Median of the epoch_seconds in the run's metrics.jsonl (None without one). Unlike the mean
  in results.json it ignores the first epoch's compilation and epochs stretched by a paused or
  shared machine (a run paused for an hour reports one epoch of an hour)."""
  secs = [row["epoch_seconds"] for row in read_metrics(run_dir)]
  return float(np.median(secs)) if secs else None


EQUIVARIANCE_KEYS = ("stage1", "stage2", "stage1_shifted", "stage2_shifted")


def _equivariance(run_dir: pathlib.Path) -> dict:
  """Mean equivariance error per stage (eq_stage1, ..., eq_stage2_shifted) of eval.py's
  equivariance.npz, over the test objects and the six size pairs, when the run has one."""
  path = run_dir / "equivariance.npz"
  if not path.exists():
    return {}
  out = {}
  with np.load(path) as f:
    for k in EQUIVARIANCE_KEYS:
      if k in f.files:
        # NaN where a map is zero at the first size (0 / 0): a dead stage, as in a collapsed run
        finite = f[k][np.isfinite(f[k])]
        out[f"eq_{k}"] = float(finite.mean()) if finite.size else float("nan")
  return out


def collapse_limit(data: str) -> float | None:
  """The test accuracy (%) below which a run on `data` collapsed: COLLAPSE_FACTOR x chance (None
  for data outside the four STIR domains, whose chance level is not known here)."""
  classes = STIR_CLASSES.get(data)
  return None if classes is None else COLLAPSE_FACTOR * 100.0 / classes


def collapsed(run: dict) -> bool:
  """Whether a run's test accuracy stays below `collapse_limit` of its data."""
  limit = collapse_limit(run["data"])
  return limit is not None and run["test_accuracy"] * 100 < limit


def equivariance_table(runs: list[dict]) -> list[dict]:
  """Mean over runs of each run's mean equivariance error, per model x data x scenario (runs
  evaluated by eval.py only). Collapsed runs are left out and counted: a network at chance has
  dead or constant maps, whose error says nothing of its equivariance (one such pixel_pool run
  reads 4.0 on stage 1 against 0.6-0.7 for its cell's other runs)."""
  groups = defaultdict(list)
  for r in runs:
    if "eq_stage1" in r or "eq_stage2" in r:
      groups[(r["model"], r["data"], r["eval"])].append(r)
  rows = []
  for (model, data, ev), evaluated in sorted(groups.items()):
    rs = [r for r in evaluated if not collapsed(r)]
    row = {"model": model, "data": data, "eval": ev, "runs": len(rs),
           "collapsed_left_out": len(evaluated) - len(rs)}
    for k in EQUIVARIANCE_KEYS:
      vals = [r[f"eq_{k}"] for r in rs if f"eq_{k}" in r and np.isfinite(r[f"eq_{k}"])]
      row[k] = round(float(np.mean(vals)), 3) if vals else None
    rows.append(row)
  return rows


def _consistency(run_dir: pathlib.Path) -> dict:
  """pool1/pool2 index-size correlations of eval.py's consistency.json, when the run has one."""
  path = run_dir / "consistency.json"
  if not path.exists():
    return {}
  found = json.loads(path.read_text())
  return {k: found[k] for k in ("pool1_spearman", "pool2_spearman") if k in found}


def _write_csv(path: pathlib.Path, rows: list[dict], fields: list[str]) -> None:
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=fields)
    w.writeheader()
    for r in rows:
      w.writerow({k: r.get(k) for k in fields})


def _same_lr(lr, ref) -> bool:
  return ref is not None and lr is not None and abs(float(lr) - ref["lr"]) <= 1e-9 * ref["lr"]


def paper_percentile(acc: float, ref: np.ndarray | None) -> float | None:
  """The share (%) of the paper's runs of a cell (ref: their test accuracies, %, from
  `paper_runs`) whose test accuracy is below acc (ties count half); None without them."""
  if ref is None:
    return None
  return round(100.0 * float(np.mean((ref < acc) + 0.5 * (ref == acc))), 1)


def summarize(runs: list[dict]) -> list[dict]:
  """Mean and std test accuracy (%) per model x data x scenario x learning rate, next to the
  paper's cell when it used the same learning rate (paper_lr says which it used): its mean, std,
  the difference, whether that is within two of its standard deviations, and paper_percentile, the
  share of the paper's runs below our mean."""
  groups = defaultdict(list)
  for r in runs:
    groups[(r["model"], r["data"], r["eval"], r["lr"])].append(r)
  paper, paper_accs = paper_results(), paper_runs()
  rows = []
  for (model, data, ev, lr), rs in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
    acc = np.array([r["test_accuracy"] for r in rs]) * 100
    cell = paper.get((model, data, ev))
    ref = cell if _same_lr(lr, cell) else None
    rows.append({"model": model, "data": data, "eval": ev, "scenario": SCENARIO_NAMES.get(ev, ev),
                 "lr": lr, "runs": len(rs), "mean_test_acc": round(float(acc.mean()), 2),
                 "std_test_acc": round(float(acc.std(ddof=1)), 2) if len(rs) > 1 else None,
                 "paper_lr": cell["lr"] if cell else None,
                 "paper_mean": ref["mean"] if ref else None,
                 "paper_std": ref["std"] if ref else None,
                 "difference": round(float(acc.mean()) - ref["mean"], 2) if ref else None,
                 "within_2_paper_std": (None if not ref else
                                        bool(abs(float(acc.mean()) - ref["mean"])
                                             <= 2 * ref["std"])),
                 "paper_percentile": (paper_percentile(float(acc.mean()),
                                                       paper_accs.get((model, data, ev)))
                                      if ref else None)})
  return rows


def _paper_lr_rows(summary: list[dict]) -> dict[tuple[str, str, int], dict]:
  """(model, data, eval) -> its summary row, the one at the paper's learning rate where there are
  several."""
  by = {}
  for r in summary:
    key = (r["model"], r["data"], r["eval"])
    if key not in by or (r["paper_mean"] is not None and by[key]["paper_mean"] is None):
      by[key] = r
  return by


def _epoch_size(scenario: int) -> int:
  """How many object sizes one epoch of a scenario trains and validates on."""
  from stir_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  return len(pipeline.scales_for(scenario, "train"))


def epoch_times(runs: list[dict]) -> list[dict]:
  """Epoch seconds per model and data x scenario: the mean of the runs' median epochs (their mean
  epoch where a run has no metrics.jsonl), the mean of their mean epochs (results.json, the
  paper's measure, but sensitive to pauses), and the machines they ran on (hosts).

  relative_to_standard compares each run with the standard runs of the same data on the same
  machine (one boot of one host, with one malloc; runs from before the boot record: the same
  host name, and "unrecorded" with "unrecorded"), of the same scenario where there are any, else
  of any scenario, scaled to this one's epoch by the number of training sizes (an epoch trains
  and validates on the training sizes only: All2All's 48 make it three times Mid2Rest's 16), and
  averages over the runs that have such a reference; blank where none has."""
  groups = defaultdict(list)
  for r in runs:
    if r["mean_epoch_seconds"] is not None:
      typical = r.get("median_epoch_seconds")
      groups[(r["data"], r["eval"], r["model"])].append(
          (r["mean_epoch_seconds"], r["mean_epoch_seconds"] if typical is None else typical,
           r["epochs_run"], r.get("host"), r["machine"]))
  paper = paper_results()

  def standard_epoch(data, ev, machine):
    """The mean median epoch of standard's runs on data and this machine (None if none ran)."""
    same = [s[1] for s in groups.get((data, ev, "standard"), []) if s[4] == machine]
    other = [s[1] * _epoch_size(ev) / _epoch_size(e) for (d, e, m), secs in groups.items()
             if m == "standard" and d == data and e != ev for s in secs if s[4] == machine]
    return float(np.mean(same or other)) if same or other else None

  rows = []
  for (data, ev, model), secs in sorted(groups.items()):
    mean, median = (float(np.mean([s[i] for s in secs])) for i in (0, 1))
    ratios = [s[1] / b for s in secs if (b := standard_epoch(data, ev, s[4]))]
    ref, ref_base = paper.get((model, data, ev)), paper.get(("standard", data, ev))
    rows.append({"data": data, "eval": ev, "model": model,
                 "median_epoch_seconds": round(median, 3),
                 "mean_epoch_seconds": round(mean, 3),
                 "mean_epochs": round(float(np.mean([s[2] for s in secs])), 1),
                 # the cost of one run at the typical epoch: epochs x median epoch
                 "run_minutes": round(float(np.mean([s[1] * s[2] for s in secs])) / 60, 1),
                 "relative_to_standard": round(float(np.mean(ratios)), 2) if ratios else None,
                 "paper_relative": round(ref["epoch_seconds"] / ref_base["epoch_seconds"], 2)
                 if ref and ref_base else None,
                 # the machines the runs trained on (epoch times differ between them)
                 "hosts": "; ".join(sorted({s[3] or "unrecorded" for s in secs}))})
  return rows


def plot_grid(path: pathlib.Path, runs: list[dict]) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  panels = sorted({(r["data"], r["eval"]) for r in runs})
  datas = sorted({d for d, _ in panels})
  evals = sorted({e for _, e in panels})
  fig, axes = plt.subplots(len(datas), len(evals), figsize=(3.6 * len(evals), 2.8 * len(datas)),
                           dpi=110, squeeze=False, sharey=True)
  sizes = np.asarray(metrics.SCALES)
  # one line per model, or per model and learning rate for a model run at several
  series = sorted({(r["model"], r["lr"]) for r in runs}, key=lambda ml: (ml[0], str(ml[1])))
  lrs_of = defaultdict(set)
  for m, lr in series:
    lrs_of[m].add(lr)
  label = lambda m, lr: m if len(lrs_of[m]) == 1 else f"{m} (lr {lr:g})"
  colours = plt.get_cmap("tab10" if len(series) <= 10 else "tab20")  # distinct hues first
  for i, d in enumerate(datas):
    for j, e in enumerate(evals):
      ax = axes[i][j]
      train = _bands(e)["training"]
      ax.axvspan(min(train) - 0.5, max(train) + 0.5, color="grey", alpha=0.12, lw=0)
      for k, (m, lr) in enumerate(series):
        rs = [r for r in runs if (r["data"], r["eval"], r["model"], r["lr"]) == (d, e, m, lr)]
        if not rs:
          continue
        acc = np.array([[r[c] for c in metrics.SCALE_COLUMNS] for r in rs], float) * 100
        mean = np.nanmean(acc, 0)
        ax.plot(sizes, mean, color=colours(k), lw=1.2, label=label(m, lr))
        if len(rs) > 1:
          sd = np.nanstd(acc, 0)
          ax.fill_between(sizes, mean - sd, mean + sd, color=colours(k), alpha=0.2, lw=0)
      ax.set_title(f"{d}, {SCENARIO_NAMES.get(e, e)}", fontsize=9)
      ax.set_ylim(0, 100)
      ax.grid(alpha=0.3)
      if i == len(datas) - 1:
        ax.set_xlabel("object size s")
      if j == 0:
        ax.set_ylabel("test accuracy (%)")
  handles, labels = axes[0][0].get_legend_handles_labels()
  for row in axes:
    for ax in row:
      h, l = ax.get_legend_handles_labels()
      for hh, ll in zip(h, l):
        if ll not in labels:
          handles.append(hh)
          labels.append(ll)
  fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8)
  fig.tight_layout(rect=(0, 0.08, 1, 1))
  fig.savefig(path)
  plt.close(fig)


def _bands(scenario: int) -> dict[str, list[int]]:
  """The object sizes below, inside and above a scenario's training sizes."""
  from stir_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  train = pipeline.scales_for(scenario, "train")
  return {"smaller": [s for s in metrics.SCALES if s < min(train)], "training": train,
          "larger": [s for s in metrics.SCALES if s > max(train)]}


def size_bands(runs: list[dict]) -> list[dict]:
  """Mean per-size test accuracy (%) per model x data x scenario x learning rate on three bands of
  object sizes: smaller than the training sizes, the training sizes, larger than them (the shape
  of the paper's Figure 5: a plateau on the training sizes, falling off on either side). Where the
  paper's per-size results exist at the same learning rate: its three bands (paper_*) and
  mean_abs_gap, the mean over the 48 sizes of |our mean - the paper's mean| (points)."""
  groups = defaultdict(list)
  for r in runs:
    groups[(r["model"], r["data"], r["eval"], r["lr"])].append(r)
  paper, per_size = paper_results(), paper_per_size()
  rows = []
  for (model, data, ev, lr), rs in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
    ours = np.array([[r[c] for c in metrics.SCALE_COLUMNS] for r in rs], float).mean(0) * 100
    theirs = (per_size.get((model, data, ev), {}).get("mean")
              if _same_lr(lr, paper.get((model, data, ev))) else None)
    row = {"model": model, "data": data, "eval": ev, "lr": lr, "runs": len(rs)}
    for band, sizes in _bands(ev).items():
      idx = [s - metrics.MIN_SCALE for s in sizes]
      row[band] = round(float(ours[idx].mean()), 1) if sizes else None
      row[f"paper_{band}"] = (round(float(theirs[idx].mean()), 1)
                              if sizes and theirs is not None else None)
    row["mean_abs_gap"] = (round(float(np.abs(ours - theirs).mean()), 1)
                           if theirs is not None else None)
    rows.append(row)
  return rows


def plot_paper_comparison(path: pathlib.Path, runs: list[dict]) -> int:
  """One panel per model x data x scenario x learning rate that the paper ran at that rate: our
  per-size test accuracy (mean, +-1 std band over our runs) against the paper's (mean, +-1 std
  over its runs). Returns the number of panels (no file without one)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  paper, per_size = paper_results(), paper_per_size()
  groups = defaultdict(list)
  for r in runs:
    key = (r["model"], r["data"], r["eval"])
    if key in per_size and _same_lr(r["lr"], paper.get(key)):
      groups[key].append(r)
  if not groups:
    return 0
  cells = sorted(groups, key=lambda k: (k[1], k[2], k[0]))
  ncol = min(4, len(cells))
  nrow = -(-len(cells) // ncol)
  fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 2.5 * nrow), dpi=110, squeeze=False,
                           sharex=True, sharey=True)
  sizes = np.asarray(metrics.SCALES)
  for ax, cell in zip(axes.flat, cells):
    model, data, ev = cell
    train = _bands(ev)["training"]
    ax.axvspan(min(train) - 0.5, max(train) + 0.5, color="grey", alpha=0.12, lw=0)
    ref = per_size[cell]
    ax.plot(sizes, ref["mean"], color="black", lw=1.1, ls="--", label="paper")
    ax.fill_between(sizes, ref["mean"] - ref["std"], ref["mean"] + ref["std"], color="black",
                    alpha=0.10, lw=0)
    acc = np.array([[r[c] for c in metrics.SCALE_COLUMNS] for r in groups[cell]], float) * 100
    mean = acc.mean(0)
    ax.plot(sizes, mean, color="tab:red", lw=1.3, label="ours")
    if len(acc) > 1:
      sd = acc.std(0, ddof=1)
      ax.fill_between(sizes, mean - sd, mean + sd, color="tab:red", alpha=0.2, lw=0)
    ax.set_title(f"{model}, {data} {SCENARIO_NAMES.get(ev, ev)}\n"
                 f"ours {len(acc)} runs, paper {ref['runs']}", fontsize=8)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
  for ax in list(axes.flat)[len(cells):]:
    ax.set_visible(False)
  for ax in axes[-1]:
    ax.set_xlabel("object size s", fontsize=8)
  for row in axes:
    row[0].set_ylabel("test accuracy (%)", fontsize=8)
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8)
  fig.tight_layout(rect=(0, 0.04 if nrow > 1 else 0.08, 1, 1))
  fig.savefig(path)
  plt.close(fig)
  return len(cells)


def findings(summary: list[dict], bands: list[dict], runs: list[dict]) -> list[str]:
  """The paper's findings, each stated as measured on these runs (lines of markdown)."""
  out = []
  by = _paper_lr_rows(summary)
  cells = sorted({(d, e) for _, d, e in by})
  for d, e in cells:
    std = by.get(("standard", d, e))
    if std is None or e == 4:
      continue
    for pool in ("pixel_pool", "slice_pool", "energy_pool"):
      p = by.get((pool, d, e))
      if p is not None:
        verdict = "beats" if p["mean_test_acc"] > std["mean_test_acc"] else "does not beat"
        out.append(f"- {d}, {SCENARIO_NAMES[e]}: {pool} ({p['mean_test_acc']:.1f}%, {p['runs']} "
                   f"runs) {verdict} standard ({std['mean_test_acc']:.1f}%, {std['runs']} runs) "
                   "on the sizes outside training (paper: scale pooling beats standard).")
  for (model, d, e), r in sorted(by.items()):
    if model == "energy_pool":
      others = [v["mean_test_acc"] for (m, dd, ee), v in by.items()
                if (dd, ee) == (d, e) and m not in ("energy_pool",)]
      best = max(others) if others else None
      # each run, and its best validation accuracy: a run that never left chance shows as such
      each = sorted((x["seed"], x["test_accuracy"], x["best_val_accuracy"]) for x in runs
                    if (x["model"], x["data"], x["eval"]) == ("energy_pool", d, e)
                    and _same_lr(x["lr"], r))
      out.append(f"- {d}, {SCENARIO_NAMES[e]}: energy_pool reaches {r['mean_test_acc']:.1f}% "
                 + (f"against {best:.1f}% for the best other model " if best is not None else "")
                 + f"(paper: energy pooling collapses, {r['paper_mean']}%); per run: "
                 + ", ".join(f"seed {seed} {t * 100:.1f}% (best validation {v * 100:.1f}%)"
                             for seed, t, v in each) + ".")
  out += collapse_findings(by, runs)
  # collapsed runs are left out (counted): their chosen sizes follow no object
  for pool_layer in ("pool1_spearman", "pool2_spearman"):
    groups, left_out = defaultdict(list), defaultdict(int)
    for r in runs:
      if r.get(pool_layer) is not None:
        key = (r["model"], r["data"], r["eval"])
        if collapsed(r):
          left_out[key] += 1
        elif np.isfinite(r[pool_layer]):
          groups[key].append(r[pool_layer])
    for (model, d, e), vals in sorted(groups.items()):
      n_out = left_out[(model, d, e)]
      skipped = f", {n_out} collapsed left out" if n_out else ""
      out.append(f"- {d}, {SCENARIO_NAMES[e]}, {model}: Spearman correlation of the kernel size "
                 f"chosen by {pool_layer.split('_')[0]} with the object size "
                 f"{np.mean(vals):.2f} (mean over {len(vals)} runs{skipped}; the paper: the "
                 "selected kernel size grows with the object).")
  for b in bands:
    if b["eval"] == 4:
      continue
    sides = [(k, b[k]) for k in ("smaller", "larger") if b[k] is not None]
    drop = ", ".join(f"{k} sizes {v:.1f}%" for k, v in sides)
    # Small2Large and Large2Small test on one side of the training sizes only
    where = "both sides" if len(sides) == 2 else f"the {sides[0][0]} sizes"
    shape = (f"plateau on the training sizes, lower on {where}"
             if all(v < b["training"] for _, v in sides) else "not lower outside the training sizes")
    paper = ""
    if b["mean_abs_gap"] is not None:
      paper = (" (paper: " + ", ".join(f"{k} {b['paper_' + k]:.1f}%" for k in
                                      ("training", "smaller", "larger") if b[k] is not None)
               + f"; mean |ours - paper| over the 48 sizes {b['mean_abs_gap']:.1f} points)")
    out.append(f"- per size, {b['data']}, {SCENARIO_NAMES[b['eval']]}, {b['model']}: training "
               f"sizes {b['training']:.1f}%, {drop}: {shape}{paper}.")
  return out


def collapse_findings(by: dict[tuple[str, str, int], dict], runs: list[dict]) -> list[str]:
  """How many runs of each cell collapsed (test accuracy below COLLAPSE_FACTOR x chance), ours
  next to the paper's runs of the cell, for the cells where either side has one (the paper: pixel
  pooling is unstable on All2All, energy pooling collapses). Cells of data outside the four STIR
  domains have no known chance level and are left out. by: `_paper_lr_rows`."""
  paper_accs = paper_runs()
  out = []
  for (model, d, e), r in sorted(by.items()):
    limit = collapse_limit(d)
    if limit is None:
      continue
    cell = [x for x in runs
            if (x["model"], x["data"], x["eval"]) == (model, d, e) and x["lr"] == r["lr"]]
    low = sorted((x["seed"], x["test_accuracy"] * 100) for x in cell if collapsed(x))
    ref = paper_accs.get((model, d, e)) if r["paper_mean"] is not None else None
    ref_low = int(np.sum(ref < limit)) if ref is not None else 0
    if not low and not ref_low:
      continue
    line = (f"- {d}, {SCENARIO_NAMES.get(e, e)}, {model}: {len(low)} of {len(cell)} runs "
            f"collapsed (test accuracy below {limit:.1f}%, {COLLAPSE_FACTOR:g}x chance)")
    if low:
      line += ": " + ", ".join(f"seed {seed} {acc:.1f}%" for seed, acc in low)
    if ref is not None:
      line += f"; the paper: {ref_low} of {len(ref)}"
    out.append(line + ".")
  return out


# Beyond the paper (issue 13): the field's other families against the paper's scale pooling and
# the paper's SESN models, with the work each model implements.
FAMILY_REFERENCES = {
    "pixel_pool": "scale pooling (Altstidl et al. 2023)",
    "hermite": "SESN, Hermite basis (Sosnovik et al. 2020)",
    "disco": "SESN, DISCO basis (Sosnovik et al. 2021)",
    "dss": "DSS (Worrall and Welling 2019)",
    "gauss_der": "Gaussian-derivative scale channels (Lindeberg 2022; Perzanowski and Lindeberg)",
    "sevf": "SEVF (Marcos et al. 2018)",
    "ss": "SS-CNN (Ghosh and Gupta 2019)",
}
PEER_MODELS = ("dss", "gauss_der", "sevf", "ss")


def _welch_p(a: np.ndarray, b: np.ndarray) -> float | None:
  """Two-sided p-value of Welch's t-test of equal means (None with fewer than 2 runs a side)."""
  if len(a) < 2 or len(b) < 2:
    return None
  from scipy import stats  # pylint: disable=g-import-not-at-top
  return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def families_table(runs: list[dict], bands: list[dict]) -> list[dict]:
  """Per data x scenario holding runs of the field's other families (PEER_MODELS): each of them
  and the reference models (pixel_pool, hermite, disco), one row per learning rate, with mean and
  std test accuracy (%), the size bands, the difference to pixel_pool's mean and Welch's p for it.

  The baseline is pixel_pool at the learning rate of the paper's cell where we ran it, otherwise
  at the rate with the most runs (lr_pixel_pool names it): a peer trained at another rate (each
  family at the paper's rate that suits it) is still compared with the paper's model as the paper
  trained it."""
  acc = defaultdict(list)
  for r in runs:
    acc[(r["model"], r["data"], r["eval"], r["lr"])].append(r["test_accuracy"] * 100)
  band = {(b["model"], b["data"], b["eval"], b["lr"]): b for b in bands}
  paper = paper_results()
  rows = []
  for d, e in sorted({(d, e) for m, d, e, _ in acc if m in PEER_MODELS}):
    pixel = {lr: v for (m, dd, ee, lr), v in acc.items() if (m, dd, ee) == ("pixel_pool", d, e)}
    base_lr = next((lr for lr in pixel if _same_lr(lr, paper.get(("pixel_pool", d, e)))),
                   max(pixel, key=lambda lr: len(pixel[lr]), default=None))
    base = np.array(pixel.get(base_lr, []))
    for model in FAMILY_REFERENCES:
      for lr in sorted(lr for (m, dd, ee, lr) in acc if (m, dd, ee) == (model, d, e)):
        vals = np.array(acc[(model, d, e, lr)])
        b = band[(model, d, e, lr)]
        is_base = model == "pixel_pool" and lr == base_lr
        p = _welch_p(vals, base) if not is_base else None
        rows.append({
            "model": model, "family": FAMILY_REFERENCES[model], "data": d,
            "scenario": SCENARIO_NAMES.get(e, e), "eval": e, "lr": lr, "runs": len(vals),
            "mean_test_acc": round(float(vals.mean()), 2),
            "std_test_acc": round(float(vals.std(ddof=1)), 2) if len(vals) > 1 else None,
            "smaller": b["smaller"], "training": b["training"], "larger": b["larger"],
            "lr_pixel_pool": base_lr,
            "minus_pixel_pool": (round(float(vals.mean() - base.mean()), 2)
                                 if len(base) and not is_base else None),
            "welch_p": None if p is None else round(p, 4)})
  return rows


def families_findings(rows: list[dict]) -> list[str]:
  """Issue 13's question, per cell and peer model: does it beat the paper's scale pooling?"""
  out = []
  for r in rows:
    if r["model"] not in PEER_MODELS or r["minus_pixel_pool"] is None:
      continue
    base = next(b for b in rows if b["model"] == "pixel_pool" and b["lr"] == r["lr_pixel_pool"]
                and (b["data"], b["eval"]) == (r["data"], r["eval"]))
    diff = r["minus_pixel_pool"]
    test = ("" if r["welch_p"] is None else
            f"; Welch's t-test p = {r['welch_p']:.3g}, "
            + ("a difference at the 5% level" if r["welch_p"] < 0.05
               else "not a difference at the 5% level"))
    out.append(f"- {r['data']}, {r['scenario']}: {r['model']} (lr {r['lr']:g}) "
               f"{r['mean_test_acc']:.1f}% ({r['runs']} runs) is {abs(diff):.1f} points "
               f"{'above' if diff > 0 else 'below'} pixel_pool (lr {base['lr']:g}) "
               f"{base['mean_test_acc']:.1f}% ({base['runs']} runs){test}.")
  return out


def mnist_scale_summary(runs: list[dict]) -> list[dict]:
  """Test error (%) per model x learning rate: mean and std (ddof 1; 0 for one run) over the runs,
  their number, and the number of realisations (data files) among them."""
  groups = defaultdict(list)
  for r in runs:
    groups[(r["model"], r["lr"])].append(r)
  rows = []
  for (model, lr), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0.0)):
    err = np.array([r["test_error"] for r in rs])
    rows.append({"model": model, "lr": lr, "runs": len(rs),
                 "realisations": len({r["data"] for r in rs}),
                 "mean_test_error": round(float(err.mean()), 2),
                 "std_test_error": round(float(err.std(ddof=1)), 2) if len(rs) > 1 else 0.0})
  return rows


def mnist_scale_bins(runs: list[dict]) -> list[dict]:
  """Mean test accuracy (%) per model x learning rate x scale-factor bin, over the runs that have
  an accuracy_vs_scale.csv."""
  groups = defaultdict(list)
  for r in runs:
    for b in r["bins"] or ():
      groups[(r["model"], r["lr"], b["scale_min"], b["scale_max"])].append(b["accuracy"])
  return [{"model": model, "lr": lr, "scale_min": lo, "scale_max": hi, "runs": len(accs),
           "mean_accuracy": round(float(np.mean(accs)) * 100, 2)}
          for (model, lr, lo, hi), accs in sorted(groups.items(),
                                                  key=lambda kv: (kv[0][0], kv[0][1] or 0.0,
                                                                  kv[0][2]))]


def plot_mnist_scale_bins(path: pathlib.Path, bins: list[dict]) -> None:
  """Mean test accuracy against the scale factor bin, one line per model (per model and learning
  rate when a model ran at several)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  groups = defaultdict(list)
  for b in bins:
    groups[(b["model"], b["lr"])].append(b)
  lrs_of = defaultdict(set)
  for model, lr in groups:
    lrs_of[model].add(lr)
  colours = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
  fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=110)
  for k, ((model, lr), rows) in enumerate(sorted(groups.items(),
                                                 key=lambda kv: (kv[0][0], kv[0][1] or 0.0))):
    rows = sorted(rows, key=lambda r: r["scale_min"])
    label = model if len(lrs_of[model]) == 1 else f"{model}, lr {lr:g}"
    ax.plot([(r["scale_min"] + r["scale_max"]) / 2 for r in rows],
            [r["mean_accuracy"] for r in rows], marker="o", ms=3, lw=1.2, color=colours(k),
            label=f"{label} ({max(r['runs'] for r in rows)} runs)")
  ax.set(xlabel="scale factor s of the digit (bin centre)", ylabel="test accuracy (%)",
         title="MNIST-scale: mean test accuracy per scale-factor bin")
  ax.title.set_fontsize(9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def mnist_scale_report(runs: list[dict], out_dir: pathlib.Path) -> tuple[list[dict], str]:
  """Writes the MNIST-scale files (see the module docstring); returns (summary rows, the
  markdown section, headed at level 2)."""
  rfields = ["run", "model", "data", "seed", "lr", "test_accuracy", "test_error",
             "best_val_accuracy", "best_epoch", "epochs_run", "mean_epoch_seconds"]
  _write_csv(out_dir / "mnist_scale_runs.csv", runs, rfields)
  summary = mnist_scale_summary(runs)
  mfields = ["model", "lr", "runs", "realisations", "mean_test_error", "std_test_error"]
  _write_csv(out_dir / "mnist_scale.csv", summary, mfields)
  table = [{"model": r["model"], "lr": r["lr"], "runs": r["runs"],
            "realisations": r["realisations"],
            "test error (%)": f"{r['mean_test_error']:.2f} ± {r['std_test_error']:.2f}"}
           for r in summary]
  n_data = len({r["data"] for r in runs})
  md = ("## MNIST-scale: test error (%)\n\n"
        f"Test error (100 - test accuracy, %) of the parameters of the best validation epoch on "
        f"the test split, mean ± std over the runs of each model and learning rate "
        f"({n_data} realisations of the data in all; a run is one realisation x one seed). "
        "Sosnovik, Szmaja, Smeulders (ICLR 2020), Table 2 (28x28) reports the same quantity over "
        "their 6 realisations; ours are drawn with numpy, not the published images.\n\n"
        + _md_table(table, list(table[0])) + "\n")
  bins = mnist_scale_bins(runs)
  if bins:
    bfields = ["model", "lr", "scale_min", "scale_max", "runs", "mean_accuracy"]
    _write_csv(out_dir / "mnist_scale_bins.csv", bins, bfields)
    plot_mnist_scale_bins(out_dir / "mnist_scale_accuracy.png", bins)
    with_bins = sum(r["bins"] is not None for r in runs)
    md += ("\n## MNIST-scale: accuracy against the scale factor\n\n"
           f"Mean test accuracy (%) per bin of the digits' scale factor s, over the {with_bins} of "
           f"{len(runs)} runs that have an accuracy_vs_scale.csv (python eval.py --workdir=RUN "
           "writes it); mnist_scale_bins.csv holds the numbers.\n\n"
           "![MNIST-scale accuracy against the scale factor](mnist_scale_accuracy.png)\n")
  return summary, md


def publish(runs_dir: str | pathlib.Path, dest: str | pathlib.Path) -> int:
  """Copies every finished run under runs_dir into dest, keeping its relative path, without
  checkpoints or TensorBoard events: config.json, metrics.jsonl, results.json, consistency.json
  (when eval.py made one) and generalization.csv (its per-size test accuracy); an MNIST-scale run
  keeps its accuracy_vs_scale.csv (when eval.py made one) instead. Returns the number of runs
  copied; existing copies are refreshed. dest may be runs_dir itself: then each finished STIR
  run only gains its generalization.csv (the sweep can write straight into a results folder whose
  .gitignore keeps checkpoints and events out of git)."""
  import shutil  # pylint: disable=g-import-not-at-top
  from stir_jax.eval import evaluation  # pylint: disable=g-import-not-at-top
  runs_dir, dest = pathlib.Path(runs_dir), pathlib.Path(dest)
  runs, mnist_runs = find_all_runs(runs_dir)
  count = 0
  for run in runs + mnist_runs:
    src, out = runs_dir / run["run"], dest / run["run"]
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "metrics.jsonl", "results.json", "consistency.json",
                 "accuracy_vs_scale.csv"):
      source, target = src / name, out / name
      if source.exists() and not (target.exists() and target.samefile(source)):
        shutil.copyfile(source, target)
    if "eval" in run:  # a STIR run: its per-size accuracy
      row = {"model": run["model"], "data": run["data"], "eval": run["eval"],
             **{c: run[c] for c in metrics.SCALE_COLUMNS}}
      evaluation.write_generalization_csv(out / "generalization.csv", [row])
    count += 1
  return count


def _md_table(rows: list[dict], fields: list[str]) -> str:
  fmt = lambda v: "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
  lines = ["| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
  lines += ["| " + " | ".join(fmt(r.get(f)) for f in fields) + " |" for r in rows]
  return "\n".join(lines)


def aggregate(runs_dir: str | pathlib.Path, out_dir: str | pathlib.Path) -> dict:
  """Writes the report of every run under runs_dir to out_dir (see the module docstring); returns
  {"runs": number of runs, "summary": the STIR summary rows, "mnist_scale": the MNIST-scale
  summary rows}."""
  runs_dir, out_dir = pathlib.Path(runs_dir), pathlib.Path(out_dir)
  runs, mnist_runs = find_all_runs(runs_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  text, summary, mnist_summary = "", [], []
  if runs:
    summary, text = _stir_report(runs, runs_dir, out_dir)
  if mnist_runs:
    mnist_summary, section = mnist_scale_report(mnist_runs, out_dir)
    if not runs:
      text = f"# MNIST-scale results: {len(mnist_runs)} runs under {runs_dir}\n\n"
    else:
      text += "\n"
    text += section
  (out_dir / "report.md").write_text(text)
  return {"runs": len(runs) + len(mnist_runs), "summary": summary, "mnist_scale": mnist_summary}


def _stir_report(runs: list[dict], runs_dir: pathlib.Path,
                 out_dir: pathlib.Path) -> tuple[list[dict], str]:
  """Writes the STIR files; returns (summary rows, report.md's STIR text)."""
  fields = ["run", "model", "data", "eval", "seed", "lr", "test_accuracy", "best_val_accuracy",
            "epochs_run", "mean_epoch_seconds", "median_epoch_seconds", "paper_percentile",
            *metrics.SCALE_COLUMNS]
  paper, paper_accs = paper_results(), paper_runs()
  for r in runs:
    cell = (r["model"], r["data"], r["eval"])
    r["paper_percentile"] = (paper_percentile(r["test_accuracy"] * 100, paper_accs.get(cell))
                             if _same_lr(r["lr"], paper.get(cell)) else None)
  _write_csv(out_dir / "results.csv", runs, fields)
  summary = summarize(runs)
  sfields = ["model", "data", "eval", "scenario", "lr", "runs", "mean_test_acc", "std_test_acc",
             "paper_lr", "paper_mean", "paper_std", "difference", "within_2_paper_std",
             "paper_percentile"]
  _write_csv(out_dir / "summary.csv", summary, sfields)
  times = epoch_times(runs)
  tfields = ["data", "eval", "model", "median_epoch_seconds", "mean_epoch_seconds",
             "mean_epochs", "run_minutes", "relative_to_standard", "paper_relative", "hosts"]
  _write_csv(out_dir / "epoch_time.csv", times, tfields)
  plot_grid(out_dir / "generalization.png", runs)
  bands = size_bands(runs)
  bfields = ["model", "data", "eval", "lr", "runs", "smaller", "training", "larger",
             "paper_smaller", "paper_training", "paper_larger", "mean_abs_gap"]
  _write_csv(out_dir / "size_bands.csv", bands, bfields)
  compared = plot_paper_comparison(out_dir / "paper_comparison.png", runs)
  compare_text = ("" if not compared else
                  "Each cell against the paper's own runs (its per-size results, the data of its "
                  "Figure 5; dashed: the paper's mean, grey band +-1 std over its runs; red: ours, "
                  "band +-1 std over our runs):\n\n"
                  "![ours against the paper per size](paper_comparison.png)\n\n")
  equi = equivariance_table(runs)
  efields = ["model", "data", "eval", "runs", "collapsed_left_out", *EQUIVARIANCE_KEYS]
  equi_text = ""
  if equi:
    _write_csv(out_dir / "equivariance.csv", equi, efields)
    equi_text = (
        "## Equivariance error of the feature maps\n\n"
        "||a - b||^2 / ||a||^2 between the maps of one object at two sizes, the second resized to "
        "the first (DESIGN.md §4; the paper's six size pairs, mean over the test objects and the "
        f"runs evaluated by eval.py; runs that collapsed, test accuracy below {COLLAPSE_FACTOR:g}x "
        "chance, are left out and counted). *_shifted: the models with a geometric scale axis, "
        "that axis shifted by the size ratio first (a scale-covariant map moves along it).\n\n"
        + _md_table(equi, efields) + "\n\n")
  families = families_table(runs, bands)
  families_text = ""
  if families:
    ffields = ["model", "family", "data", "scenario", "lr", "runs", "mean_test_acc",
               "std_test_acc", "smaller", "training", "larger", "lr_pixel_pool",
               "minus_pixel_pool", "welch_p"]
    _write_csv(out_dir / "families.csv", families, ffields)
    families_text = (
        "## Beyond the paper: the field's other families against scale pooling\n\n"
        "Same protocol and data as the paper's models; test accuracy (%), the size bands as "
        "above, the difference to pixel_pool's mean and Welch's t-test p for it (two-sided, "
        "over the runs of each). One row per learning rate; pixel_pool is taken at the paper's "
        "rate for the cell (lr_pixel_pool).\n\n"
        + _md_table(families, ffields) + "\n\n" + "\n".join(families_findings(families))
        + "\n\n")
  text = (
      f"# STIR results: {len(runs)} runs under {runs_dir}\n\n"
      "## Test accuracy (%), ours against the paper's published means\n\n"
      + _md_table(summary, sfields)
      + "\n\nThe paper's columns are filled where we ran its learning rate for the cell "
      "(paper_lr). within_2_paper_std: whether our mean lies within two of the paper's standard "
      "deviations (over its 25-50 seeds) of the paper's mean. paper_percentile: the share (%) of "
      "the paper's runs of the cell below our mean (its per-run results; results.csv places each "
      "of our runs the same way).\n\n"
      "## The paper's findings, as measured here\n\n" + "\n".join(findings(summary, bands, runs))
      + "\n\n## Accuracy against object size (training scales shaded; bands: +-1 std over seeds)\n\n"
      "![accuracy against object size](generalization.png)\n\n"
      "Mean test accuracy (%) on the sizes below, inside and above the training sizes, ours and "
      "the paper's (paper_*; mean_abs_gap: the mean over the 48 sizes of |our mean - the "
      "paper's mean|, in points):\n\n"
      + _md_table(bands, bfields) + "\n\n" + compare_text + families_text + equi_text +
      "## Epoch time relative to the standard model\n\n"
      "Ours on this machine; the paper's on its GPU (mean epoch seconds of its run table). Ours "
      "is relative by the median epoch of each run (mean over runs), which leaves out the first "
      "epoch's compilation and epochs stretched while the machine was paused or shared; the "
      "mean epoch (results.json) is listed too. run_minutes: epochs run x median epoch, the "
      "mean over runs (the cost of one run on this machine, compilation and evaluation "
      "left out). relative_to_standard divides each run's median epoch by that of the standard "
      "runs on the same machine (one boot of it, with one malloc: machines with one CPU name "
      "differ in speed, and so does a process under tcmalloc; "
      "same scenario where there are, else any scenario of the data) and averages; blank where "
      "standard has not run on that machine.\n\n"
      + _md_table(times, tfields) + "\n")
  return summary, text
