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
  exp = cli.loaded_experiment()  # every setting checked before anything is written
  cli.start()
  from stir_jax.train import engine  # pylint: disable=g-import-not-at-top
  from stir_jax import distributed  # pylint: disable=g-import-not-at-top
  workdir = flags.FLAGS.workdir or cli.default_workdir(flags.FLAGS["config"].config_filename)
  results = cli.run(engine.train_and_evaluate, exp, workdir)
  if not distributed.is_main():
    return
  if "seeds" in results:  # config.num_seeds > 1: one run directory per seed
    print(f"mean test accuracy {results['test_accuracy']:.4f} over seeds {results['seeds']}; "
          f"results in {workdir}/seed_<s>/results.json")
  else:
    for line in summary(results):
      print(line)
    print(f"results in {workdir}/results.json")


def summary(results: dict) -> list[str]:
  """What a run shows: its test accuracy, the accuracy on objects smaller than, as large as and
  larger than the training sizes, and the paper's mean and std for the same cell."""
  import pathlib  # pylint: disable=g-import-not-at-top
  from stir_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from stir_jax import paper_tables  # pylint: disable=g-import-not-at-top
  lines = [f"test accuracy {results['test_accuracy']:.4f} ({results['model']}, "
           f"{results['epochs_run']} epochs, {results['stop_reason']}, best validation "
           f"{results['best_val_accuracy']:.4f} at epoch {results['best_epoch']})"]
  scenario, per_scale = results.get("scenario"), results.get("per_scale")
  if not per_scale or scenario is None:
    return lines
  train = pipeline.scales_for(scenario, "train")
  bands = [("smaller", [s for s in range(17, 65) if s < min(train)]), ("training", train),
           ("larger", [s for s in range(17, 65) if s > max(train)])]
  parts = [f"{name} sizes {sizes[0]}-{sizes[-1]}: "
           f"{100 * sum(per_scale[f's{s}'] for s in sizes) / len(sizes):.1f}%"
           for name, sizes in bands if sizes]
  lines.append(f"accuracy by object size (trained on {train[0]}-{train[-1]} px): "
               + ", ".join(parts))
  data = pathlib.Path(results["dataset"]).stem
  paper = paper_tables.paper_results().get((results["model"], data, scenario))
  if paper is not None:
    lines.append(f"the paper ({results['model']}, {data}, scenario {scenario}, {paper['runs']} "
                 f"runs, lr {paper['lr']:g}): {paper['mean']:.2f}% +- {paper['std']:.2f} mean "
                 "test accuracy")
  else:
    lines.append(f"the paper has no result for {results['model']} on {data}, scenario {scenario}")
  return lines


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
