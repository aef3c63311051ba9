"""The keypoint methods the Transporter is compared with, on the same encoders and decoder.

Both share `networks.KeypointAutoencoder`: the same Phi, Psi (or a variant), RefineNet, frame
centring, pixel-space reconstruction loss and detector API as the Transporter, so that with the
same data and budget an evaluation compares the keypoint objective and nothing else.

* `Jakab`: conditional image generation (Jakab et al. 2018, "Unsupervised Learning of Object
  Landmarks through Conditional Image Generation"). The target frame is generated from the
  *source* frame's appearance features Phi(source), concatenated with Gaussian maps of the
  *target's* keypoints Psi(target); nothing is transported, and every branch is trained. The
  paper's perceptual (VGG) loss is replaced by the pixel loss all models here use.
* `Zhang`: the landmark autoencoder of Zhang et al. 2018 ("Unsupervised Discovery of Object
  Landmarks as Structural Representations"). One image is encoded into K landmarks (a softmax
  over K + 1 channels, the last one background, each landmark channel then normalised over
  space into a distribution whose mean is the landmark) and K landmark feature vectors (Phi's
  features pooled under each distribution), and decoded from the landmarks' Gaussian maps with
  each landmark's features painted under its map. Its regularisers are the paper's:
    - concentration: the spatial variance of each landmark distribution (peaky detections);
    - separation: sum over landmark pairs of exp(-|x_i - x_j|^2 / (2 std^2));
    - equivariance: landmarks of a randomly warped image (rotation, scale, translation) must be
      the warped landmarks of the image.
  It is an image model: of each (source, target) pair it encodes and reconstructs the target.

Keypoints are in `keypoint_ops` units ((x, y) in [-1, 1] on the feature map).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from keypoints import keypoint_ops
from keypoints import networks


class Jakab(networks.KeypointAutoencoder):
  """Target = RefineNet([Phi(source), Gaussian maps of Psi(target)]); no stop-gradient."""

  def __call__(self, source: jax.Array, target: jax.Array, train: bool = False) -> dict[str, Any]:
    appearance = self.encoder(self._normalize(source), train)
    target_image = self._normalize(target)
    keypoints = self._keypoints(target_image, train)
    maps = self._maps(keypoints, appearance)
    reconstruction = self.decoder(jnp.concatenate([appearance, maps], axis=-1), train)
    return {"reconstruction": reconstruction, "target_image": target_image,
            "target": {"keypoints": keypoints, "maps": maps},
            "frame_mean": jax.lax.stop_gradient(self.frame_mean)}


class LandmarkNet(nn.Module):
  """Zhang et al.'s detector: K + 1 channels softmaxed per pixel, landmarks normalised in space.

  Returns keypoints [B, K, 2] and the landmark distributions [B, h, w, K] (each sums to 1).
  """
  num_keypoints: int
  filters: tuple[int, ...]
  kernels: tuple[int, ...]
  strides: tuple[int, ...]
  norm: str = "instance"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    x = networks.Encoder(self.filters, self.kernels, self.strides, self.norm, self.dtype)(
        images, train)
    logits = networks.conv(self.num_keypoints + 1, 1, dtype=self.dtype)(x).astype(jnp.float32)
    response = jax.nn.softmax(logits, axis=-1)[..., :self.num_keypoints]
    dist = response / (jnp.sum(response, axis=(1, 2), keepdims=True) + 1e-8)
    return distribution_mean(dist), dist


def _grids(height: int, width: int, dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
  return jnp.linspace(-1.0, 1.0, height, dtype=dtype), jnp.linspace(-1.0, 1.0, width, dtype=dtype)


def distribution_mean(dist: jax.Array) -> jax.Array:
  """[B, h, w, K] spatial distributions -> their means [B, K, 2] (x, y) in [-1, 1]."""
  ys, xs = _grids(dist.shape[1], dist.shape[2], dist.dtype)
  x = jnp.einsum("bhwk,w->bk", dist, xs)
  y = jnp.einsum("bhwk,h->bk", dist, ys)
  return jnp.stack([x, y], axis=-1)


def concentration_loss(dist: jax.Array, keypoints: jax.Array) -> jax.Array:
  """Mean over batch and landmarks of var_x + var_y of each [B, h, w, K] distribution."""
  ys, xs = _grids(dist.shape[1], dist.shape[2], dist.dtype)
  var_x = jnp.einsum("bhwk,bwk->bk", dist, jnp.square(xs[None, :, None] - keypoints[:, None, :, 0]))
  var_y = jnp.einsum("bhwk,bhk->bk", dist, jnp.square(ys[None, :, None] - keypoints[:, None, :, 1]))
  return jnp.mean(var_x + var_y)


def separation_loss(keypoints: jax.Array, std: float) -> jax.Array:
  """Mean over the batch of sum_{i != j} exp(-|x_i - x_j|^2 / (2 std^2)) for [B, K, 2]."""
  d2 = jnp.sum(jnp.square(keypoints[:, :, None] - keypoints[:, None, :]), axis=-1)
  k = keypoints.shape[1]
  off_diagonal = 1.0 - jnp.eye(k, dtype=keypoints.dtype)
  return jnp.mean(jnp.sum(jnp.exp(-d2 / (2 * std**2)) * off_diagonal, axis=(1, 2)))


def random_similarity(key: jax.Array, batch: int, max_rotation: float, max_scale: float,
                      max_translation: float) -> tuple[jax.Array, jax.Array]:
  """Per-sample maps x -> A x + t in [-1, 1] units: A [B, 2, 2] (rotation, scale), t [B, 2]."""
  k_rot, k_scale, k_shift = jax.random.split(key, 3)
  angle = jax.random.uniform(k_rot, (batch,), minval=-max_rotation, maxval=max_rotation)
  scale = 1.0 + jax.random.uniform(k_scale, (batch,), minval=-max_scale, maxval=max_scale)
  cos, sin = jnp.cos(angle) * scale, jnp.sin(angle) * scale
  matrix = jnp.stack([jnp.stack([cos, -sin], -1), jnp.stack([sin, cos], -1)], -2)
  shift = jax.random.uniform(k_shift, (batch, 2), minval=-max_translation, maxval=max_translation)
  return matrix, shift


def warp_images(images: jax.Array, matrix: jax.Array, shift: jax.Array,
                feature_size: tuple[int, int]) -> jax.Array:
  """Moves image content by x -> A x + t, x in the [-1, 1] units of the feature map.

  The feature map's normalised coordinates are used (not the image's) so that a keypoint u of
  `images` lands exactly at A u + t in the warped images' keypoint units. Outside the frame
  is 0 (the centring value, i.e. the mean frame or mid-grey).

  Args:
    images: [B, H, W, C] float.
    matrix: [B, 2, 2]; shift: [B, 2].
    feature_size: (h, w) of the feature map the keypoints live on.
  """
  _, height, width, _ = images.shape
  rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                            jnp.arange(width, dtype=jnp.float32), indexing="ij")
  # Image pixel centres in the feature map's normalised coordinates.
  u = jnp.stack([keypoint_ops.from_pixel_axis(cols, feature_size[1], width),
                 keypoint_ops.from_pixel_axis(rows, feature_size[0], height)], -1)  # [H, W, 2]

  def one(image, a, t):
    src = jnp.einsum("ij,hwj->hwi", jnp.linalg.inv(a), u - t)  # where each output pixel reads
    coords = jnp.stack([keypoint_ops.to_pixel_axis(src[..., 1], feature_size[0], height),
                        keypoint_ops.to_pixel_axis(src[..., 0], feature_size[1], width)])
    return jax.vmap(lambda ch: jax.scipy.ndimage.map_coordinates(ch, coords, order=1,
                                                                  mode="constant", cval=0.0),
                    in_axes=-1, out_axes=-1)(image)

  return jax.vmap(one)(images, matrix, shift)


# Zhang et al.'s regulariser settings; the weights multiply the losses above, whose scale is
# the [-1, 1] keypoint units; rotations in radians, scale and translation in [-1, 1] units.
# The model config (`configs.model_config().zhang`) starts from these.
ZHANG_DEFAULTS = dict(concentration_weight=0.1, separation_weight=0.01, separation_std=0.1,
                      equivariance_weight=1.0, max_rotation=0.3, max_scale=0.1,
                      max_translation=0.1)


class Zhang(networks.KeypointAutoencoder):
  """Landmark autoencoder with concentration, separation and equivariance regularisers.

  Needs a "warp" PRNG stream in `apply` for the equivariance transform.
  """
  concentration_weight: float = ZHANG_DEFAULTS["concentration_weight"]
  separation_weight: float = ZHANG_DEFAULTS["separation_weight"]
  separation_std: float = ZHANG_DEFAULTS["separation_std"]
  equivariance_weight: float = ZHANG_DEFAULTS["equivariance_weight"]
  max_rotation: float = ZHANG_DEFAULTS["max_rotation"]
  max_scale: float = ZHANG_DEFAULTS["max_scale"]
  max_translation: float = ZHANG_DEFAULTS["max_translation"]

  def setup(self):
    super().setup()
    self.landmark_features = nn.Dense(self.filters[-1], kernel_init=networks.reference_init)

  def make_keypointer(self) -> nn.Module:
    return LandmarkNet(self.num_keypoints, tuple(self.filters), tuple(self.kernels),
                       tuple(self.strides), self.norm, self.dtype)

  def __call__(self, source: jax.Array, target: jax.Array, train: bool = False) -> dict[str, Any]:
    del source  # an image model: each pair contributes its target frame
    image = self._normalize(target)
    keypoints, dist = self.keypointer(image, train)
    features = self.encoder(image, train)
    # Per-landmark appearance, pooled under its distribution, painted back under its map.
    pooled = jnp.einsum("bhwk,bhwc->bkc", dist, features)
    pooled = self.landmark_features(pooled)
    maps = self._maps(keypoints, features)
    painted = jnp.einsum("bhwk,bkc->bhwc", maps, pooled)
    reconstruction = self.decoder(jnp.concatenate([maps, painted], axis=-1), train)

    matrix, shift = random_similarity(self.make_rng("warp"), image.shape[0], self.max_rotation,
                                      self.max_scale, self.max_translation)
    warped = warp_images(image, matrix, shift, (features.shape[1], features.shape[2]))
    warped_keypoints, _ = self.keypointer(warped, train)
    moved = jnp.einsum("bij,bkj->bki", matrix, keypoints) + shift[:, None]
    equivariance = jnp.mean(jnp.sum(jnp.square(warped_keypoints - moved), axis=-1))
    losses = {
        "concentration": self.concentration_weight * concentration_loss(dist, keypoints),
        "separation": self.separation_weight * separation_loss(keypoints, self.separation_std),
        "equivariance": self.equivariance_weight * equivariance,
    }
    return {"reconstruction": reconstruction, "target_image": image,
            "target": {"keypoints": keypoints, "maps": maps}, "losses": losses,
            "frame_mean": jax.lax.stop_gradient(self.frame_mean)}
