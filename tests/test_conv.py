"""The custom-gradient convolution against XLA's own convolution."""

import jax
import numpy as np
import pytest
from jax import lax

from keypoints import conv


@pytest.mark.parametrize("shape, kernel, stride", [
    ((2, 9, 8, 3), (7, 7, 3, 16), 1),     # narrow: XLA's weight gradient
    ((2, 10, 10, 32), (3, 3, 32, 64), 2),  # wide: im2col weight gradient, stride 2
    ((2, 7, 9, 40), (3, 3, 40, 32), 1),   # wide, odd sizes
    ((2, 6, 6, 64), (1, 1, 64, 24), 1),   # 1x1
])
def test_matches_xla_conv_and_its_gradients(shape, kernel, stride):
  kx, kw, kg = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(kx, shape)
  w = jax.random.normal(kw, kernel) * 0.1
  ref = lambda x, w: lax.conv_general_dilated(x, w, (stride, stride), "SAME",
                                              dimension_numbers=("NHWC", "HWIO", "NHWC"))
  ours = lambda x, w: conv.conv2d(x, w, (stride, stride))
  y_ref, y = ref(x, w), ours(x, w)
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  g = jax.random.normal(kg, y.shape)
  loss = lambda f: lambda x, w: (f(x, w) * g).sum()
  dx_ref, dw_ref = jax.grad(loss(ref), argnums=(0, 1))(x, w)
  dx, dw = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(x, w)
  np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(dw, dw_ref, rtol=1e-4, atol=1e-3)
