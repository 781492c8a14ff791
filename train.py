"""Train a model on STIR: `python train.py [--config=configs/x.py] [--workdir=DIR] [--config.f=v]`.

With no arguments it runs configs/default.py into runs/default. Rerunning the same command resumes
an interrupted run; a finished run is left as it is. Launched as one of several processes (SLURM,
a TPU pod, JAX_COORDINATOR_ADDRESS or --coordinator_address/--num_processes/--process_id), every
process runs the same command and they train together.
"""
from stir_jax import runtime

if __name__ == "__main__":
  runtime.prepare("train")  # first: a missing extra is one line; a re-execution repeats only this

from absl import app, flags  # pylint: disable=wrong-import-position

from stir_jax import cli  # pylint: disable=wrong-import-position

cli.define_config_flag("configs/default.py")
flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config file name>).")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  config = cli.loaded_config()
  cli.start()
  from stir_jax.train import engine  # pylint: disable=g-import-not-at-top
  from stir_jax import distributed  # pylint: disable=g-import-not-at-top
  workdir = flags.FLAGS.workdir or cli.default_workdir(flags.FLAGS["config"].config_filename)
  results = cli.run(engine.train_and_evaluate, config, workdir)
  if not distributed.is_main():
    return
  if "seeds" in results:  # config.num_seeds > 1: one run directory per seed
    print(f"mean test accuracy {results['test_accuracy']:.4f} over seeds {results['seeds']}; "
          f"results in {workdir}/seed_<s>/results.json")
  else:
    print(f"test accuracy {results['test_accuracy']:.4f}; results in {workdir}/results.json")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
