"""Flax modules of the Transporter: feature encoder Phi, keypoint net Psi and RefineNet.

Shapes: images enter as uint8 or float [B, H, W, 3] on the [0, 255] scale and are mapped to
float32 [0, 1] minus a centre (0.5, or the mean training frame) by `normalize_images`; feature
maps are [B, H/s, W/s, C] where s is the product of the encoder strides; keypoints follow
`keypoint_ops` ((x, y) in [-1, 1] on the feature map).

Initialisation follows the reference (Sonnet): weights from a normal of std 1/sqrt(fan_in)
truncated at two std, biases zero. Flax's default `lecun_normal` rescales the truncated normal
so that its *actual* std is 1/sqrt(fan_in), about 14% larger than the reference's.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from keypoints import keypoint_ops

# variance_scaling divides the truncated normal's std by 0.8796 to undo the truncation; scaling
# the variance by 0.8796^2 gives back the reference's plain truncated_normal(1/sqrt(fan_in)).
_TRUNCATION_STD = 0.87962566103423978
reference_init = nn.initializers.variance_scaling(_TRUNCATION_STD**2, "fan_in", "truncated_normal")

NORMS = ("instance", "layer", "batch", "none")


def normalize_images(images: jax.Array, frame_mean: jax.Array | float = 0.5) -> jax.Array:
  """uint8 [0, 255] (or float on that scale) -> float32 [0, 1] minus `frame_mean` [H, W, 3]."""
  return images.astype(jnp.float32) / 255.0 - frame_mean


def _mean_hw(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, C] mean over H and W, as a batched matrix-vector product.

  On CPU, XLA turns reductions over the middle axes of [B, H, W, C] into slow windowed
  reductions, and a plain einsum into transposes; this form runs as one matrix product.
  """
  b, h, w, c = x.shape
  average = jnp.full((b, h * w), 1.0 / (h * w), x.dtype)
  return jax.lax.dot_general(average, x.reshape(b, h * w, c), (((1,), (1,)), ((0,), (0,))))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def instance_norm(x: jax.Array, scale: jax.Array, bias: jax.Array,
                  epsilon: float = 1e-5) -> jax.Array:
  """(x - mean) / sqrt(var + epsilon) * scale + bias, statistics per example and channel."""
  return _instance_norm_fwd(x, scale, bias, epsilon)[0]


def _instance_norm_fwd(x, scale, bias, epsilon):
  mean = _mean_hw(x)
  rstd = jax.lax.rsqrt(jnp.maximum(_mean_hw(x * x) - mean * mean, 0.0) + epsilon)
  mul = rstd * scale
  y = x * mul[:, None, None, :] + (bias - mean * mul)[:, None, None, :]
  return y, (x, mean, rstd, scale)


def _instance_norm_bwd(epsilon, residuals, dy):
  del epsilon
  # The gradient written out so that its per-channel sums are matrix products too (autodiff
  # of the forward gives XLA's slow reductions back).
  x, mean, rstd, scale = residuals
  num = x.shape[1] * x.shape[2]
  mean_dy = _mean_hw(dy)
  mean_dy_xhat = rstd * (_mean_hw(dy * x) - mean * mean_dy)
  xhat = (x - mean[:, None, None, :]) * rstd[:, None, None, :]
  dx = (scale * rstd)[:, None, None, :] * (
      dy - mean_dy[:, None, None, :] - xhat * mean_dy_xhat[:, None, None, :])
  return dx, num * mean_dy_xhat.sum(0), num * mean_dy.sum(0)


instance_norm.defvjp(_instance_norm_fwd, _instance_norm_bwd)


class InstanceNorm(nn.Module):
  """`instance_norm` with a learned per-channel scale and bias; equal to `nn.InstanceNorm`
  (same parameters; see tests) and several times faster on CPU."""
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],))
    bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],))
    return instance_norm(x, scale, bias, self.epsilon)


class Norm(nn.Module):
  """The normalisation chosen by name; instance norm is the default (see configs)."""
  kind: str

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.kind == "instance":
      return InstanceNorm(epsilon=1e-5)(x)
    if self.kind == "layer":
      return nn.LayerNorm(epsilon=1e-5, reduction_axes=(-3, -2, -1), feature_axes=-1)(x)
    if self.kind == "batch":
      return nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-5)(x)
    if self.kind == "none":
      return x
    raise ValueError(f"unknown normalisation {self.kind!r}; expected one of {NORMS}")


def conv(features: int, kernel: int, stride: int = 1, use_bias: bool = True,
         dtype: Any = jnp.float32) -> nn.Conv:
  """A SAME-padded conv with the reference's initialisation; float32 parameters, computed in
  `dtype` (inputs and outputs cast to it)."""
  return nn.Conv(features, (kernel, kernel), (stride, stride), padding="SAME", use_bias=use_bias,
                 kernel_init=reference_init, dtype=dtype, param_dtype=jnp.float32)


class ConvBlock(nn.Module):
  """Conv -> norm -> ReLU.

  The conv has no bias under instance and batch norm: they subtract every channel's mean, so
  a bias would cancel exactly (its gradient is zero) and only cost a pass over the activations.
  The conv computes in `dtype` (bfloat16 for the accelerators' fast path); the norm's
  statistics are always float32, and the block's output is in `dtype`.
  """
  features: int
  kernel: int
  stride: int
  norm: str
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = conv(self.features, self.kernel, self.stride,
             use_bias=self.norm not in ("instance", "batch"), dtype=self.dtype)(x)
    return nn.relu(Norm(self.norm)(x.astype(jnp.float32), train).astype(self.dtype))


class Encoder(nn.Module):
  """A plain conv stack (Phi, and the trunk of Psi): [B, H, W, 3] -> float32 [B, H/s, W/s, C],
  computed in `dtype`."""
  filters: Sequence[int]
  kernels: Sequence[int]
  strides: Sequence[int]
  norm: str = "instance"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    x = images
    for f, k, s in zip(self.filters, self.kernels, self.strides, strict=True):
      x = ConvBlock(f, k, s, self.norm, self.dtype)(x, train)
    return x.astype(jnp.float32)


class KeypointNet(nn.Module):
  """Psi: its own encoder, a 1x1 conv to K heatmaps, spatial softmax.

  `softmax` picks the readout (`keypoint_ops.spatial_softmax`); `coord_channels` appends x and y
  channels to the input so the heatmaps can depend on where a cell is.

  Returns keypoints [B, K, 2] and the raw heatmap logits [B, h, w, K] (float32, whatever the
  compute `dtype`).
  """
  num_keypoints: int
  filters: Sequence[int]
  kernels: Sequence[int]
  strides: Sequence[int]
  norm: str = "instance"
  softmax: str = "axis"
  coord_channels: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    if self.coord_channels:
      images = keypoint_ops.coordinate_channels(images)
    x = Encoder(self.filters, self.kernels, self.strides, self.norm, self.dtype)(images, train)
    logits = conv(self.num_keypoints, 1, dtype=self.dtype)(x).astype(jnp.float32)
    return keypoint_ops.spatial_softmax(logits, self.softmax), logits


class RefineNet(nn.Module):
  """Decoder mirroring the encoder: conv pairs and bilinear upsampling back to the image size.

  At each feature scale two 3x3 conv blocks, then a bilinear x2 upsampling with the filters
  halved; at the image scale one 3x3 conv block and a final *linear* 3x3 conv to RGB
  (float32 out, whatever the compute `dtype`).
  """
  initial_filters: int
  output_size: tuple[int, int]
  norm: str = "instance"
  output_channels: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: jax.Array, train: bool = False) -> jax.Array:
    x = features
    filters = self.initial_filters
    height, width = self.output_size
    while x.shape[1] < height:
      x = ConvBlock(filters, 3, 1, self.norm, self.dtype)(x, train)
      x = ConvBlock(filters, 3, 1, self.norm, self.dtype)(x, train)
      new_h, new_w = min(2 * x.shape[1], height), min(2 * x.shape[2], width)
      x = jax.image.resize(x, (x.shape[0], new_h, new_w, x.shape[3]), "bilinear")
      filters = max(filters // 2, 8)
    x = ConvBlock(filters, 3, 1, self.norm, self.dtype)(x, train)
    return conv(self.output_channels, 3, dtype=self.dtype)(x).astype(jnp.float32)


class KeypointAutoencoder(nn.Module):
  """What every keypoint model here shares: the fields of `configs.model_config()`, the frame
  centring, Phi (`encoder`), Psi (`keypointer`), RefineNet (`decoder`) and the detector methods.

  Subclasses define `__call__(source, target, train)`, which returns at least
  {"reconstruction", "target_image", "frame_mean", "target": {"keypoints": [B, K, 2]}} and,
  optionally, "losses": {name: weighted scalar} added to the reconstruction loss.
  """
  num_keypoints: int
  image_size: tuple[int, int]
  filters: Sequence[int]
  kernels: Sequence[int]
  strides: Sequence[int]
  decoder_filters: int
  gauss_std: float = 0.1
  norm: str = "instance"
  softmax: str = "axis"
  coord_channels: bool = False
  # What the convolutions compute in (configs: compute_dtype): float32, or bfloat16 with
  # float32 parameters, norm statistics, keypoints, transport and loss.
  dtype: Any = jnp.float32
  # Rows at the top of the image every frame is blanked in (configs: blank_top_rows).
  blank_top_rows: int = 0

  def setup(self):
    # Subtracted from every input frame (and from the reconstruction target). 0.5 by default;
    # set to the training frames' mean to zero a static background (see configs).
    # Never trained: only read through stop_gradient.
    self.frame_mean = self.param("frame_mean", nn.initializers.constant(0.5),
                                 (*self.image_size, 3))
    self.encoder = Encoder(self.filters, self.kernels, self.strides, self.norm, self.dtype)
    self.keypointer = self.make_keypointer()
    self.decoder = RefineNet(self.decoder_filters, tuple(self.image_size), self.norm,
                             dtype=self.dtype)

  def make_keypointer(self) -> nn.Module:
    return KeypointNet(self.num_keypoints, self.filters, self.kernels, self.strides, self.norm,
                       self.softmax, self.coord_channels, self.dtype)

  def _normalize(self, images: jax.Array) -> jax.Array:
    normalized = normalize_images(images, jax.lax.stop_gradient(self.frame_mean))
    if self.blank_top_rows:
      # The centring's zero: the networks see nothing there, and the reconstruction target
      # (normalised by this same method) holds nothing there to explain.
      rows = jnp.arange(normalized.shape[1]) >= self.blank_top_rows
      normalized = normalized * rows[:, None, None].astype(normalized.dtype)
    return normalized

  def _keypoints(self, normalized: jax.Array, train: bool) -> jax.Array:
    return self.keypointer(normalized, train)[0]

  def _maps(self, keypoints: jax.Array, features: jax.Array) -> jax.Array:
    return keypoint_ops.gaussian_maps(keypoints, features.shape[1], features.shape[2],
                                      self.gauss_std)

  def detect(self, images: jax.Array) -> jax.Array:
    """Keypoints [B, K, 2] ((x, y) in [-1, 1] on the feature map) of uint8 [B, H, W, 3] images."""
    return self._keypoints(self._normalize(images), False)

  def detect_with_features(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Keypoints [B, K, 2] and Phi's features bilinearly sampled at them, [B, K, C]."""
    images = self._normalize(images)
    keypoints = self._keypoints(images, False)
    features = self.encoder(images, False)
    return keypoints, sample_at(features, keypoints)


class Transporter(KeypointAutoencoder):
  """Phi, Psi and RefineNet, reconstructing a target frame from a source frame by transport.

  Attributes mirror `configs.model_config()`.
  """

  def _branch(self, images: jax.Array, train: bool) -> dict[str, jax.Array]:
    images = self._normalize(images)
    features = self.encoder(images, train)
    keypoints = self._keypoints(images, train)
    return {"features": features, "keypoints": keypoints, "maps": self._maps(keypoints, features)}

  def __call__(self, source: jax.Array, target: jax.Array, train: bool = False) -> dict[str, Any]:
    """Reconstructs `target` [B, H, W, 3] from `source` [B, H, W, 3].

    The source branch (its features and keypoints) is a constant for the gradient: only the
    target's keypoints and features are trained to explain what changed.

    Returns:
      {"reconstruction": [B, H, W, 3] and "target_image": the target, both in normalised
      units (add "frame_mean" for [0, 1] pixels), "source", "target": each branch's
      "keypoints" [B, K, 2], Gaussian "maps" and "features"}.
    """
    # Phi and Psi see source and target separately: the source branch needs no backward pass,
    # and a concatenated batch would make XLA compute weight gradients for it (all zeros).
    src = jax.tree.map(jax.lax.stop_gradient, self._branch(source, train))
    tgt = self._branch(target, train)
    transported = keypoint_ops.transport(src["maps"], tgt["maps"], src["features"],
                                         tgt["features"])
    return {"reconstruction": self.decoder(transported, train), "source": src, "target": tgt,
            "target_image": self._normalize(target),
            "frame_mean": jax.lax.stop_gradient(self.frame_mean)}


def sample_at(features: jax.Array, keypoints: jax.Array) -> jax.Array:
  """Bilinear samples of [B, h, w, C] features at [B, K, 2] normalised keypoints -> [B, K, C]."""
  _, h, w, _ = features.shape
  col = keypoint_ops.to_pixel_axis(keypoints[..., 0], w, w)
  row = keypoint_ops.to_pixel_axis(keypoints[..., 1], h, h)

  def one(feat, r, c):
    coords = jnp.stack([r, c])  # [2, K]
    return jax.vmap(lambda ch: jax.scipy.ndimage.map_coordinates(ch, coords, order=1,
                                                                  mode="nearest"),
                    in_axes=-1, out_axes=-1)(feat)

  return jax.vmap(one)(features, row, col)


def feature_stride(strides: Sequence[int]) -> int:
  return math.prod(strides)
