"""Baselines: their regularisers on hand-computed cases, the warp they rely on, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from keypoints import baselines
from keypoints import configs
from keypoints import train


def _model(model_type, size=16, k=3):
  mc = configs.model_config("deepmind", num_keypoints=k, image_size=(size, size),
                            model_type=model_type)
  net = train.build_model(mc)
  state = train.create_train_state(jax.random.PRNGKey(0), net,
                                   train.build_optimizer(configs.train_config()), (size, size))
  return net, state


def test_distribution_mean_and_concentration_by_hand():
  dist = np.zeros((1, 3, 5, 1), np.float32)
  dist[0, 1, 0, 0] = 0.5  # (x, y) = (-1, 0)
  dist[0, 1, 4, 0] = 0.5  # (x, y) = (+1, 0)
  kp = baselines.distribution_mean(jnp.asarray(dist))
  np.testing.assert_allclose(kp, [[[0.0, 0.0]]], atol=1e-6)
  # var_x = 0.5 * 1 + 0.5 * 1 = 1, var_y = 0.
  np.testing.assert_allclose(baselines.concentration_loss(jnp.asarray(dist), kp), 1.0, atol=1e-6)


def test_separation_by_hand():
  kp = jnp.array([[[0.0, 0.0], [0.3, 0.4], [5.0, 5.0]]])  # distances 0.5, far, far
  expected = 2 * np.exp(-0.25 / (2 * 0.1**2))  # both orders of the one close pair
  np.testing.assert_allclose(baselines.separation_loss(kp, 0.1), expected, rtol=1e-5)
  collapsed = jnp.zeros((1, 3, 2))
  np.testing.assert_allclose(baselines.separation_loss(collapsed, 0.1), 6.0, rtol=1e-6)


@pytest.mark.parametrize("stride", [1, 2])
def test_warp_moves_content_to_the_transformed_keypoint(stride):
  """A blob at u in an image is found at A u + t in the warped image (feature-map units)."""
  size, fsize = 32, 32 // stride
  ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
  centre = np.array([12.0, 18.0])  # (x, y) pixels
  blob = np.exp(-((xs - centre[0])**2 + (ys - centre[1])**2) / 4.0)[None, :, :, None]
  matrix, shift = baselines.random_similarity(jax.random.PRNGKey(3), 1, 0.3, 0.1, 0.1)
  warped = baselines.warp_images(jnp.asarray(blob), matrix, shift, (fsize, fsize))

  def pixel_to_norm(p):  # image pixel -> feature-map [-1, 1] units
    return ((p - (stride - 1) / 2) / stride) / (fsize - 1) * 2 - 1

  u = pixel_to_norm(centre)
  expected = np.asarray(matrix[0]) @ u + np.asarray(shift[0])
  w = np.asarray(warped[0, :, :, 0])
  found_px = np.array([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])
  np.testing.assert_allclose(pixel_to_norm(found_px), expected, atol=0.02)
  assert not np.allclose(expected, u, atol=0.05)  # the random warp did move it


def test_jakab_trains_the_source_appearance_branch():
  net, state = _model("jakab")
  rng = np.random.default_rng(0)
  src = jnp.asarray(rng.integers(0, 255, (2, 16, 16, 3)), jnp.float32)
  tgt = jnp.asarray(rng.integers(0, 255, (2, 16, 16, 3)), jnp.float32)

  def loss(source, target):
    out = net.apply({"params": state.params}, source, target)
    return jnp.mean(out["reconstruction"] ** 2)

  g_src, g_tgt = jax.grad(loss, argnums=(0, 1))(src, tgt)
  assert float(jnp.abs(g_src).max()) > 0 and float(jnp.abs(g_tgt).max()) > 0


def test_zhang_adds_weighted_regularisers_to_the_loss():
  net, state = _model("zhang")
  rng = np.random.default_rng(0)
  batch = {"source": jnp.asarray(rng.integers(0, 255, (2, 16, 16, 3)), jnp.uint8),
           "target": jnp.asarray(rng.integers(0, 255, (2, 16, 16, 3)), jnp.uint8)}
  loss, (out, _) = train.loss_fn(state.params, {}, state.apply_fn, batch, jax.random.PRNGKey(0))
  parts = out["losses"]
  assert set(parts) == {"concentration", "separation", "equivariance"}
  assert all(float(v) > 0 for v in parts.values())
  np.testing.assert_allclose(loss, out["reconstruction_loss"] + sum(parts.values()), rtol=1e-6)
  # The source frame is not used: Zhang et al. encode and reconstruct one image.
  other = {**batch, "source": jnp.zeros_like(batch["source"])}
  loss2, _ = train.loss_fn(state.params, {}, state.apply_fn, other, jax.random.PRNGKey(0))
  assert float(loss2) == float(loss)


def test_unknown_model_type_is_rejected():
  with pytest.raises(ValueError, match="unknown model 'vae'"):
    configs.validate(configs.model_config(model_type="vae"))
