"""For tests and smoke runs: one epoch of the standard model (tests point dataset at a few icons).

Command:  python train.py --config=configs/tiny.py --workdir=/tmp/tiny
Runtime:  under a minute on a 2-core CPU (most of it compilation).
Result:   near chance accuracy; it checks that the whole path runs, not that it learns.
"""
from stir_jax import experiment


def get_config():
  config = experiment.default_config()
  config.model = "standard"
  config.dataset = "data/emoji.npz"
  config.num_epochs = 1
  config.batch_size = 8
  config.eval_batch_size = 32
  return config
