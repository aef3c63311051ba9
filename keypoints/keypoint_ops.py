"""Keypoint operations: spatial softmax, Gaussian keypoint maps and feature transport.

Conventions (the only place they are defined; everything else converts at its edges):
  * Feature maps and images are NHWC: [B, H, W, C].
  * Keypoints are [B, K, 2] in (x, y) order, normalised to [-1, 1] on the map they were read
    from: -1 is the centre of the first column/row, +1 the centre of the last (align-corners).
    x grows to the right, y grows downwards.
  * A feature map of n cells along an axis computed from an image of N pixels along it has a
    stride s = N / n: cell j covers pixels [s j, s (j + 1)), its centre is pixel s j + (s - 1) / 2
    (pixel p's centre is p; `to_pixel_axis` / `from_pixel_axis` convert, with N = n for
    the map's own pixels).
  * Gaussian maps are [B, H, W, K] with value exp(-((x - mu_x)^2 + (y - mu_y)^2) / std^2), where
    std is in the same normalised units (0.1 = a twentieth of the map's width).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _axis_coordinate(logits: jax.Array, axis: int) -> jax.Array:
  """Expected coordinate along one spatial axis of [B, H, W, K] logits; returns [B, K]."""
  other = 2 if axis == 1 else 1
  marginal = jnp.mean(logits, axis=other)  # [B, size, K]
  prob = jax.nn.softmax(marginal, axis=1)
  grid = jnp.linspace(-1.0, 1.0, logits.shape[axis], dtype=logits.dtype)
  return jnp.einsum("bsk,s->bk", prob, grid)


SOFTMAX_KINDS = ("axis", "2d")


def to_pixel_axis(u, map_len: int, image_len: int):
  """Normalised coordinate(s) u in [-1, 1] on a map of `map_len` cells -> pixel coordinate(s)
  of the image of `image_len` pixels it was computed from (numpy or jax arrays alike)."""
  stride = image_len / map_len
  return (u + 1) / 2 * (map_len - 1) * stride + (stride - 1) / 2


def from_pixel_axis(p, map_len: int, image_len: int):
  """The inverse of `to_pixel_axis`: image pixel coordinate(s) -> normalised map coordinates."""
  stride = image_len / map_len
  return (p - (stride - 1) / 2) / stride / (map_len - 1) * 2 - 1


def spatial_softmax(logits: jax.Array, kind: str = "axis") -> jax.Array:
  """Keypoint centres from heatmap logits.

  kind "axis" (DeepMind's Transporter): each axis uses a softmax over the heatmap's mean along
  the other axis (its marginal), and the coordinate is the expectation of the [-1, 1] grid under
  it. A one-cell response of logit L enters that marginal as L / (map width), so a small
  object must drive its logit tens of times higher before it can hold a keypoint.
  kind "2d": one softmax over all H x W cells and the expectation of (x, y) under it; a one-cell
  logit counts in full (its marginals are the log-sum-exp over the other axis, not the mean).

  Args:
    logits: [B, H, W, K] raw heatmaps.
    kind: "axis" or "2d".

  Returns:
    [B, K, 2] keypoints (x, y) in [-1, 1].
  """
  if kind == "axis":
    x = _axis_coordinate(logits, axis=2)
    y = _axis_coordinate(logits, axis=1)
  elif kind == "2d":
    b, h, w, k = logits.shape
    prob = jax.nn.softmax(logits.reshape(b, h * w, k), axis=1).reshape(b, h, w, k)
    x = jnp.einsum("bwk,w->bk", prob.sum(axis=1), jnp.linspace(-1.0, 1.0, w, dtype=logits.dtype))
    y = jnp.einsum("bhk,h->bk", prob.sum(axis=2), jnp.linspace(-1.0, 1.0, h, dtype=logits.dtype))
  else:
    raise ValueError(f"unknown spatial softmax {kind!r}; expected one of {SOFTMAX_KINDS}")
  return jnp.stack([x, y], axis=-1)


def coordinate_channels(images: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, H, W, C + 2]: appends x and y in [-1, 1] (this module's convention)."""
  b, h, w, _ = images.shape
  ys, xs = jnp.meshgrid(jnp.linspace(-1.0, 1.0, h, dtype=images.dtype),
                        jnp.linspace(-1.0, 1.0, w, dtype=images.dtype), indexing="ij")
  grid = jnp.broadcast_to(jnp.stack([xs, ys], axis=-1), (b, h, w, 2))
  return jnp.concatenate([images, grid], axis=-1)


def gaussian_maps(keypoints: jax.Array, height: int, width: int, std: float) -> jax.Array:
  """Renders [B, K, 2] keypoints (x, y) in [-1, 1] as [B, height, width, K] Gaussian maps."""
  ys = jnp.linspace(-1.0, 1.0, height, dtype=keypoints.dtype)
  xs = jnp.linspace(-1.0, 1.0, width, dtype=keypoints.dtype)
  # Separable: exp(-(dx^2 + dy^2)/s^2) = exp(-dx^2/s^2) * exp(-dy^2/s^2).
  gx = jnp.exp(-jnp.square(xs[None, None, :] - keypoints[..., 0:1]) / std**2)  # [B, K, W]
  gy = jnp.exp(-jnp.square(ys[None, None, :] - keypoints[..., 1:2]) / std**2)  # [B, K, H]
  return jnp.einsum("bkh,bkw->bhwk", gy, gx)


def transport_loop(source_maps: jax.Array, target_maps: jax.Array, source_features: jax.Array,
                   target_features: jax.Array) -> jax.Array:
  """The paper's transport, one keypoint after another (reference for `transport`).

  For k = 1..K: out <- (1 - S_k)(1 - T_k) out + T_k F_t, starting from out = F_s.

  Args:
    source_maps, target_maps: [B, H, W, K] Gaussian maps of the source / target keypoints.
    source_features, target_features: [B, H, W, C].

  Returns:
    [B, H, W, C] transported features.
  """
  out = source_features
  for k in range(source_maps.shape[-1]):
    s = source_maps[..., k:k + 1]
    t = target_maps[..., k:k + 1]
    out = (1 - s) * (1 - t) * out + t * target_features
  return out


def transport(source_maps: jax.Array, target_maps: jax.Array, source_features: jax.Array,
              target_features: jax.Array) -> jax.Array:
  """Closed form of `transport_loop`, vectorised over keypoints.

  Unrolling the recursion with a_k = (1 - S_k)(1 - T_k):
    out_K = (prod_k a_k) F_s + (sum_k T_k prod_{j>k} a_j) F_t,
  so the features are touched once instead of K times.
  """
  a = (1 - source_maps) * (1 - target_maps)  # [B, H, W, K]
  # after[..., k] = prod_{j>k} a_j: exclusive reverse cumulative product.
  after = jnp.cumprod(a[..., ::-1], axis=-1)[..., ::-1]
  after = jnp.concatenate([after[..., 1:], jnp.ones_like(a[..., :1])], axis=-1)
  keep_source = after[..., :1] * a[..., :1]  # prod over all k
  take_target = jnp.sum(target_maps * after, axis=-1, keepdims=True)
  return keep_source * source_features + take_target * target_features
