"""Keypoint-versus-object metrics in pixel coordinates ((x, y), see keypoints.data)."""

from __future__ import annotations

import numpy as np


def nearest_keypoint_distance(keypoints: np.ndarray, objects: np.ndarray) -> np.ndarray:
  """For every object, the distance to the closest keypoint.

  Args:
    keypoints: [N, K, 2] pixel positions.
    objects: [N, M, 2] pixel positions (NaN for an object that is not visible).

  Returns:
    [N, M] distances in pixels (NaN where the object is NaN).
  """
  diff = np.asarray(objects)[:, :, None, :] - np.asarray(keypoints)[:, None, :, :]
  return np.linalg.norm(diff, axis=-1).min(axis=-1)


def object_recall(keypoints: np.ndarray, objects: np.ndarray, threshold: float) -> np.ndarray:
  """Per object, the fraction of frames with a keypoint within `threshold` pixels; [M]."""
  dist = nearest_keypoint_distance(keypoints, objects)
  seen = ~np.isnan(dist)
  hit = (dist <= threshold) & seen
  return hit.sum(0) / np.maximum(seen.sum(0), 1)
