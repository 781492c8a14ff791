"""STIR data: the npz file format, the generators of every domain and the tf.data input pipeline.

Submodules:
  stir_file: `load_stir`, `save_stir`, `summarize`, `StirData`, `StirFileError` (numpy only).
  emoji: `generate_emoji`, `render_icon`, `EMOJI_NAMES` (needs cairosvg, fontawesome-free).
  mnist: `read_idx_folder`, `load_tfds_digits`, `generate_digits` (mnist and fashion_mnist).
  mnist_scale: the MNIST-scale benchmark (Sosnovik et al. 2020): `generate_mnist_scale`,
    `load_mnist_scale`, `save_mnist_scale`, `make_dataset` (its own 28 x 28 npz format); the
    generator and file are `mnist_scale_recipe`, which the TFDS builder stands on.
  trafficsign: `generate_trafficsign` (Mapillary Traffic Sign Dataset v2 folder or zips).
  aerial: `generate_aerial` (DOTA v1.5 zips).
  tfds_sources: `generate_tfds_classification` (tfds:NAME), `generate_tfds_boxes`
    (tfds-boxes:NAME).
  recipes, crops: the digit and crop recipes, `GenerationError`, shared selection helpers.
  tfds_stir: the tensorflow-datasets builder ``stir`` (import it to register "stir/<domain>").
  tfds_mnist_scale: the builder ``mnist_scale`` ("mnist_scale/seed_<k>").
  pipeline: `make_dataset`, `TfdsSource`, `SCENARIOS`, `scales_for`, `select`, `shard`,
    `benchmark`, `ensure_emoji` (needs TensorFlow).
  tf_cpu: TensorFlow and tensorflow-datasets on the CPU only (their GPUs hidden).

Everything beyond stir_file needs the extra ``data`` (`pip install 'stir_jax[data]'`); without it a
call says so in one line. Only stir_file is imported here, so ``python -m stir_jax.data check``
starts quickly.
"""
from stir_jax.data.stir_file import load_stir
from stir_jax.data.stir_file import save_stir
from stir_jax.data.stir_file import StirData
from stir_jax.data.stir_file import StirFileError
from stir_jax.data.stir_file import summarize
