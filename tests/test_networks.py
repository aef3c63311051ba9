"""Network building blocks against Flax's own layers, and the CPU compile options."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from keypoints import networks
from keypoints import xla


def test_instance_norm_matches_flax_values_and_gradients():
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 7, 5, 4)) * 3.0 + 1.5
  ours, theirs = networks.InstanceNorm(epsilon=1e-5), nn.InstanceNorm(epsilon=1e-5)
  params = ours.init(jax.random.PRNGKey(1), x)
  # Non-trivial scale and bias, shared by both (same parameter names and shapes).
  params = jax.tree.map(lambda p: p + jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
  assert jax.tree.structure(params) == jax.tree.structure(theirs.init(jax.random.PRNGKey(1), x))
  weights = jax.random.normal(jax.random.PRNGKey(3), x.shape)

  def loss(module):
    return lambda p, x: jnp.sum(module.apply(p, x) * weights)

  np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), atol=1e-5)
  ours_grads = jax.grad(loss(ours), argnums=(0, 1))(params, x)
  theirs_grads = jax.grad(loss(theirs), argnums=(0, 1))(params, x)
  for a, b in zip(jax.tree.leaves(ours_grads), jax.tree.leaves(theirs_grads)):
    np.testing.assert_allclose(a, b, atol=1e-4)
  # Each example and channel comes out with zero mean and unit variance before scale/bias.
  plain = ours.apply(ours.init(jax.random.PRNGKey(1), x), x)
  np.testing.assert_allclose(plain.mean(axis=(1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(plain.std(axis=(1, 2)), 1.0, atol=1e-3)


def test_conv_bias_only_where_the_norm_keeps_it():
  x = jnp.zeros((1, 8, 8, 3))
  for norm, has_bias in (("instance", False), ("batch", False), ("layer", True), ("none", True)):
    block = networks.ConvBlock(4, 3, 1, norm)
    params = block.init(jax.random.PRNGKey(0), x, False)["params"]
    assert ("bias" in params["Conv_0"]) == has_bias, norm


def test_xla_jit_compiles_the_same_function():
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 20, 20, 32))
  w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 32, 32)) * 0.1

  def loss(x, w):
    y = jax.lax.conv_general_dilated(x, w, (2, 2), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.sum(jnp.tanh(y))

  grad = jax.grad(loss, argnums=(0, 1))
  for a, b in zip(xla.jit(grad)(x, w), jax.jit(grad)(x, w)):
    # Two compilations sum the same products in different orders. Each element of the weight
    # gradient sums 4 * 10 * 10 products; the float32 rounding of such a sum is a few ulps of
    # the terms' magnitude, not of the (possibly near-zero) result, so the absolute tolerance
    # scales with the largest value compared (~20 here; AMD and Intel kernels differ by
    # ~1e-5 there).
    scale = float(np.abs(np.asarray(b)).max())
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, scale))
  if jax.default_backend() == "cpu":  # the option takes effect (jax is pinned)
    text = xla.jit(grad).lower(x, w).compile().as_text()
    assert "ynn_fusion" not in text
    assert "ynn_fusion" in jax.jit(grad).lower(x, w).compile().as_text()
    # Matrix products alone (convolutional=False) keep the fusions.
    dense = lambda a, b: jnp.tanh(a @ b)
    a, b = jnp.ones((64, 128)), jnp.ones((128, 256))
    assert "ynn_fusion" in xla.jit(dense, convolutional=False).lower(a, b).compile().as_text()
    assert "ynn_fusion" not in xla.jit(dense).lower(a, b).compile().as_text()
