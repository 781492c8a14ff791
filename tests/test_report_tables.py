"""The report's markdown tables (coverage.md, cells.md, cost.md) and what they state."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from stir_jax import metrics
from stir_jax import paper_tables
from stir_jax.eval import report

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
COMMITTED = REPO / "results" / "emoji" / "report"


@pytest.mark.parametrize("name", report.TABLES)
def test_committed_tables_are_what_the_generator_writes(name):
  """The README includes these files: they must be the generator's output for the committed
  CSVs (rebuild: python -m stir_jax.eval.report tables results/emoji/report)."""
  assert (COMMITTED / name).read_text() == report.tables(COMMITTED)[name], (
      f"{COMMITTED / name} is stale: python -m stir_jax.eval.report tables {COMMITTED}")


def _run(path, model, scenario, seed, acc, lr=1e-3):
  path.mkdir(parents=True)
  res = {"model": model, "dataset": "data/emoji.npz", "scenario": scenario,
         "test_accuracy": acc, "best_val_accuracy": acc, "epochs_run": 3,
         "mean_epoch_seconds": 2.0, "config": {"seed": seed, "learning_rate": lr},
         "per_scale": {c: acc for c in metrics.SCALE_COLUMNS}}
  (path / "results.json").write_text(json.dumps(res))


def test_z_and_the_joint_test_from_the_papers_table(tmp_path):
  """z = (our mean - the paper's) / (its std / sqrt(n)); the joint test counts |z| > 2, names
  the largest with its Bonferroni p and sums z^2 against a chi-square."""
  from scipy import stats
  paper = paper_tables.paper_results()
  std, pix = paper[("standard", "emoji", 2)], paper[("pixel_pool", "emoji", 2)]
  runs = tmp_path / "runs"
  # standard: 3 runs whose mean is the paper's + 3 standard errors; pixel_pool: 1 run at the mean
  shift = 3 * std["std"] / np.sqrt(3)
  for seed, d in ((1, -1.0), (2, 0.0), (3, 1.0)):
    _run(runs / f"s{seed}", "standard", 2, seed, (std["mean"] + shift + d) / 100)
  _run(runs / "p1", "pixel_pool", 2, 1, pix["mean"] / 100)
  report.aggregate(runs, tmp_path / "report")
  with open(tmp_path / "report" / "summary.csv") as f:
    rows = {r["model"]: r for r in csv.DictReader(f)}
  assert float(rows["standard"]["z"]) == pytest.approx(3.0, abs=0.01)
  assert float(rows["pixel_pool"]["z"]) == pytest.approx(0.0, abs=0.01)
  j = report.joint_z(list(rows.values()))
  assert (j["cells"], j["complete"], j["over_2"]) == (2, 1, 1)
  assert j["max_row"]["model"] == "standard"
  p3 = 2 * stats.norm.sf(3.0)
  assert j["bonferroni_p"] == pytest.approx(2 * p3, rel=0.02)
  assert j["chi2_p"] == pytest.approx(stats.chi2.sf(9.0, 2), rel=0.02)
  # the shared shift: mean z 1.5 over 2 cells, 1.5 sqrt(2) standard errors
  assert (j["below"], j["mean_z"]) == (0, pytest.approx(1.5, abs=0.01))
  assert j["mean_z_p"] == pytest.approx(2 * stats.norm.sf(1.5 * np.sqrt(2)), rel=0.02)
  cells = (tmp_path / "report" / "cells.md").read_text()
  assert "|z| > 2 in 1; the largest |z| is 3.00 (standard, emoji Mid2Rest, 3 runs)" in cells
  assert "At least one test rejects" in cells
  assert "| pixel_pool | emoji | Mid2Rest | 0.001 | 1 |" in cells
  # the weak check is labelled as such
  assert "within 2 paper std (weak)" in cells
  md = (tmp_path / "report" / "report.md").read_text()
  assert "within_2_paper_std is a weak check" in md and "DESIGN.md" not in md


def test_a_shift_shared_by_all_cells_rejects_when_no_single_z_does():
  """Ten cells each one standard error above the paper's: no |z| > 2 and the sum of z^2 (10 on
  10 degrees of freedom) is typical, but the mean z (1.0, sqrt(10) standard errors) rejects."""
  rows = [{"model": m, "data": "emoji", "eval": e, "runs": "3", "z": "1.0"}
          for m in ("standard", "hermite", "disco", "xu", "kanazawa") for e in ("1", "3")]
  j = report.joint_z(rows)
  assert (j["over_2"], j["chi2_p"] > 0.4, j["mean_z"]) == (0, True, pytest.approx(1.0))
  assert j["mean_z_p"] < 0.01
  text = report.joint_statement(rows)
  assert "0 of the 10 means lie below the paper's; the mean z is +1.00" in text
  assert "The shift test rejects: the cells' means share a shift from the paper's" in text
  rows[0]["z"] = "-1.0"   # one cell the other way: the mean drops to 0.8, still a shift
  assert report.joint_z(rows)["below"] == 1


def test_one_z_over_2_among_many_cells_is_what_chance_gives():
  """37 cells, one at z = 2.02 (two-sided p = 0.043) and the rest at 0: about 1.7 cells beyond
  |z| = 2 are expected by chance, the Bonferroni p is 1 and the chi-square typical, so the table
  as a whole does not reject; one more cell at z = 4 makes it reject."""
  rows = [{"model": "standard", "data": "emoji", "eval": "2", "runs": "3", "z": "0.0"}
          for _ in range(36)] + [{"model": "disco", "data": "emoji", "eval": "4", "runs": "1",
                                  "z": "2.02"}]
  j = report.joint_z(rows)
  assert (j["over_2"], j["bonferroni_p"], j["chi2_p"] > 0.9) == (1, 1.0, True)
  assert j["over_2_by_chance"] == pytest.approx(37 * 0.0455, abs=0.01)
  text = report.joint_statement(rows)
  assert "No test rejects at the 5% level" in text and "where chance alone gives about 1.7" in text
  assert "At least one test rejects" not in text
  rows[0]["z"] = "4.0"
  assert "At least one test rejects" in report.joint_statement(rows)


def test_coverage_counts_the_papers_176_cells_and_gives_commands(tmp_path):
  runs = tmp_path / "runs"
  for seed in (1, 2, 3):
    _run(runs / f"s{seed}", "standard", 2, seed, 0.4)
  _run(runs / "p", "pixel_pool", 4, 1, 0.9, lr=1e-2)  # the paper's rate for this cell
  _run(runs / "x", "xu", 2, 1, 0.4, lr=1e-2)  # not the paper's rate: not covered
  report.aggregate(runs, tmp_path / "report")
  text = (tmp_path / "report" / "coverage.md").read_text()
  assert "The paper's run table has 176 cells" in text
  assert "| emoji | 44 | 2 | 1 |" in text and "| mnist | 44 | 0 | 0 |" in text
  assert "| all | 176 | 2 | 1 |" in text
  assert "emoji, cells with fewer than 3 runs: pixel_pool All2All (1 run)." in text
  assert "cells with no run yet (42)" in text and "xu Mid2Rest" in text
  assert "python -m stir_jax.data check data/mnist.npz" in text
  assert "Zenodo record 6578038" in text
  def planned(data):
    """The cells of `data` that coverage.md's commands run, each at the paper's learning rate."""
    cells = []
    for line in text.splitlines():
      if f"--datasets data/{data}.npz" not in line:
        continue
      args = line.split()
      lr = float(args[args.index("--lrs") + 1]) if "--lrs" in args else 1e-3
      for m in args[args.index("--models") + 1].split(","):
        for e in args[args.index("--scenarios") + 1].split(","):
          assert paper_tables.paper_results()[(m, data, int(e))]["lr"] == lr
          cells.append((m, int(e)))
    assert len(cells) == len(set(cells))  # each cell in one command
    return set(cells)
  assert len(planned("mnist")) == 44
  # emoji: every cell short of 3 runs, the partial pixel_pool All2All included; not the full one
  emoji = planned("emoji")
  assert len(emoji) == 43 and ("pixel_pool", 4) in emoji and ("standard", 2) not in emoji


def test_a_users_model_is_a_row_and_a_curve_of_its_own(tmp_path):
  """A model the registry does not know (an import path whose package is not installed here)
  appears by name next to the paper's models: in the summary, the families table and the
  generalization figure's "your models" group."""
  runs = tmp_path / "runs"
  for seed, (pix, mine) in enumerate([(0.70, 0.50), (0.74, 0.52)], 1):
    _run(runs / f"p{seed}", "pixel_pool", 2, seed, pix)
    _run(runs / f"m{seed}", "mypkg.nets:MyNet", 2, seed, mine)
  assert report.model_group("mypkg.nets:MyNet") == "your models"
  assert report.model_group("pixel_pool") == "scale pooling"
  assert report.model_group("dss") == "the field's other families"
  report.aggregate(runs, tmp_path / "report")
  with open(tmp_path / "report" / "families.csv") as f:
    fam = {r["model"]: r for r in csv.DictReader(f)}
  assert fam["mypkg.nets:MyNet"]["family"] == "your model"
  assert float(fam["mypkg.nets:MyNet"]["minus_pixel_pool"]) == pytest.approx(51.0 - 72.0)
  assert "| mypkg.nets:MyNet | emoji | Mid2Rest |" in (tmp_path / "report" / "cells.md").read_text()
  assert (tmp_path / "report" / "generalization.png").stat().st_size > 10_000


def test_findings_give_verdicts_against_the_paper(tmp_path):
  """energy_pool does not beat standard, as in the paper's table (8.2% against 39.11%); a
  negative pool-index correlation goes against the paper's claim; a cell far below its training
  sizes is not called a plateau."""
  runs = tmp_path / "runs"
  for seed in (1, 2):
    _run(runs / f"s{seed}", "standard", 2, seed, 0.40)
    _run(runs / f"e{seed}", "energy_pool", 2, seed, 0.09)
    (runs / f"e{seed}" / "consistency.json").write_text(json.dumps({"pool1_spearman": -0.2}))
  report.aggregate(runs, tmp_path / "report")
  md = (tmp_path / "report" / "report.md").read_text()
  assert ("energy_pool (9.0%, 2 runs) does not beat standard (40.0%, 2 runs) on the test sizes "
          "(those outside training); the paper's table: energy_pool 8.20% against standard "
          "39.11%, does not beat: as in the paper.") in md
  assert ("chosen by pool1 with the object size -0.20 (mean over 2 runs; per run -0.20 to "
          "-0.20): goes against the paper's claim") in md
  line = next(l for l in md.splitlines() if l.startswith("- per size, emoji, Mid2Rest, energy_pool"))
  assert "plateau" not in line and "not lower outside the training sizes" in line


def test_tables_cli_errors_are_one_line(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "stir_jax.eval.report", "tables", str(tmp_path)],
                        cwd=REPO, capture_output=True, text=True)
  assert proc.returncode == 2 and proc.stderr.startswith("error: ")
  assert len(proc.stderr.strip().splitlines()) == 1
