"""Train a model on STIR: `python train.py [--config=configs/x.py] [--workdir=DIR] [--config.f=v]`.

With no arguments it runs configs/default.py into runs/default. Rerunning the same command resumes
an interrupted run; a finished run is left as it is.
"""
from absl import app, flags

from stir_jax import cli, training

cli.define_config_flag("configs/default.py")
flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config file name>).")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  config = cli.loaded_config()
  workdir = flags.FLAGS.workdir or cli.default_workdir(flags.FLAGS["config"].config_filename)
  results = cli.run(training.train_and_evaluate, config, workdir)
  if "seeds" in results:  # config.num_seeds > 1: one run directory per seed
    print(f"mean test accuracy {results['test_accuracy']:.4f} over seeds {results['seeds']}; "
          f"results in {workdir}/seed_<s>/results.json")
  else:
    print(f"test accuracy {results['test_accuracy']:.4f}; results in {workdir}/results.json")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
