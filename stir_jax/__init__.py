"""stir_jax: the STIR benchmark and scale-equivariant CNNs in JAX/Flax.

A reimplementation of Altstidl et al., "Just a Matter of Scale? Reevaluating Scale
Equivariance in Convolutional Neural Networks" (arXiv 2211.10288, IJCNN 2023).

Importing the package (or `stir_jax.layers`, `stir_jax.models`) changes nothing global: no
environment variables, no XLA_FLAGS, no jax.config, and no TensorFlow or orbax import. The CPU
compiler tuning the project's entry points use is `stir_jax.runtime.apply_xla_flags()`, which a user may
call before JAX starts its backend.
"""

__version__ = "0.1.0"
