"""2-D convolution (NHWC, HWIO, SAME) with a faster weight gradient on CPU.

XLA:CPU computes a convolution's weight gradient as a convolution whose "kernel" is the whole
output feature map; for wide layers (64 -> 64 channels at 40x40, say) that runs at a few
GFLOP/s, several times slower than the forward pass. For such layers the weight gradient here is
one matrix product of shifted input views with the output gradient (im2col), which runs at
matmul speed. Narrow layers keep XLA's own gradient, which is faster for them. The forward pass
and the input gradient are XLA's in both cases, so results agree to float rounding.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_DIMS = ("NHWC", "HWIO", "NHWC")
# Measured on a 2-core x86 CPU: im2col wins from about 32 x 32 channel pairs upwards.
_MIN_CHANNEL_PRODUCT_FOR_IM2COL = 1024


def _conv(x: jax.Array, w: jax.Array, strides: tuple[int, int]) -> jax.Array:
  return lax.conv_general_dilated(x, w, strides, "SAME", dimension_numbers=_DIMS)


def _weight_grad_im2col(x: jax.Array, dy: jax.Array, kernel_shape, strides) -> jax.Array:
  kh, kw, cin, cout = kernel_shape
  sh, sw = strides
  (pt, pb), (pl, pr) = lax.padtype_to_pads(x.shape[1:3], (kh, kw), strides, "SAME")
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  ho, wo = dy.shape[1:3]
  views = [xp[:, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw, :]
           for i in range(kh) for j in range(kw)]
  patches = jnp.stack(views, axis=3).reshape(-1, kh * kw * cin)
  return (patches.T @ dy.reshape(-1, cout)).reshape(kh, kw, cin, cout)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv2d(x: jax.Array, w: jax.Array, strides: tuple[int, int] = (1, 1)) -> jax.Array:
  """SAME convolution of x [B, H, W, Cin] with w [kh, kw, Cin, Cout]."""
  return _conv(x, w, strides)


def _fwd(x, w, strides):
  return _conv(x, w, strides), (x, w)


def _bwd(strides, residuals, dy):
  x, w = residuals
  _, x_vjp = jax.vjp(lambda x: _conv(x, w, strides), x)
  (dx,) = x_vjp(dy)
  if w.shape[2] * w.shape[3] >= _MIN_CHANNEL_PRODUCT_FOR_IM2COL:
    dw = _weight_grad_im2col(x, dy, w.shape, strides)
  else:
    _, w_vjp = jax.vjp(lambda w: _conv(x, w, strides), w)
    (dw,) = w_vjp(dy)
  return dx, dw


conv2d.defvjp(_fwd, _bwd)


class Conv(nn.Module):
  """A drop-in for `nn.Conv` (SAME padding, bias) built on `conv2d`; same parameter names."""
  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init,
                        (*self.kernel_size, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    return conv2d(x, kernel, tuple(self.strides)) + bias
