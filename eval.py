"""Evaluate a run directory: `python eval.py --workdir=runs/default`.

Writes generalization.csv and accuracy_vs_scale.png next to the run.
"""
from absl import app, flags

from stir_jax import cli, evaluation

flags.DEFINE_string("workdir", None, "Run directory written by train.py.")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  workdir = flags.FLAGS.workdir
  if not workdir:
    cli.fail("--workdir is required (a run directory written by train.py)")
  out = cli.run(evaluation.evaluate, workdir)
  print(f"test accuracy {out['test_accuracy']:.4f}; wrote {workdir}/generalization.csv "
        f"and {workdir}/accuracy_vs_scale.png")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
