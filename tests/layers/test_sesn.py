"""The SESN layers (stir_jax.layers.sesn) with the Hermite and the DISCO basis."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.layers.conv import conv2d
from stir_jax.layers.sesn import SESConvHH, SESConvZ2H, sesn_basis_for, sesn_lift
from stir_jax.layers.sesn_basis import disco_basis, hermite_basis
from stir_jax.models.sesn import DiscoModel, HermiteModel
from tests.helpers import rel_err


def test_named_bases_are_the_models_bases():
  np.testing.assert_array_equal(sesn_basis_for("hermite"), HermiteModel(num_classes=2)._basis())
  np.testing.assert_array_equal(sesn_basis_for("disco"), DiscoModel(num_classes=2)._basis())
  np.testing.assert_array_equal(sesn_basis_for("hermite"), hermite_basis(15, effective_size=7))
  np.testing.assert_array_equal(sesn_basis_for("disco"), disco_basis())
  with pytest.raises(ValueError, match="hermite, disco"):
    sesn_basis_for("gabor")


@pytest.mark.parametrize("basis", ["hermite", "disco"])
def test_lift_is_a_conv_per_scale(basis, rng):
  """Scale s of the lifting layer is a valid correlation with sum_f weight[:, :, f] basis[f, s]."""
  kx, kw = jax.random.split(rng)
  x = jax.random.normal(kx, (2, 20, 20, 2))
  weight = jax.random.normal(kw, (3, 2, 49))
  bias = jnp.array([0.5, -1.0, 2.0])
  layer = SESConvZ2H(3, basis)
  y = jax.jit(layer.apply)({"params": {"weight": weight, "bias": bias}}, x)
  assert y.shape == (2, 4, 6, 6, 3)
  b = sesn_basis_for(basis)
  np.testing.assert_array_equal(y, sesn_lift(x, weight, bias, b))
  for s in (0, 3):
    kernel = jnp.einsum("ocf,fhw->hwco", weight, b[:, s])
    assert rel_err(y[:, s], conv2d(x, kernel, bias, impl="xla")) <= 1e-5


def test_scale_axis_is_not_mixed():
  """The H -> H layer treats each scale slice independently: zeroing one slice only changes its
  output."""
  layer = SESConvHH(4, "hermite")
  key = jax.random.PRNGKey(3)
  x = jax.random.normal(key, (1, 4, 20, 20, 2))
  weight = jax.random.normal(key, (4, 2, 1, 49))
  variables = {"params": {"weight": weight, "bias": jnp.ones((4,))}}
  apply = jax.jit(layer.apply)
  y = apply(variables, x)
  y_masked = apply(variables, x.at[:, 2].set(0.0))
  assert y.shape == (1, 4, 6, 6, 4)
  np.testing.assert_array_equal(y[:, [0, 1, 3]], y_masked[:, [0, 1, 3]])
  assert float(jnp.max(jnp.abs(y[:, 2] - y_masked[:, 2]))) > 0
