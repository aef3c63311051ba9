"""Spatial softmax, Gaussian maps and transport against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from keypoints import keypoint_ops


def test_spatial_softmax_hand_computed():
  # 3x3 map, one keypoint. Marginal over rows (for y): mean of each row.
  logits = np.zeros((1, 3, 3, 1), np.float32)
  logits[0, 2, :, 0] = 3.0  # bottom row hot -> row means [0, 0, 3]
  logits[0, :, 0, 0] += 3.0  # left column hot too -> column means [3+1, 1, 1] = [4, 1, 1]
  kp = np.asarray(keypoint_ops.spatial_softmax(jnp.asarray(logits)))
  # Row means: [1, 1, 4]; column means: [4, 1, 1]; grid [-1, 0, 1].
  e1, e4 = np.exp(1.0), np.exp(4.0)
  z = 2 * e1 + e4
  expected_y = (-1 * e1 + 0 * e1 + 1 * e4) / z
  expected_x = (-1 * e4 + 0 * e1 + 1 * e1) / z
  np.testing.assert_allclose(kp[0, 0], [expected_x, expected_y], rtol=1e-5)


def test_spatial_softmax_uniform_is_centre_and_peak_is_corner():
  kp = keypoint_ops.spatial_softmax(jnp.zeros((2, 5, 7, 3)))
  np.testing.assert_allclose(kp, 0.0, atol=1e-6)
  logits = jnp.full((1, 5, 7, 1), -1e4).at[0, 0, 6, 0].set(1e4)  # top-right pixel
  np.testing.assert_allclose(keypoint_ops.spatial_softmax(logits)[0, 0], [1.0, -1.0], atol=1e-5)


def test_gaussian_maps_hand_computed():
  kp = jnp.array([[[0.0, -1.0]]])  # x = 0 (middle column), y = -1 (top row)
  maps = np.asarray(keypoint_ops.gaussian_maps(kp, height=3, width=5, std=0.5))
  assert maps.shape == (1, 3, 5, 1)
  xs, ys = np.linspace(-1, 1, 5), np.linspace(-1, 1, 3)
  for r in range(3):
    for c in range(5):
      expected = np.exp(-((xs[c] - 0.0)**2 + (ys[r] + 1.0)**2) / 0.25)
      assert maps[0, r, c, 0] == pytest.approx(expected, rel=1e-5)
  assert maps[0, 0, 2, 0] == pytest.approx(1.0)


def test_transport_hand_computed_single_pixel():
  # One pixel, two keypoints; follow the recursion by hand.
  s = jnp.array([0.5, 0.2]).reshape(1, 1, 1, 2)
  t = jnp.array([0.1, 0.4]).reshape(1, 1, 1, 2)
  fs = jnp.array([10.0]).reshape(1, 1, 1, 1)
  ft = jnp.array([2.0]).reshape(1, 1, 1, 1)
  out1 = (1 - 0.5) * (1 - 0.1) * 10.0 + 0.1 * 2.0  # 4.7
  out2 = (1 - 0.2) * (1 - 0.4) * out1 + 0.4 * 2.0  # 3.056
  assert float(keypoint_ops.transport_loop(s, t, fs, ft).squeeze()) == pytest.approx(out2)
  assert float(keypoint_ops.transport(s, t, fs, ft).squeeze()) == pytest.approx(out2)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_transport_closed_form_matches_loop(k):
  keys = jax.random.split(jax.random.PRNGKey(k), 4)
  s = jax.random.uniform(keys[0], (2, 6, 5, k))
  t = jax.random.uniform(keys[1], (2, 6, 5, k))
  fs = jax.random.normal(keys[2], (2, 6, 5, 3))
  ft = jax.random.normal(keys[3], (2, 6, 5, 3))
  np.testing.assert_allclose(keypoint_ops.transport(s, t, fs, ft),
                             keypoint_ops.transport_loop(s, t, fs, ft), rtol=1e-5, atol=1e-6)
  # Gradients agree too (the closed form is what gets trained).
  f = lambda fn: jax.grad(lambda s, t: fn(s, t, fs, ft).sum(), argnums=(0, 1))(s, t)
  for a, b in zip(f(keypoint_ops.transport), f(keypoint_ops.transport_loop)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_transport_without_keypoint_mass_copies_source():
  fs = jnp.ones((1, 4, 4, 2)) * 3.0
  zeros = jnp.zeros((1, 4, 4, 3))
  np.testing.assert_allclose(keypoint_ops.transport(zeros, zeros, fs, -fs), fs)


@pytest.mark.parametrize("row, col", [(3, 10), (12, 1)])
def test_2d_softmax_reads_a_one_cell_response_where_the_axis_softmax_cannot(row, col):
  # One cell of a 16x16 map 12 logits above the rest: the joint softmax puts the keypoint on
  # it; the per-axis softmax sees 12 / 16 in each marginal and stays near the middle.
  logits = np.zeros((1, 16, 16, 1), np.float32)
  logits[0, row, col, 0] = 12.0
  grid = np.linspace(-1, 1, 16)
  two_d = np.asarray(keypoint_ops.spatial_softmax(jnp.asarray(logits), "2d"))[0, 0]
  axis = np.asarray(keypoint_ops.spatial_softmax(jnp.asarray(logits), "axis"))[0, 0]
  np.testing.assert_allclose(two_d, [grid[col], grid[row]], atol=0.02)
  assert np.abs(axis).max() < 0.2
  # A uniformly large logit along a whole row and column is what the axis softmax needs.
  logits[0, row, :, 0] = 12.0
  logits[0, :, col, 0] = 12.0
  axis = np.asarray(keypoint_ops.spatial_softmax(jnp.asarray(logits), "axis"))[0, 0]
  np.testing.assert_allclose(axis, [grid[col], grid[row]], atol=0.05)


def test_unknown_softmax_is_refused():
  with pytest.raises(ValueError, match="unknown spatial softmax"):
    keypoint_ops.spatial_softmax(jnp.zeros((1, 4, 4, 1)), "3d")


def test_coordinate_channels_follow_the_keypoint_convention():
  out = np.asarray(keypoint_ops.coordinate_channels(jnp.zeros((2, 3, 5, 3))))
  assert out.shape == (2, 3, 5, 5)
  np.testing.assert_allclose(out[0, 0, :, 3], np.linspace(-1, 1, 5))  # x along the width
  np.testing.assert_allclose(out[1, :, 4, 4], np.linspace(-1, 1, 3))  # y along the height


def test_pixel_axis_conversion_hand_computed_and_inverse():
  # A 40-cell map of an 80-pixel image (stride 2): cell 0 covers pixels 0-1 (centre 0.5),
  # cell 39 pixels 78-79 (centre 78.5).
  np.testing.assert_allclose(keypoint_ops.to_pixel_axis(np.array([-1.0, 1.0]), 40, 80),
                             [0.5, 78.5])
  # On the map's own pixels (stride 1) the ends are cell centres 0 and n - 1.
  np.testing.assert_allclose(keypoint_ops.to_pixel_axis(np.array([-1.0, 0.0, 1.0]), 5, 5),
                             [0.0, 2.0, 4.0])
  u = np.linspace(-1.3, 1.2, 7)
  np.testing.assert_allclose(keypoint_ops.from_pixel_axis(
      keypoint_ops.to_pixel_axis(u, 20, 80), 20, 80), u, atol=1e-12)
