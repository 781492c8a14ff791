"""The paper's protocol: Adam 1e-3, batch 16, at most 200 epochs, early stopping with patience 10 on
validation accuracy, the best-validation parameters tested (Altstidl et al. 2022, Sec. IV).

Command:  python train.py --config=configs/paper.py --workdir=runs/paper_pixel_pool_emoji_2
          (change --config.model / --config.dataset / --config.scenario / --config.seed)
Runtime:  up to 200 epochs; on a 2-core CPU pixel_pool on emoji takes roughly an hour or more,
          standard a few minutes. Use a GPU/TPU for sweeps.
Result:   emoji Mid2Rest mean test accuracy in the paper: pixel_pool 76.6%, standard 39.1%.
"""
from configs import default


def get_config():
  config = default.get_config()
  config.num_epochs = 200
  config.patience = 10
  return config
