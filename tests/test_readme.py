"""The README stays a front page that tells the truth: its set-up commands are where a reader looks
(and are the ones CI runs), its links resolve, and its results table is the generated one."""
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
BEGIN = "<!-- generated from results/emoji/report/cells.md: do not edit by hand -->"
END = "<!-- end generated -->"


def _commands() -> list[str]:
  return re.findall(r"^python3 -m venv .*$", README, flags=re.M)


def test_front_page_is_short_and_starts_with_the_set_up():
  lines = README.splitlines()
  assert len(lines) <= 260, len(lines)
  first = "\n".join(lines[:40])
  install, test = _commands()
  assert install in first and test in first
  assert install.endswith("&& python train.py") and "pip install -e '.[train]'" in install
  assert test.endswith("&& python -m pytest -q -n 2")


def test_ci_runs_the_readmes_test_command():
  assert _commands()[1] in (REPO / ".ci" / "run").read_text()


@pytest.mark.parametrize("page", ["README.md", *sorted(
    str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")), "results/README.md"])
def test_relative_links_resolve(page):
  text = (REPO / page).read_text()
  targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
  missing = [t for t in targets if not t.startswith(("http://", "https://"))
             and not ((REPO / page).parent / t).exists()]
  assert not missing, f"{page} links to missing files: {missing}"


def test_results_table_is_the_generated_one():
  block = README.split(BEGIN, 1)[1].split(END, 1)[0].strip()
  generated = (REPO / "results" / "emoji" / "report" / "cells.md").read_text().strip()
  assert block == generated, "rerun: python -m stir_jax.eval.readme (README's table is stale)"
