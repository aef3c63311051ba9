"""Q-networks (Flax linen): the Nature-DQN CNN over stacked frames, and KeyQN's network over
keypoint records.

Inputs carry the history axis second: pixel DQN [B, H, 84, 84] uint8, KeyQN [B, H, K, D]
float32 with D = 2 + C (a keypoint's (x, y) in [-1, 1] of the frame, then the C detector
features sampled at it; `rl.keyqn`). Outputs are Q-values [B, A].
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class NatureCNN(nn.Module):
  """Mnih et al. 2015: 32 8x8/4, 64 4x4/2, 64 3x3/1 convolutions, 512 units, A outputs."""
  num_actions: int

  @nn.compact
  def __call__(self, frames: jax.Array) -> jax.Array:
    x = jnp.moveaxis(frames, 1, -1).astype(jnp.float32) / 255.0  # [B, 84, 84, H]
    for features, kernel, stride in ((32, 8, 4), (64, 4, 2), (64, 3, 1)):
      x = nn.relu(nn.Conv(features, (kernel, kernel), (stride, stride), padding="VALID")(x))
    x = nn.relu(nn.Dense(512)(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_actions)(x)


class KeypointQNetwork(nn.Module):
  """KeyQN's Q-network.

  Every keypoint record (position and features, at every step of the history) is embedded by
  one small MLP shared by all keypoints and steps; the embeddings are concatenated in keypoint
  order (the detector's keypoint k is the same object from frame to frame) and an MLP maps
  them to Q-values.
  """
  num_actions: int
  embed_sizes: Sequence[int] = (64, 32)
  hidden_sizes: Sequence[int] = (512,)
  # Layer-normalise each record's C features (not its (x, y)) before the embedding: the
  # detector's features are O(1-60) against positions in [-1, 1].
  feature_norm: bool = False
  # False: read only each record's (x, y), not its features (KeyQN's observer then stores
  # positions alone, [K, 2]; records that carry features are read without them).
  use_features: bool = True

  @nn.compact
  def __call__(self, records: jax.Array) -> jax.Array:
    x = records.astype(jnp.float32)  # [B, H, K, D]
    if not self.use_features:
      x = x[..., :2]
    elif self.feature_norm:
      x = jnp.concatenate([x[..., :2], nn.LayerNorm()(x[..., 2:])], axis=-1)
    for size in self.embed_sizes:
      x = nn.relu(nn.Dense(size)(x))
    x = x.reshape(x.shape[0], -1)
    for size in self.hidden_sizes:
      x = nn.relu(nn.Dense(size)(x))
    return nn.Dense(self.num_actions)(x)
