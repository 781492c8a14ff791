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
  families.csv       the field's other families (dss, gauss_der, sevf, ss) and the user's own
                     models next to pixel_pool, hermite and disco, with the difference to
                     pixel_pool (when they have runs)
  coverage.md        the paper's 176 cells: how many we ran, the sweep commands for the rest
  cells.md           per cell ours against the paper: z, percentile, the joint test over cells
  cost.md            per cell epochs, epoch time, minutes per run, machines; the total
  report.md          the tables and figures together
The three .md tables are built from summary.csv and epoch_time.csv alone (`write_tables`;
`python -m stir_jax.eval.report tables REPORT_DIR` rebuilds them), so a document can include them
and a test can check them against the CSVs.
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
import functools
import json
import pathlib
from collections import defaultdict

import numpy as np

from stir_jax import metrics
from stir_jax.paper_tables import paper_per_size, paper_results, paper_run_validation
from stir_jax.paper_tables import paper_runs
from stir_jax.errors import RunError
from stir_jax.rundir import read_metrics

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


def z_score(mean: float, runs: int, paper_mean: float, paper_std: float) -> float | None:
  """(our mean of `runs` runs - the paper's mean) / (the paper's std / sqrt(runs)): how many
  standard errors of an n-run mean, were our runs drawn like the paper's, ours lies from its mean
  (None when the paper's std is 0)."""
  if not paper_std:
    return None
  return (mean - paper_mean) / (paper_std / np.sqrt(runs))


def summarize(runs: list[dict]) -> list[dict]:
  """Mean and std test accuracy (%) per model x data x scenario x learning rate, next to the
  paper's cell when it used the same learning rate (paper_lr says which it used): its mean, std,
  the difference, z (`z_score`), paper_percentile (the share of the paper's runs below our mean)
  and within_2_paper_std (whether the difference is within two of the paper's standard deviations
  of one run: a weak test, which a cell with a large spread passes whatever its runs give)."""
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
                 "z": (None if not ref or (z := z_score(float(acc.mean()), len(rs), ref["mean"],
                                                         ref["std"])) is None else round(z, 2)),
                 "within_2_paper_std": (None if not ref else
                                        bool(abs(float(acc.mean()) - ref["mean"])
                                             <= 2 * ref["std"])),
                 "paper_percentile": (paper_percentile(float(acc.mean()),
                                                       paper_accs.get((model, data, ev)))
                                      if ref else None)})
  return rows


def _num(v) -> float | None:
  """A number from a summary row (a float, or a CSV string; "" and None are None)."""
  return None if v is None or v == "" else float(v)


def _runs_word(n: int) -> str:
  return f"{n} run" if n == 1 else f"{n} runs"


def _bimodal_cells() -> set[tuple[str, str, int]]:
  """The paper's cells whose runs split into collapsed ones (below COLLAPSE_FACTOR x chance) and
  ones that learn (median above 50%), at least 3 of each: their mean and std describe no run."""
  out = set()
  for cell, accs in paper_runs().items():
    limit = collapse_limit(cell[1])
    if limit is None:
      continue
    low, rest = accs[accs < limit], accs[accs >= limit]
    if len(low) >= 3 and len(rest) >= 3 and np.median(rest) > 50:
      out.add(cell)
  return out


def joint_z(rows: list[dict]) -> dict | None:
  """The joint test over the cells that have a z (summary rows, dicts or CSV rows): how many have
  |z| > 2 (and how many chance alone gives: 4.55% of the cells), the largest |z| with its
  two-sided normal p and that p times the number of cells
  (Bonferroni), the sum of z^2 against a chi-square with one degree of freedom per cell, and the
  mean z (times sqrt(cells), standard normal when the cells are independent and each z is): a shift
  shared by all cells, such as a protocol difference, moves the mean even when no single z
  stands out. None without any z."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  cells = [(r, _num(r.get("z"))) for r in rows if _num(r.get("z")) is not None]
  if not cells:
    return None
  z = np.array([v for _, v in cells])
  top = int(np.argmax(np.abs(z)))
  p_top = float(2 * stats.norm.sf(abs(z[top])))
  chi2 = float(np.sum(z ** 2))
  mean_z = float(np.mean(z))
  return {"cells": len(z), "complete": sum(int(r["runs"]) >= 3 for r, _ in cells),
          "over_2": int(np.sum(np.abs(z) > 2)),
          "over_2_by_chance": len(z) * float(2 * stats.norm.sf(2.0)),
          "max_abs_z": float(abs(z[top])),
          "max_row": cells[top][0], "p_max": p_top, "bonferroni_p": min(1.0, len(z) * p_top),
          "chi2": chi2, "chi2_p": float(stats.chi2.sf(chi2, len(z))),
          "mean_z": mean_z, "mean_z_p": float(2 * stats.norm.sf(abs(mean_z) * np.sqrt(len(z)))),
          "below": int(np.sum(z < 0))}


def joint_statement(rows: list[dict]) -> str:
  """The joint test of `joint_z` in words (markdown), with what it assumes."""
  j = joint_z(rows)
  if j is None:
    return "No cell has the paper's columns (none ran at the paper's learning rate): no z."
  top = j["max_row"]
  bimodal = sorted({(r["model"], SCENARIO_NAMES.get(int(r["eval"]), r["eval"]))
                    for r in rows if _num(r.get("z")) is not None
                    and (r["model"], r["data"], int(r["eval"])) in _bimodal_cells()})
  # Family-wise: among many cells a few |z| > 2 are expected by chance (4.55% of cells each), so
  # only the Bonferroni-corrected largest |z| and the chi-square speak for the table as a whole.
  if j["bonferroni_p"] <= 0.05 or j["chi2_p"] <= 0.05:
    verdict = ("At least one test rejects: some cell's mean lies further from the paper's than its "
               "runs' spread explains")
  elif j["mean_z_p"] <= 0.05:
    verdict = "The shift test rejects: the cells' means share a shift from the paper's"
  else:
    verdict = ("No test rejects at the 5% level: no cell's mean is further from the paper's than "
               "its runs' spread explains once the number of cells is counted, and no shift shared "
               f"by all cells shows ({j['over_2']} of {j['cells']} cells with |z| > 2, where "
               f"chance alone gives about {j['over_2_by_chance']:.1f})")
  text = (f"Over the {j['cells']} cells with the paper's columns ({j['complete']} of them with 3 "
          f"runs or more), |z| > 2 in {j['over_2']}; the largest |z| is {j['max_abs_z']:.2f} "
          f"({top['model']}, {top['data']} {SCENARIO_NAMES.get(int(top['eval']), top['eval'])}, "
          f"{_runs_word(int(top['runs']))}), two-sided normal p = {j['p_max']:.3g}, "
          f"{j['bonferroni_p']:.3g} after Bonferroni for {j['cells']} cells. The sum of z² is "
          f"{j['chi2']:.2f} on {j['cells']} degrees of freedom (chi-square p = {j['chi2_p']:.3g}). "
          f"{j['below']} of the {j['cells']} means lie below the paper's; the mean z is "
          f"{j['mean_z']:+.2f} (a shift shared by all cells; two-sided p = {j['mean_z_p']:.3g}). "
          f"{verdict}. z takes the paper's std as the spread of one run and our n-run mean as "
          "normal; with 3 runs it can detect only shifts of about 2 paper std / sqrt(3), 1.15 "
          "paper std, or more.")
  if bimodal:
    text += (" For " + ", ".join(f"{m} {e}" for m, e in bimodal) + " the paper's runs split "
             "between collapse and success, so neither its mean nor a z describes a run: read the "
             "per-run results and the collapse counts instead.")
  return text


def coverage(rows: list[dict]) -> dict[str, dict]:
  """Per STIR domain of the paper's table: its cells, ours at the paper's learning rate (summary
  rows with the paper's columns) with at least one run and with 3 or more, and the cells with no
  run at that rate."""
  paper = paper_results()
  ours = {(r["model"], r["data"], int(r["eval"])): int(r["runs"]) for r in rows
          if _num(r.get("paper_mean")) is not None}
  out = {}
  for data in sorted({d for _, d, _ in paper}, key=list(STIR_CLASSES).index):
    cells = sorted(c for c in paper if c[1] == data)
    out[data] = {"cells": len(cells), "run": sum(c in ours for c in cells),
                 "complete": sum(ours.get(c, 0) >= 3 for c in cells),
                 "partial": [(c, ours[c]) for c in cells if 0 < ours.get(c, 0) < 3],
                 "missing": [c for c in cells if c not in ours]}
  return out


SWEEP = ("python -m stir_jax.sweep --out results/{data} --datasets data/{data}.npz --seeds 1-3 "
         "--config configs/paper.py --no-report --evaluate")


def sweep_commands(data: str, cells: list[tuple[str, str, int]] | None = None) -> list[str]:
  """Sweep commands (results/emoji/run_grid.sh's form) that run `cells` of one domain (default:
  all the paper's cells of it) at the paper's learning rate of each, 3 seeds: one command per
  learning rate and set of scenarios."""
  paper = paper_results()
  cells = [c for c in paper if c[1] == data] if cells is None else cells
  plan = defaultdict(lambda: defaultdict(set))
  for model, _, ev in cells:
    plan[paper[(model, data, ev)]["lr"]][model].add(ev)
  lines = []
  for lr in sorted(plan):
    by_scenarios = defaultdict(list)
    for model, evs in plan[lr].items():
      by_scenarios[tuple(sorted(evs))].append(model)
    for evs, models in sorted(by_scenarios.items()):
      lrs = "" if lr == 1e-3 else f" --lrs {lr:g}"
      lines.append(SWEEP.format(data=data) + f" --models {','.join(sorted(models))} "
                   f"--scenarios {','.join(map(str, evs))}{lrs}")
  return lines


def coverage_markdown(rows: list[dict]) -> str:
  """coverage.md: the paper's 176 cells, how many we ran, and the commands for the rest."""
  cov = coverage(rows)
  total = sum(c["cells"] for c in cov.values())
  lines = ["# Coverage of the paper's table\n",
           f"The paper's run table has {total} cells (11 models x 4 scenarios x "
           f"{len(cov)} domains; its learning rate is 1e-3 except where "
           "`stir_jax/resources/paper_results.csv` says otherwise). Ours, at the paper's learning "
           "rate of each cell:\n",
           "| domain | cells | with a run | with 3 runs or more |", "|---|---|---|---|"]
  lines += [f"| {d} | {c['cells']} | {c['run']} | {c['complete']} |" for d, c in cov.items()]
  lines.append(f"| all | {total} | {sum(c['run'] for c in cov.values())} | "
               f"{sum(c['complete'] for c in cov.values())} |\n")
  for data, c in cov.items():
    if not c["run"]:
      continue
    if c["partial"]:
      lines.append(f"{data}, cells with fewer than 3 runs: " + ", ".join(
          f"{m} {SCENARIO_NAMES[e]} ({_runs_word(n)})" for (m, _, e), n in c["partial"]) + ".\n")
    if c["missing"]:
      lines.append(f"{data}, cells with no run yet ({len(c['missing'])}): " + ", ".join(
          f"{m} {SCENARIO_NAMES[e]}" for m, _, e in c["missing"]) + ".\n")
    if c["partial"] or c["missing"]:
      lines.append("The sweep commands that complete these cells to 3 runs each (finished runs "
                   "are skipped, so rerunning a command continues it):\n")
      todo = [cell for cell, _ in c["partial"]] + c["missing"]
      lines += ["```bash", *sweep_commands(data, todo), "```\n"]
  absent = [d for d, c in cov.items() if not c["run"]]
  if absent:
    lines.append(
        f"No run of {', '.join(absent)}: their data are the STIR authors' published files "
        "(Zenodo record 6578038, https://zenodo.org/records/6578038: "
        + ", ".join(f"{d}.npz" for d in absent) + "), which this repository does not "
        "regenerate (`python -m stir_jax.data generate` writes emoji only; the others need the "
        "MNIST, Mapillary and DOTA sources). With a file in data/, check it, run the paper's "
        "cells of its domain (3 seeds each, the paper's learning rate per cell) and build the "
        "report:\n")
    for data in absent:
      lines += ["```bash", f"python -m stir_jax.data check data/{data}.npz",
                *sweep_commands(data),
                f"python eval.py --runs=results/{data} --publish=results/{data}", "```\n"]
  return "\n".join(lines)


def cells_markdown(rows: list[dict]) -> str:
  """cells.md: per cell our mean against the paper's, z, the percentile among the paper's runs
  and the weak within-two-std check, then the joint test over the cells."""
  lines = ["# Test accuracy per cell, ours against the paper's\n",
           "Test accuracy (%) of the best-validation parameters on the cell's test sizes; ours "
           "mean ± std over our runs (seeds), the paper's over its runs. z = (our mean - the "
           "paper's mean) / (the paper's std / sqrt(our runs)). Percentile: the share of the "
           "paper's runs below our mean. Within 2 paper std (weak): whether the difference is "
           "under two of the paper's standard deviations of a single run; a cell with a large "
           "spread passes it whatever its runs give (pixel_pool All2All: 2 x 44.97 points). "
           "Paper columns are blank where we did not run the paper's learning rate.\n",
           "| model | data | scenario | lr | runs | ours | paper | difference | z | "
           "percentile | within 2 paper std (weak) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
  key = lambda r: (r["data"], int(r["eval"]), r["model"], _num(r["lr"]) or 0.0)
  for r in sorted(rows, key=key):
    n, mean, std = int(r["runs"]), _num(r["mean_test_acc"]), _num(r["std_test_acc"])
    ours = f"{mean:.1f} ± {std:.1f}" if std is not None else f"{mean:.1f}"
    pm, ps = _num(r.get("paper_mean")), _num(r.get("paper_std"))
    paper = "" if pm is None else f"{pm:.2f} ± {ps:.2f}"
    diff, z, pct = _num(r.get("difference")), _num(r.get("z")), _num(r.get("paper_percentile"))
    weak = str(r.get("within_2_paper_std") or "")
    weak = {"True": "yes", "False": "no"}.get(weak, weak)
    lines.append(f"| {r['model']} | {r['data']} | {SCENARIO_NAMES.get(int(r['eval']), r['eval'])} "
                 f"| {_num(r['lr']):g} | {n} | {ours} | {paper} | "
                 + ("" if diff is None else f"{diff:+.2f}") + " | "
                 + ("" if z is None else f"{z:+.2f}") + " | "
                 + ("" if pct is None else f"{pct:.0f}%") + f" | {weak} |")
  lines += ["", joint_statement(rows), ""]
  return "\n".join(lines)


def cost_markdown(times: list[dict]) -> str:
  """cost.md: per cell the runs' epochs, median epoch, minutes per run, the machines, the epoch
  relative to standard on the same machine and the paper's, and the total training time."""
  lines = ["# Cost of the runs\n",
           "Per cell: epochs per run (mean), the median epoch (mean over runs; the first epoch's "
           "compilation and paused epochs left out), minutes per run (epochs x median epoch, "
           "compilation and evaluation left out), the machines (a run's CPU as results.json "
           "records it; unrecorded: runs from before the record), the epoch relative to standard "
           "runs on the same machine boot (blank where standard did not run there) and the "
           "paper's ratio on its GPU.\n",
           "| data | scenario | model | runs | epochs per run | median epoch (s) | minutes per run "
           "| relative to standard | paper's relative | machines |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  total, runs = 0.0, 0
  for t in sorted(times, key=lambda t: (t["data"], int(t["eval"]), t["model"])):
    n = int(t["runs"]) if _num(t.get("runs")) is not None else None
    minutes, rel, prel = _num(t["run_minutes"]), _num(t["relative_to_standard"]), _num(
        t["paper_relative"])
    if n is not None:
      total += minutes * n
      runs += n
    lines.append(f"| {t['data']} | {SCENARIO_NAMES.get(int(t['eval']), t['eval'])} | {t['model']} "
                 f"| {'' if n is None else n} | {_num(t['mean_epochs']):.0f} | "
                 f"{_num(t['median_epoch_seconds']):.1f} | {minutes:.1f} | "
                 + ("" if rel is None else f"{rel:.2f}") + " | "
                 + ("" if prel is None else f"{prel:.2f}") + f" | {t['hosts']} |")
  lines += ["", f"{runs} runs, {total / 60:.1f} hours of training in all (minutes per run x "
            "runs, summed).", ""]
  return "\n".join(lines)


def _read_csv(path: pathlib.Path) -> list[dict]:
  if not path.exists():
    raise RunError(f"{path} is missing (python eval.py --runs=RUNS --out={path.parent} writes it)")
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


TABLES = ("coverage.md", "cells.md", "cost.md")


def tables(report_dir: str | pathlib.Path) -> dict[str, str]:
  """{file name: markdown} of the report's tables, from its summary.csv and epoch_time.csv."""
  report_dir = pathlib.Path(report_dir)
  summary = _read_csv(report_dir / "summary.csv")
  times = _read_csv(report_dir / "epoch_time.csv")
  return {"coverage.md": coverage_markdown(summary), "cells.md": cells_markdown(summary),
          "cost.md": cost_markdown(times)}


def write_tables(report_dir: str | pathlib.Path) -> list[pathlib.Path]:
  """Writes `tables` into report_dir (the README includes these files); returns their paths."""
  report_dir = pathlib.Path(report_dir)
  out = []
  for name, text in tables(report_dir).items():
    (report_dir / name).write_text(text)
    out.append(report_dir / name)
  return out


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
    rows.append({"data": data, "eval": ev, "model": model, "runs": len(secs),
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


def _acc_matrix(rs: list[dict]) -> np.ndarray:
  """(runs, 48) per-size test accuracy (%) of runs."""
  return np.array([[r[c] for c in metrics.SCALE_COLUMNS] for r in rs], float) * 100


def plot_grid(path: pathlib.Path, runs: list[dict]) -> None:
  """Accuracy against object size in small multiples: one column per scenario, one row per data
  x model group (`model_group`: baselines, scale pooling, SESN, the field's other families, the
  user's models). Each model: its runs as thin lines and their median as a thick one (a mean of
  runs that collapse and runs that learn describes no run); standard's median, dashed grey, in
  every group for reference. Each row's legend sits right of its last panel."""
  from stir_jax.eval import figures  # pylint: disable=g-import-not-at-top
  plt = figures.plt_module()
  datas = sorted({r["data"] for r in runs})
  evals = sorted({r["eval"] for r in runs})
  lrs_of = defaultdict(set)
  for r in runs:
    lrs_of[r["model"]].add(r["lr"])
  label = lambda m, lr: m if len(lrs_of[m]) == 1 else f"{m} (lr {lr:g})"
  rows = []
  for d in datas:
    groups = defaultdict(set)
    for r in runs:
      if r["data"] == d:
        groups[model_group(r["model"])].add((r["model"], r["lr"]))
    rows += [(d, g, sorted(groups[g], key=lambda ml: (ml[0], str(ml[1]))))
             for g in GROUP_ORDER if g in groups]
  fig, axes = plt.subplots(len(rows), len(evals), figsize=(3.4 * len(evals) + 2.4,
                                                           2.5 * len(rows)),
                           dpi=110, squeeze=False)
  sizes = np.asarray(metrics.SCALES)
  colours = plt.get_cmap("tab10")
  for i, (d, group, series) in enumerate(rows):
    for j, e in enumerate(evals):
      ax = axes[i][j]
      figures.shade_training(ax, _bands(e)["training"], label=None)
      std_runs = [r for r in runs if (r["data"], r["eval"], r["model"]) == (d, e, "standard")]
      if std_runs and group != "baselines":
        ax.plot(sizes, np.median(_acc_matrix(std_runs), 0), color="grey", lw=1.1, ls="--",
                label="standard (median)")
      shown = 0
      for k, (m, lr) in enumerate(series):
        rs = [r for r in runs if (r["data"], r["eval"], r["model"], r["lr"]) == (d, e, m, lr)]
        colour = colours(k % 10)
        if rs:
          acc = _acc_matrix(rs)
          for run_acc in acc:
            ax.plot(sizes, run_acc, color=colour, lw=0.6, alpha=0.45)
          shown += 1
        # the legend entry even where this scenario has no run of the model: one legend per row
        ax.plot(sizes, np.median(acc, 0) if rs else np.full(len(sizes), np.nan), color=colour,
                lw=1.8, label=label(m, lr))
      if not shown:
        ax.text(0.5, 0.5, "no runs", transform=ax.transAxes, ha="center", va="center",
                fontsize=8, color="grey")
      ax.set_title(f"{d}, {SCENARIO_NAMES.get(e, e)}: {group}", fontsize=8)
      ax.set_ylim(*figures.ACC_YLIM)
      ax.set_xlim(sizes[0] - 1, sizes[-1] + 1)
      ax.grid(alpha=0.3)
      ax.tick_params(labelsize=7)
      ax.set_xlabel("object size s", fontsize=7)
      if j == 0:
        ax.set_ylabel("test accuracy (%)", fontsize=7)
    handles, labels = axes[i][-1].get_legend_handles_labels()
    axes[i][-1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                       fontsize=7, frameon=False)
  fig.suptitle("Test accuracy against object size: thin lines single runs, thick lines their "
               "median (training sizes shaded)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def _bands(scenario: int) -> dict[str, list[int]]:
  """The object sizes below, inside and above a scenario's training sizes."""
  from stir_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  train = pipeline.scales_for(scenario, "train")
  return {"smaller": [s for s in metrics.SCALES if s < min(train)], "training": train,
          "larger": [s for s in metrics.SCALES if s > max(train)]}


def level_table(runs: list[dict], runs_dir: pathlib.Path) -> list[dict]:
  """Pyramid ensembles (eval.py's levels.csv): per run and size band, the test accuracy (%) of
  each level alone and of the average of their logits, and how far that average falls short of
  its best single level."""
  out = []
  for r in runs:
    path = runs_dir / r["run"] / "levels.csv"
    if not path.exists():
      continue
    acc = {row["level"]: np.array([float(row[c]) for c in metrics.SCALE_COLUMNS]) * 100
           for row in _read_csv(path) if row["quantity"] == "accuracy"}
    for band, sizes in _bands(r["eval"]).items():
      if not sizes:
        continue
      at = {level: float(a[[s - metrics.MIN_SCALE for s in sizes]].mean())
            for level, a in acc.items()}
      single = {level: v for level, v in at.items() if level != "average"}
      best = max(single, key=single.get)
      out.append({"model": r["model"], "data": r["data"], "eval": r["eval"], "seed": r["seed"],
                  "band": band, **{f"acc_{level.replace(' ', '')}": round(v, 1)
                                   for level, v in at.items()},
                  "best_level": best, "average_minus_best": round(at["average"] - single[best], 1)})
  return out


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
  """One panel per model x data x scenario that the paper ran at our learning rate: our runs'
  per-size test accuracy (thin lines) and their median (thick), against the paper's mean (dashed)
  and +-1 std over its runs (blue band); where the paper's runs split between collapse and
  success (`_bimodal_cells`) its split instead. Returns the number of panels (no file without
  one)."""
  from stir_jax.eval import figures  # pylint: disable=g-import-not-at-top
  plt = figures.plt_module()
  paper, per_size, paper_accs = paper_results(), paper_per_size(), paper_runs()
  bimodal = _bimodal_cells()
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
  fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 2.7 * nrow + 0.6), dpi=110,
                           squeeze=False)
  sizes = np.asarray(metrics.SCALES)
  for ax, cell in zip(axes.flat, cells):
    model, data, ev = cell
    figures.shade_training(ax, _bands(ev)["training"], label=None)
    ref = per_size[cell]
    if cell in bimodal:  # the paper's mean and std describe none of its runs: say how they split
      accs, limit = paper_accs[cell], collapse_limit(data)
      ok = accs[accs >= limit]
      ax.text(0.5, 0.45, f"paper: {int(np.sum(accs < limit))} of {len(accs)} runs collapsed "
              f"(< {limit:.1f}%),\n{len(ok)} at {ok.min():.1f}-{ok.max():.1f}% (median "
              f"{np.median(ok):.1f}%);\nits per-size mean describes no run", fontsize=6.5,
              transform=ax.transAxes, ha="center", va="center", color="navy",
              bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
    else:
      ax.fill_between(sizes, ref["mean"] - ref["std"], ref["mean"] + ref["std"],
                      color="tab:blue", alpha=0.18, lw=0, label="paper, ±1 std over its runs")
      ax.plot(sizes, ref["mean"], color="navy", lw=1.1, ls="--", label="paper, mean")
    acc = _acc_matrix(groups[cell])
    if len(acc) == 1:  # a lone run drawn as the median is: a thin line would vanish in the band
      ax.plot(sizes, acc[0], color="tab:red", lw=1.8, label="ours, median")
    else:
      for k, run_acc in enumerate(acc):
        ax.plot(sizes, run_acc, color="tab:red", lw=0.7, alpha=0.5,
                label="ours, each run" if k == 0 else None)
      ax.plot(sizes, np.median(acc, 0), color="tab:red", lw=1.8, label="ours, median")
    ax.set_title(f"{model}, {data} {SCENARIO_NAMES.get(ev, ev)}\n"
                 f"ours {_runs_word(len(acc))}, paper {_runs_word(ref['runs'])}", fontsize=8)
    ax.set_ylim(*figures.ACC_YLIM)
    ax.set_xlim(sizes[0] - 1, sizes[-1] + 1)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
    ax.set_xlabel("object size s", fontsize=7)
  for ax in list(axes.flat)[len(cells):]:
    ax.set_visible(False)
  for row in axes:
    row[0].set_ylabel("test accuracy (%)", fontsize=7)
  handles, labels = {}, []
  for ax in axes.flat:
    for h, l in zip(*ax.get_legend_handles_labels()):
      if l not in handles:
        handles[l] = h
        labels.append(l)
  fig.legend([handles[l] for l in labels], labels, loc="upper center", ncol=len(labels),
             fontsize=8, frameon=False)
  fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / (2.7 * nrow + 0.6)))
  fig.savefig(path)
  plt.close(fig)
  return len(cells)


FIT_LIMIT = 90.0  # training-size accuracy (%) below which a cell does not fit its training sizes
BAND_GAP = 10.0  # points between our band mean and the paper's that a finding names


def _agreement(ours: bool, paper: bool) -> str:
  return "as in the paper" if ours == paper else "unlike the paper"


def _paper_pooling_models() -> list[str]:
  """The paper's scale-pooling models (registry: family paper, pooling)."""
  from stir_jax import models  # pylint: disable=g-import-not-at-top
  return [n for n in models.names(family="paper") if models.lookup(n).pooling]


def findings(summary: list[dict], bands: list[dict], runs: list[dict]) -> list[str]:
  """The paper's findings, each stated as far as these runs measure it, with a verdict against
  the paper's own numbers where the paper makes the claim (lines of markdown)."""
  out = []
  by = _paper_lr_rows(summary)
  paper = paper_results()
  cells = sorted({(d, e) for _, d, e in by})
  for d, e in cells:
    std = by.get(("standard", d, e))
    if std is None or e == 4:
      continue
    for pool in _paper_pooling_models():
      p = by.get((pool, d, e))
      if p is None:
        continue
      beats = p["mean_test_acc"] > std["mean_test_acc"]
      line = (f"- {d}, {SCENARIO_NAMES[e]}: {pool} ({p['mean_test_acc']:.1f}%, "
              f"{_runs_word(p['runs'])}) {'beats' if beats else 'does not beat'} standard "
              f"({std['mean_test_acc']:.1f}%, {_runs_word(std['runs'])}) on the test sizes (those "
              "outside training)")
      ref_p, ref_s = paper.get((pool, d, e)), paper.get(("standard", d, e))
      if ref_p and ref_s:
        paper_beats = ref_p["mean"] > ref_s["mean"]
        line += (f"; the paper's table: {pool} {ref_p['mean']:.2f}% against standard "
                 f"{ref_s['mean']:.2f}%, {'beats' if paper_beats else 'does not beat'}: "
                 f"{_agreement(beats, paper_beats)}")
      out.append(line + ".")
  for (model, d, e), r in sorted(by.items()):
    if model == "energy_pool":
      others = [v["mean_test_acc"] for (m, dd, ee), v in by.items()
                if (dd, ee) == (d, e) and m not in ("energy_pool",)]
      best = max(others) if others else None
      # each run, and its best validation accuracy: a run that never left chance shows as such
      each = sorted((x["seed"], x["test_accuracy"], x["best_val_accuracy"]) for x in runs
                    if (x["model"], x["data"], x["eval"]) == ("energy_pool", d, e)
                    and x["lr"] == r["lr"])
      line = (f"- {d}, {SCENARIO_NAMES[e]}: energy_pool reaches {r['mean_test_acc']:.1f}%"
              + (" " if best is not None else "")
              + (f"against {best:.1f}% for the best other model" if best is not None else "")
              + "; per run: "
              + ", ".join(f"seed {seed} {t * 100:.1f}% (best validation {v * 100:.1f}%)"
                          for seed, t, v in each))
      if r["paper_mean"] is not None:
        z = r.get("z")
        line += (f". The paper: energy pooling collapses, {r['paper_mean']:.2f} ± "
                 f"{r['paper_std']:.2f}%" + ("" if z is None else f"; our mean at z = {z:+.2f}")
                 + (": as in the paper" if z is not None and abs(z) <= 2 else
                    ": unlike the paper" if z is not None else ""))
      out.append(line + ".")
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
      mean = float(np.mean(vals))
      verdict = ("goes against the paper's claim that the selected kernel size grows with the "
                 "object" if mean <= 0 else
                 "as the paper claims (the selected kernel size grows with the object), "
                 + ("weakly (below 0.3)" if mean < 0.3 else "moderately")
                 if all(v > 0 for v in vals) else
                 "mixed: positive on average, not in every run (the paper: the selected kernel "
                 "size grows with the object)")
      out.append(f"- {d}, {SCENARIO_NAMES[e]}, {model}: Spearman correlation of the kernel size "
                 f"chosen by {pool_layer.split('_')[0]} with the object size {mean:.2f} (mean "
                 f"over {_runs_word(len(vals))}{skipped}; per run "
                 f"{min(vals):.2f} to {max(vals):.2f}): {verdict}.")
  for b in bands:
    if b["eval"] == 4:
      continue
    sides = [(k, b[k]) for k in ("smaller", "larger") if b[k] is not None]
    drop = ", ".join(f"{k} sizes {v:.1f}%" for k, v in sides)
    # Small2Large and Large2Small test on one side of the training sizes only
    where = "both sides" if len(sides) == 2 else f"the {sides[0][0]} sizes"
    lower = all(v < b["training"] for _, v in sides)
    if not lower:
      shape = "not lower outside the training sizes"
    elif b["training"] >= FIT_LIMIT:
      shape = f"plateau on the training sizes, lower on {where}"
    else:
      shape = (f"highest on the training sizes but only {b['training']:.1f}% there (below "
               f"{FIT_LIMIT:.0f}%: it does not fit its own training sizes), lower on {where}")
    paper_text = ""
    if b["mean_abs_gap"] is not None:
      paper_text = (" (paper: " + ", ".join(f"{k} {b['paper_' + k]:.1f}%" for k in
                                           ("training", "smaller", "larger") if b[k] is not None)
                    + f"; mean |ours - paper| over the 48 sizes {b['mean_abs_gap']:.1f} points")
      gaps = [(k, b[k] - b[f"paper_{k}"]) for k in ("training", "smaller", "larger")
              if b[k] is not None and abs(b[k] - b[f"paper_{k}"]) > BAND_GAP]
      paper_text += "".join(f"; {k} sizes {abs(g):.1f} points {'above' if g > 0 else 'below'} "
                            "the paper's" for k, g in gaps) + ")"
    out.append(f"- per size, {b['data']}, {SCENARIO_NAMES[b['eval']]}, {b['model']}: training "
               f"sizes {b['training']:.1f}%, {drop}: {shape}{paper_text}.")
  return out


def _validation_note(r: dict, acc: float, test: np.ndarray, val: np.ndarray | None) -> str:
  """For a run outside the paper's test accuracies: where its best validation accuracy lies among
  the paper's runs', and on All2All (validation and test on the same sizes) its test-minus-
  validation gap against theirs. A run whose validation accuracy is ordinary but whose test
  accuracy is not trained like theirs and tested luckily (or unluckily)."""
  if val is None or len(val) != len(test):
    return ""
  v = round(r["best_val_accuracy"] * 100, 2)
  if v > val.max():
    where = f"above all of theirs (highest {val.max():.2f}%)"
  elif v < val.min():
    where = f"below all of theirs (lowest {val.min():.2f}%)"
  else:
    where = f"among theirs ({val.min():.2f} to {val.max():.2f}%, mean {val.mean():.2f})"
  if r["eval"] != 4:
    return f" Its best validation accuracy (on the training sizes), {v:.2f}%, lies {where}."
  gap = test - val
  return (f" Its best validation accuracy, {v:.2f}%, lies {where}; test minus validation {acc - v:+.2f} points, the paper's runs' "
          f"{gap.mean():+.2f} ± {gap.std(ddof=1):.2f} (All2All validates and tests on the same "
          "sizes).")


def notes(runs: list[dict], runs_dir: pathlib.Path) -> list[str]:
  """What else the run files say (markdown lines): unfinished runs, evaluated runs without an
  equivariance file, runs outside the paper's range of runs, the training order's effect (runs
  of the authors' fixed order in <runs_dir>_order, when that folder exists)."""
  out = []
  finished = {runs_dir / r["run"] for r in runs}
  for cfg in sorted(runs_dir.rglob("config.json")):
    run = cfg.parent
    if run in finished or (run / "results.json").exists():
      continue
    epochs = len(read_metrics(run))
    ckpt = "its checkpoints kept to resume" if (run / "checkpoints").is_dir() else "no checkpoints"
    out.append(f"- Unfinished: {run.relative_to(runs_dir)}, {epochs} epochs logged, {ckpt} (in "
               "progress, or interrupted; not in the tables).")
  no_eq = defaultdict(int)
  for r in runs:
    d = runs_dir / r["run"]
    if (d / "consistency.json").exists() and not (d / "equivariance.npz").exists():
      no_eq[r["model"]] += 1
  for model, n in sorted(no_eq.items()):
    out.append(f"- {model}: {_runs_word(n)} evaluated by eval.py (consistency.json) without an "
               "equivariance.npz, hence no row in the equivariance table: eval.py measures the "
               "error on the stage1/stage2 feature maps a model returns with with_aux=True, and "
               f"{model} returns none (its aux holds no 4-D or 5-D stage maps).")
  paper, paper_accs, paper_vals = paper_results(), paper_runs(), paper_run_validation()
  for r in sorted(runs, key=lambda r: (r["model"], r["eval"], str(r["seed"]))):
    cell = (r["model"], r["data"], r["eval"])
    ref = paper_accs.get(cell)
    if ref is None or not _same_lr(r["lr"], paper.get(cell)):
      continue
    acc = round(r["test_accuracy"] * 100, 2)  # the paper's runs are given to 0.01 points
    if acc > ref.max() or acc < ref.min():
      side, edge = ("above", ref.max()) if acc > ref.max() else ("below", ref.min())
      out.append(f"- {r['model']}, {r['data']} {SCENARIO_NAMES.get(r['eval'], r['eval'])}, seed "
                 f"{r['seed']}: {acc:.1f}%, {side} all {len(ref)} of the paper's runs of the cell "
                 f"(its {'highest' if side == 'above' else 'lowest'} {edge:.2f}%)."
                 + _validation_note(r, acc, ref, paper_vals.get(cell)))
  order_dir = runs_dir.parent / f"{runs_dir.name}_order"
  if order_dir.is_dir() and order_dir.resolve() != runs_dir.resolve():
    try:
      ordered, _ = find_all_runs(order_dir)
    except RunError:
      ordered = []
    by_cell = defaultdict(dict)                         # cell -> {seed: accuracy (%)}
    for r in runs:
      by_cell[(r["model"], r["data"], r["eval"], r["lr"])][r["seed"]] = r["test_accuracy"] * 100
    fixed = defaultdict(dict)
    for r in ordered:
      fixed[(r["model"], r["data"], r["eval"], r["lr"], r["train_order"])][r["seed"]] = (
          r["test_accuracy"] * 100)
    for (model, d, e, lr, order), by_seed in sorted(fixed.items(), key=lambda kv: str(kv[0])):
      reshuffled = by_cell.get((model, d, e, lr))
      if not reshuffled:
        continue
      accs, mine = list(by_seed.values()), list(reshuffled.values())
      # a seed fixes the initial parameters: the same seed under both orders differs by the order
      paired = [(s, by_seed[s] - reshuffled[s]) for s in sorted(by_seed) if s in reshuffled]
      out.append(f"- Training order ({order_dir.name}): {model}, {d} "
                 f"{SCENARIO_NAMES.get(e, e)}, the authors' fixed order ({order}) "
                 f"{np.mean(accs):.1f}% ({_runs_word(len(accs))}: "
                 + " / ".join(f"{a:.1f}" for a in accs) + f") against {np.mean(mine):.1f}% "
                 f"({_runs_word(len(mine))}) with the examples reshuffled every epoch (this "
                 f"folder's order), a difference of {np.mean(accs) - np.mean(mine):+.1f} points"
                 + (f"; Welch's p = {p:.3g}" if (p := _welch_p(np.array(accs), np.array(mine)))
                    is not None else "")
                 + ("; the same seed (the same initial parameters) under the two orders: "
                    + ", ".join(f"seed {s} {diff:+.1f}" for s, diff in paired) if paired else "")
                 + ".")
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


def family_references() -> dict[str, str]:
  """Beyond the paper: the models of the families table (the field's families, the paper's scale
  pooling and SESN models) with the work each implements (registry: reference)."""
  from stir_jax import models  # pylint: disable=g-import-not-at-top
  return {n: models.lookup(n).reference for n in models.names()
          if models.lookup(n).reference}


@functools.lru_cache(maxsize=None)
def _family(name: str) -> str:
  """A model's family: "paper", "variant", "field", "mnist_scale" or "user" (any model the
  registry does not know, e.g. "mypkg.nets:MyNet", whose package the report need not import)."""
  from stir_jax import models  # pylint: disable=g-import-not-at-top
  try:
    return models.lookup(name).family
  except Exception:  # pylint: disable=broad-except  # not registered, or its package is not here
    return "user"


def is_peer(name: str) -> bool:
  """Whether a model is compared with the paper's scale pooling in the families table: the
  field's other families and the user's own models."""
  return _family(name) in ("field", "user")


# The groups of generalization.png's rows: the paper's models by kind (registry: group), then
# the others.
GROUP_ORDER = ("baselines", "scale pooling", "SESN", "the field's other families", "your models",
               "other")


def model_group(name: str) -> str:
  """The group of generalization.png a model's curves go to."""
  family = _family(name)
  if family in ("paper", "variant"):
    from stir_jax import models  # pylint: disable=g-import-not-at-top
    return models.lookup(name).group or "other"
  return {"field": "the field's other families", "user": "your models"}.get(family, "other")


def _welch_p(a: np.ndarray, b: np.ndarray) -> float | None:
  """Two-sided p-value of Welch's t-test of equal means (None with fewer than 2 runs a side)."""
  if len(a) < 2 or len(b) < 2:
    return None
  from scipy import stats  # pylint: disable=g-import-not-at-top
  return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def families_table(runs: list[dict], bands: list[dict]) -> list[dict]:
  """Per data x scenario holding runs of the field's other families or of the user's own models
  (`is_peer`): each of them and the reference models (pixel_pool, hermite, disco), one row per
  learning rate, with mean and
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
  for d, e in sorted({(d, e) for m, d, e, _ in acc if is_peer(m)}):
    pixel = {lr: v for (m, dd, ee, lr), v in acc.items() if (m, dd, ee) == ("pixel_pool", d, e)}
    base_lr = next((lr for lr in pixel if _same_lr(lr, paper.get(("pixel_pool", d, e)))),
                   max(pixel, key=lambda lr: len(pixel[lr]), default=None))
    base = np.array(pixel.get(base_lr, []))
    users = sorted({m for m, dd, ee, _ in acc if (dd, ee) == (d, e) and _family(m) == "user"})
    refs = family_references()
    for model in [*refs, *users]:
      for lr in sorted(lr for (m, dd, ee, lr) in acc if (m, dd, ee) == (model, d, e)):
        vals = np.array(acc[(model, d, e, lr)])
        b = band[(model, d, e, lr)]
        is_base = model == "pixel_pool" and lr == base_lr
        p = _welch_p(vals, base) if not is_base else None
        rows.append({
            "model": model, "family": refs.get(model, "your model"), "data": d,
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
    if not is_peer(r["model"]) or r["minus_pixel_pool"] is None:
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
    write_tables(out_dir)  # from the CSVs just written: the test rebuilds them the same way
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
             "paper_lr", "paper_mean", "paper_std", "difference", "z", "paper_percentile",
             "within_2_paper_std"]
  _write_csv(out_dir / "summary.csv", summary, sfields)
  times = epoch_times(runs)
  tfields = ["data", "eval", "model", "runs", "median_epoch_seconds", "mean_epoch_seconds",
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
                  "Figure 5; dashed: the paper's mean, blue band ±1 std over its runs, or where "
                  "its runs split between collapse and success the split; red: our runs, thin "
                  "each, thick their median; grey: the training sizes):\n\n"
                  "![ours against the paper per size](paper_comparison.png)\n\n")
  equi = equivariance_table(runs)
  efields = ["model", "data", "eval", "runs", "collapsed_left_out", *EQUIVARIANCE_KEYS]
  equi_text = ""
  if equi:
    _write_csv(out_dir / "equivariance.csv", equi, efields)
    equi_text = (
        "## Equivariance error of the feature maps\n\n"
        "||a - b||² / ||a||² between the feature maps a and b of one object at two sizes, b "
        "resized to a's size (the paper's six size pairs, 64/49, 48/33 and 32/17 both ways; the "
        "maps cropped to the object; mean over the test objects and the "
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
  levels = level_table(runs, runs_dir)
  levels_text = ""
  if levels:
    lfields = list(levels[0])
    _write_csv(out_dir / "levels.csv", levels, lfields)
    levels_text = (
        "## The pyramid ensemble's levels\n\n"
        "Test accuracy (%) per size band of each level of the Gaussian pyramid alone (its image "
        "side in pixels: the same CNN on the image shrunk 1x, 2x, 4x) and of the average of the "
        "levels' logits, which is the model's prediction (eval.py's levels.csv and levels.png "
        "per run); average_minus_best: that average against its best single level.\n\n"
        + _md_table(levels, lfields) + "\n\n")
  n_recorded = len({r["machine"][:2] for r in runs if r.get("host")})
  n_unrecorded = sum(not r.get("host") for r in runs)
  note_lines = notes(runs, runs_dir)
  text = (
      f"# STIR results: {len(runs)} runs under {runs_dir}\n\n"
      "## Coverage\n\n" + coverage_markdown(summary).split("\n", 2)[2]
      + "\n## Test accuracy (%), ours against the paper's published means\n\n"
      + _md_table(summary, sfields)
      + "\n\nThe paper's columns are filled where we ran its learning rate for the cell "
      "(paper_lr). z: (our mean - the paper's mean) / (the paper's std / sqrt(our runs)), how far "
      "our mean lies from the paper's in standard errors of a mean of that many runs. "
      "paper_percentile: the share (%) of the paper's runs of the cell below our mean (its per-run "
      "results; results.csv places each of our runs the same way). within_2_paper_std is a weak "
      "check, kept for comparison: whether our mean lies within two of the paper's standard "
      "deviations of a single run (over its 25-50 seeds) of its mean; a cell with a large spread "
      "passes it whatever its runs give.\n\n" + joint_statement(summary) + "\n\n"
      "## The paper's findings, as measured here\n\n" + "\n".join(findings(summary, bands, runs))
      + ("\n\n## Also in these runs\n\n" + "\n".join(note_lines) if note_lines else "")
      + "\n\n## Accuracy against object size (training sizes shaded)\n\n"
      "![accuracy against object size](generalization.png)\n\n"
      "Mean test accuracy (%) on the sizes below, inside and above the training sizes, ours and "
      "the paper's (paper_*; mean_abs_gap: the mean over the 48 sizes of |our mean - the "
      "paper's mean|, in points):\n\n"
      + _md_table(bands, bfields) + "\n\n" + compare_text + families_text + equi_text
      + levels_text +
      "## Epoch time relative to the standard model\n\n"
      f"Ours on several 2-core CPU machines: {n_recorded} recorded machine boots (the hosts "
      f"column names their CPUs) and {n_unrecorded} runs from before the machine was recorded "
      "(unrecorded); the paper's on its GPU (mean epoch seconds of its run table). Ours is "
      "relative by the median epoch of each run (mean over runs), which leaves out the first "
      "epoch's compilation and epochs stretched while the machine was paused or shared; the "
      "mean epoch (results.json) is listed too. run_minutes: epochs run x median epoch, the "
      "mean over runs (the cost of one run on its machine, compilation and evaluation "
      "left out). relative_to_standard divides each run's median epoch by that of the standard "
      "runs on the same machine (one boot of it, with one malloc: machines with one CPU name "
      "differ in speed, and so does a process under tcmalloc; "
      "same scenario where there are, else any scenario of the data) and averages; blank where "
      "standard has not run on that machine. cost.md has the same per cell, with the total.\n\n"
      + _md_table(times, tfields) + "\n")
  return summary, text


def main(argv: list[str] | None = None) -> int:
  """python -m stir_jax.eval.report tables REPORT_DIR: rewrites coverage.md, cells.md and
  cost.md of a report folder from its summary.csv and epoch_time.csv."""
  import sys  # pylint: disable=g-import-not-at-top
  argv = sys.argv[1:] if argv is None else argv
  if len(argv) != 2 or argv[0] != "tables":
    print("usage: python -m stir_jax.eval.report tables REPORT_DIR", file=sys.stderr)
    return 2
  try:
    written = write_tables(argv[1])
  except (RunError, OSError, KeyError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print("wrote " + ", ".join(str(p) for p in written))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
