"""Copies generated markdown tables into the README, so the numbers it shows cannot drift.

  python -m stir_jax.eval.readme [README.md]

A block of the README between ``<!-- generated from PATH: do not edit by hand -->`` and
``<!-- end generated -->`` is replaced by the file PATH (relative to the README's folder), as
written by the report (``eval.py --runs=results/emoji --publish=results/emoji``).
"""
from __future__ import annotations

import pathlib
import re
import sys

BLOCK = re.compile(r"(<!-- generated from (\S+): do not edit by hand -->\n)(.*?)(<!-- end generated -->)",
                   re.S)


def update(readme: str | pathlib.Path) -> list[str]:
  """Rewrites every generated block of `readme` from its file; returns the files used. A missing
  file is an error (FileNotFoundError) and leaves the README as it was."""
  path = pathlib.Path(readme)
  text = path.read_text()
  used = []

  def fill(match: re.Match) -> str:
    source = path.parent / match.group(2)
    used.append(match.group(2))
    return f"{match.group(1)}{source.read_text().strip()}\n{match.group(4)}"

  new = BLOCK.sub(fill, text)
  if new != text:
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(new)
    tmp.replace(path)
  return used


def main(argv: list[str]) -> int:
  readme = argv[0] if argv else "README.md"
  try:
    used = update(readme)
  except FileNotFoundError as e:
    print(f"error: {e.filename} is missing; build the report first", file=sys.stderr)
    return 2
  print(f"{readme}: {len(used)} generated block(s) from {', '.join(used) or 'nothing'}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
