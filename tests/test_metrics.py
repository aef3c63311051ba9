"""Tracking metrics on hand-made cases: perfect, shifted, missing, extra and swapping keypoints."""

import numpy as np
import pytest

from keypoints import data
from keypoints import metrics

T = 10


def _objects():
  """Two objects moving right, 20 px apart; [T, 2, 2]."""
  x = np.arange(T, dtype=np.float64)
  return np.stack([np.stack([x, np.full(T, 5.0)], -1), np.stack([x + 20, np.full(T, 5.0)], -1)],
                  axis=1)


def test_perfect_keypoints():
  obj = _objects()
  r = metrics.tracking(obj, obj, threshold=2.0, horizons=[0, 3, 9])
  np.testing.assert_allclose(r["precision"], 1.0)
  np.testing.assert_allclose(r["recall"], 1.0)
  np.testing.assert_array_equal(r["sequences"], [10, 7, 1])
  assert r["mean_track_length"] == T and r["switches_per_100_frames"] == 0


def test_shifted_beyond_the_threshold_misses_and_within_it_hits():
  obj = _objects()
  near = metrics.tracking(obj + [1.0, 1.0], obj, threshold=2.0, horizons=[0])  # 1.41 px off
  far = metrics.tracking(obj + [3.0, 0.0], obj, threshold=2.0, horizons=[0])
  assert near["precision"][0] == 1.0 and near["recall"][0] == 1.0
  assert far["precision"][0] == 0.0 and far["recall"][0] == 0.0


def test_missing_object_and_extra_keypoint():
  obj = _objects()
  kp = np.concatenate([obj[:, :1], np.full((T, 1, 2), 50.0)], axis=1)  # one on, one on nothing
  r = metrics.tracking(kp, obj, threshold=2.0, horizons=[0])
  assert r["precision"][0] == 0.5 and r["recall"][0] == 0.5
  # An object that is invisible is neither recalled nor missed.
  obj2 = obj.copy()
  obj2[:, 1] = np.nan
  r2 = metrics.tracking(kp, obj2, threshold=2.0, horizons=[0])
  assert r2["recall"][0] == 1.0 and r2["precision"][0] == 0.5


def test_identity_swap_hurts_long_horizons_only():
  obj = _objects()
  kp = obj.copy()
  kp[5:] = obj[5:, ::-1]  # the two keypoints swap objects at frame 5
  r = metrics.tracking(kp, obj, threshold=2.0, horizons=[0, 4, 5, 9])
  assert r["precision"][0] == 1.0 and r["recall"][0] == 1.0  # every frame is fine
  # 5-frame windows start at 0..5; only those starting at 0 and 5 stay on one side of the swap.
  assert r["precision"][1] == pytest.approx(2 / 6) and r["recall"][1] == pytest.approx(2 / 6)
  # Every window of 6 or more frames crosses it.
  assert r["precision"][2] == 0.0 and r["precision"][3] == 0.0 and r["recall"][3] == 0.0
  assert r["mean_track_length"] == 5.0
  assert r["switches_per_100_frames"] == pytest.approx(100 * 2 / (2 * (T - 1)))


def test_sequences_never_cross_episodes():
  obj = _objects()
  kp = obj.copy()
  kp[5:] = obj[5:, ::-1]
  r = metrics.tracking(kp, obj, threshold=2.0, horizons=[4, 5], episode_lengths=[5, 5])
  np.testing.assert_allclose(r["precision"][0], 1.0)  # each episode is consistent
  assert np.isnan(r["precision"][1])  # no 6-frame sequence inside a 5-frame episode
  assert r["switches_per_100_frames"] == 0
  with pytest.raises(ValueError, match="episode lengths sum to 7"):
    metrics.tracking(kp, obj, 2.0, [0], episode_lengths=[3, 4])


def test_resize_points_maps_pixel_centres_to_the_raw_frame():
  p = data.resize_points(np.array([[0.0, 0.0], [79.0, 79.0]]), (80, 80), (210, 160))
  np.testing.assert_allclose(p, [[0.5, 0.8125], [158.5, 208.1875]])


def test_object_keypoints_finds_each_objects_keypoint_its_offset_and_scatter():
  rng = np.random.default_rng(0)
  n = 4000
  obj = np.stack([rng.uniform(0, 100, (n, 2)), rng.uniform(200, 300, (n, 2))], axis=1)
  obj[:n // 4, 1] = np.nan  # object 1 is off the screen a quarter of the time
  kps = np.full((n, 3, 2), -500.0)  # keypoint 1 sits on nothing
  kps[:, 2] = obj[:, 0] + [1.0, -2.0] + rng.normal(0, [0.5, 1.0], (n, 2))
  kps[:, 0] = np.nan_to_num(obj[:, 1], nan=-900.0)  # exactly on object 1 while it is shown
  kps[-n // 10:, 2] = 50.0 + obj[-n // 10:, 0]  # keypoint 2 wanders off for the last tenth
  r = metrics.object_keypoints(kps, obj, threshold=8.0)
  np.testing.assert_array_equal(r["keypoint"], [2, 0])
  np.testing.assert_allclose(r["recall"], [0.9, 1.0])
  # Only the frames on the object count: the wandering tenth leaves offset and scatter alone.
  np.testing.assert_allclose(r["offset"][0], [1.0, -2.0], atol=0.06)
  np.testing.assert_allclose(r["scatter"][0], [0.5, 1.0], rtol=0.06)
  np.testing.assert_allclose(r["offset"][1], 0.0, atol=1e-12)
  np.testing.assert_allclose(r["scatter"][1], 0.0, atol=1e-12)


def test_object_keypoints_of_an_object_no_keypoint_reaches():
  obj = _objects()
  r = metrics.object_keypoints(obj + [0.0, 50.0], obj, threshold=2.0)
  np.testing.assert_array_equal(r["keypoint"], [0, 0])  # all tie at zero: the lowest index
  np.testing.assert_array_equal(r["recall"], [0.0, 0.0])
  assert np.isnan(r["offset"]).all() and np.isnan(r["scatter"]).all()
  with pytest.raises(ValueError, match="expected keypoints"):
    metrics.object_keypoints(obj[0], obj, threshold=2.0)
