"""The paper's protocol: Adam 1e-3, batch 16, at most 200 epochs, early stopping with patience 10 on
validation accuracy, the best-validation parameters tested (Altstidl et al. 2022, Sec. IV); these
are the defaults of stir_jax.experiment.FIELDS (pixel_pool on STIR-emoji, Mid2Rest).

Command:  python train.py --config=configs/paper.py --workdir=runs/paper_pixel_pool_emoji_2
          (change --config.model / --config.dataset / --config.scenario / --config.seed)
Runtime:  up to 200 epochs (early stopping usually ends sooner). Measured epoch times on a
          2-core CPU for emoji Mid2Rest: pixel_pool about 60 s, standard about 5 s, so a
          pixel_pool run can take up to about 3.5 hours there. Use a GPU/TPU for sweeps.
Result:   emoji Mid2Rest mean test accuracy in the paper: pixel_pool 76.6%, standard 39.1%.
Order:    the training examples are reshuffled every epoch (config.train_order = "reshuffle"). The
          authors' code iterates one fixed permutation instead (numpy RandomState(42), the same
          every epoch and seed); configs/paper_order.py trains that way.
"""
from stir_jax import experiment


def get_config():
  config = experiment.default_config()
  config.num_epochs = 200
  config.patience = 10
  return config
