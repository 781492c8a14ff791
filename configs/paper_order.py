"""The paper's protocol (configs/paper.py) with the authors' training order: one fixed permutation
of the training examples (numpy RandomState(42)), the same every epoch and for every seed, as
their data module iterates it (config.train_order = "paper"). configs/paper.py reshuffles every
epoch instead; everything else is the same.

Command:  python -m stir_jax.sweep --config configs/paper_order.py --out results/emoji_order \\
              --models pixel_pool --datasets data/emoji.npz --scenarios 2 --seeds 1-3
Runtime:  as configs/paper.py (pixel_pool on emoji Mid2Rest: about 45 s an epoch on a 2-core CPU).
Result:   see results/emoji_order/report/report.md.
"""
from configs import paper


def get_config():
  config = paper.get_config()
  config.train_order = "paper"
  return config
