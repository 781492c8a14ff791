"""Evaluate runs.

  python eval.py --workdir=runs/default        one run: generalization.csv, accuracy_vs_scale.png,
                                               equivariance.npz/.png, indices.npz/.png (pooling
                                               models), consistency.json, next to the run (an
                                               MNIST-scale run: accuracy_vs_scale.csv/.png)
  python eval.py --runs=runs --out=report      many runs: results.csv, summary.csv (with the
                                               paper's means), generalization.png, epoch_time.csv,
                                               size_bands.csv, report.md; for MNIST-scale runs
                                               mnist_scale.csv (test error per model x lr),
                                               mnist_scale_runs.csv and, from the runs'
                                               accuracy_vs_scale.csv, mnist_scale_bins.csv/
                                               mnist_scale_accuracy.png
  python eval.py --runs=sweeps/emoji --publish=results/emoji
                                               copy the finished runs' small files (no
                                               checkpoints) to results/emoji, report there
"""
from stir_jax import runtime

if __name__ == "__main__":
  runtime.prepare("train")  # first: a missing extra is one line; a re-execution repeats only this

from absl import app, flags  # pylint: disable=wrong-import-position

from stir_jax import cli  # pylint: disable=wrong-import-position

flags.DEFINE_string("workdir", None, "Run directory written by train.py.")
flags.DEFINE_string("runs", None, "Aggregate every run under this directory (with --out).")
flags.DEFINE_string("out", None, "Report directory for --runs (with --publish: DEST/report).")
flags.DEFINE_string("publish", None, "With --runs: copy the finished runs without checkpoints "
                    "into this directory and write the report from the copies.")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  if flags.FLAGS.runs:
    from stir_jax.eval import report  # pylint: disable=g-import-not-at-top
    runs, out_dir = flags.FLAGS.runs, flags.FLAGS.out
    if flags.FLAGS.publish:
      copied = cli.run(report.publish, runs, flags.FLAGS.publish)
      print(f"published {copied} finished runs to {flags.FLAGS.publish}")
      runs, out_dir = flags.FLAGS.publish, out_dir or f"{flags.FLAGS.publish}/report"
    if not out_dir:
      cli.fail("--runs needs --out (the report directory) or --publish")
    out = cli.run(report.aggregate, runs, out_dir)
    print(f"aggregated {out['runs']} runs into {out_dir}/report.md")
    return
  workdir = flags.FLAGS.workdir
  if not workdir:
    cli.fail("--workdir is required (a run directory written by train.py), or --runs with --out")
  cli.start()
  from stir_jax.eval import evaluation  # pylint: disable=g-import-not-at-top
  from stir_jax import distributed  # pylint: disable=g-import-not-at-top
  if distributed.is_main():
    print(f"evaluating {workdir}: the best checkpoint on the test split at all 48 sizes, then "
          "equivariance and scale-pool indices (a few minutes on a CPU for the SiConv models)",
          flush=True)
  out = cli.run(evaluation.evaluate, workdir, progress=distributed.is_main())
  if distributed.is_main():
    if "per_scale_bin" in out:  # an MNIST-scale run
      print(f"wrote {workdir}/accuracy_vs_scale.csv and {workdir}/accuracy_vs_scale.png")
    print(f"test accuracy {out['test_accuracy']:.4f}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
