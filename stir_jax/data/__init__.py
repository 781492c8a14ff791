"""STIR data: the npz file format, the emoji generator and the tf.data input pipeline.

Submodules:
  stir_file: `load_stir`, `save_stir`, `summarize`, `StirData`, `StirFileError` (numpy only).
  emoji: `generate_emoji`, `render_icon`, `EMOJI_NAMES` (needs cairosvg, fontawesome-free).
  pipeline: `make_dataset`, `SCENARIOS`, `scales_for`, `select`, `ensure_emoji` (needs TensorFlow).

Only stir_file is imported here, so ``python -m stir_jax.data check`` starts quickly.
"""
from stir_jax.data.stir_file import load_stir
from stir_jax.data.stir_file import save_stir
from stir_jax.data.stir_file import StirData
from stir_jax.data.stir_file import StirFileError
from stir_jax.data.stir_file import summarize
