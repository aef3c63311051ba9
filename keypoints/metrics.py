"""Keypoint-versus-object tracking metrics, in pixel coordinates ((x, y), see keypoints.data).

Objects come as [T, M, 2] positions with NaN where an object is not visible; keypoints as
[T, K, 2]. A keypoint is *on* an object in a frame when it lies within `threshold` pixels of it.

Tracking over a horizon (the paper's tracking figure): a sequence starts at any frame s of an
episode, and the horizon h counts frames since its start. Over [s, s + h]
  * a keypoint *tracks* when it stays on one and the same object in every frame;
    precision(h) = tracking keypoints / all keypoints;
  * an object visible in every frame is *tracked* when some keypoint stays on it in every
    frame; recall(h) = tracked objects / objects visible throughout.
At h = 0 these are the per-frame precision and recall (a keypoint may match any object, and
several keypoints may share one). Both can only fall as h grows; how slowly they fall is how well
keypoints keep their identity. Identity consistency is also summarised directly: the mean length
of a *track* (a maximal run of frames in which one keypoint index stays on one object) and the
rate of identity switches (a keypoint on object m in one frame and on another object in the
next).
"""

from __future__ import annotations

from typing import Sequence

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


def on_object(keypoints: np.ndarray, objects: np.ndarray, threshold: float) -> np.ndarray:
  """bool [T, K, M]: keypoint k within `threshold` pixels of visible object m in frame t."""
  diff = np.asarray(keypoints, np.float64)[:, :, None] - np.asarray(objects, np.float64)[:, None]
  dist = np.linalg.norm(diff, axis=-1)
  with np.errstate(invalid="ignore"):
    return dist <= threshold  # NaN (invisible) compares False


def object_keypoints(keypoints: np.ndarray, objects: np.ndarray, threshold: float
                     ) -> dict[str, np.ndarray]:
  """Per object, the keypoint that sits on it most often, and how precisely it sits there.

  For object m, keypoint k(m) is the one within `threshold` pixels of it in the most frames the
  object is visible in (the lowest index on a tie). Over those frames, its error
  keypoint - object has a mean (`offset`: where the keypoint sits relative to the object,
  which a learner reading positions can absorb) and a per-axis standard deviation (`scatter`:
  how much it moves about the object from frame to frame, which it cannot). Frames where the
  keypoint is off the object are counted by `recall` and left out of both, so a keypoint that
  sometimes wanders off does not inflate them.

  Args:
    keypoints: [T, K, 2] pixels; objects: [T, M, 2] pixels, NaN where not visible.
    threshold: distance in pixels within which a keypoint is on an object.

  Returns:
    {"keypoint": int [M], "recall": [M] (fraction of the object's visible frames with k(m) on
     it), "offset": [M, 2] and "scatter": [M, 2] (x, y) pixels, NaN where k(m) is never on it}.
  """
  keypoints, objects = np.asarray(keypoints, np.float64), np.asarray(objects, np.float64)
  if keypoints.ndim != 3 or objects.ndim != 3 or len(keypoints) != len(objects):
    raise ValueError(f"expected keypoints [T, K, 2] and objects [T, M, 2], got "
                     f"{list(keypoints.shape)} and {list(objects.shape)}")
  near = on_object(keypoints, objects, threshold)  # [T, K, M]
  seen = np.isfinite(objects).all(-1).sum(0)  # [M]
  best = near.sum(0).argmax(0)  # [M]: argmax takes the lowest index on a tie
  num_objects = objects.shape[1]
  recall = np.zeros(num_objects)
  offset = np.full((num_objects, 2), np.nan)
  scatter = np.full((num_objects, 2), np.nan)
  for m, k in enumerate(best):
    hit = near[:, k, m]
    recall[m] = hit.sum() / max(seen[m], 1)
    if hit.any():
      error = keypoints[hit, k] - objects[hit, m]
      offset[m], scatter[m] = error.mean(0), error.std(0)
  return {"keypoint": best.astype(np.int64), "recall": recall, "offset": offset,
          "scatter": scatter}


def _runs_ahead(flags: np.ndarray) -> np.ndarray:
  """For bool [T, ...], how many consecutive frames from t onwards are True; int [T, ...]."""
  runs = np.zeros(flags.shape, np.int64)
  ahead = np.zeros(flags.shape[1:], np.int64)
  for t in range(len(flags) - 1, -1, -1):
    ahead = np.where(flags[t], ahead + 1, 0)
    runs[t] = ahead
  return runs


def _episodes(length: int, episode_lengths: Sequence[int] | None) -> list[slice]:
  lengths = [length] if episode_lengths is None else [int(n) for n in episode_lengths]
  if sum(lengths) != length:
    raise ValueError(f"episode lengths sum to {sum(lengths)} but there are {length} frames")
  starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
  return [slice(int(s), int(s) + n) for s, n in zip(starts, lengths)]


def tracking(keypoints: np.ndarray, objects: np.ndarray, threshold: float,
             horizons: Sequence[int], episode_lengths: Sequence[int] | None = None
             ) -> dict[str, np.ndarray | float]:
  """Precision and recall over horizons, and identity consistency (see the module docstring).

  Args:
    keypoints: [T, K, 2] pixels; objects: [T, M, 2] pixels, NaN where not visible.
    threshold: distance in pixels within which a keypoint is on an object.
    horizons: the h values (frames since a sequence's start) to report.
    episode_lengths: frames per episode, concatenated along T (sequences never cross them);
      default one episode.

  Returns:
    {"horizons": int [H], "precision": [H], "recall": [H] (NaN where no sequence is that long),
     "sequences": int [H] (sequence starts counted at each horizon),
     "mean_track_length": frames, "switches_per_100_frames": float}.
  """
  keypoints, objects = np.asarray(keypoints), np.asarray(objects)
  if keypoints.ndim != 3 or objects.ndim != 3 or len(keypoints) != len(objects):
    raise ValueError(f"expected keypoints [T, K, 2] and objects [T, M, 2], got "
                     f"{list(keypoints.shape)} and {list(objects.shape)}")
  horizons = np.asarray(horizons, np.int64)
  tp_k = np.zeros(len(horizons)); n_k = np.zeros(len(horizons))
  tp_m = np.zeros(len(horizons)); n_m = np.zeros(len(horizons))
  starts = np.zeros(len(horizons), np.int64)
  track_frames = track_count = switches = moves = 0
  for episode in _episodes(len(keypoints), episode_lengths):
    near = on_object(keypoints[episode], objects[episode], threshold)  # [L, K, M]
    visible = np.isfinite(objects[episode]).all(-1)  # [L, M]
    runs = _runs_ahead(near)  # [L, K, M]
    vis_runs = _runs_ahead(visible)  # [L, M]
    length = len(near)
    for i, h in enumerate(horizons):
      count = length - h  # sequence starts with a frame at horizon h
      if count <= 0:
        continue
      starts[i] += count
      held = runs[:count] >= h + 1  # [S, K, M]
      tp_k[i] += held.any(-1).sum()
      n_k[i] += held.shape[0] * held.shape[1]
      throughout = vis_runs[:count] >= h + 1  # [S, M]
      tp_m[i] += (held.any(1) & throughout).sum()
      n_m[i] += throughout.sum()
    # Tracks are maximal runs: they start where the previous frame was not on that object.
    begins = near.copy()
    begins[1:] &= ~near[:-1]
    track_count += begins.sum()
    track_frames += runs[begins].sum()
    # Switches: on object m at t, on some other object (and not m) at t + 1.
    on_any = near.any(-1)
    stays = (near[:-1] & near[1:]).any(-1)
    moved = on_any[:-1] & on_any[1:] & ~stays
    switches += moved.sum()
    moves += near.shape[1] * (length - 1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return {"horizons": horizons, "precision": tp_k / n_k, "recall": tp_m / n_m,
            "sequences": starts,
            "mean_track_length": float(track_frames / track_count) if track_count else 0.0,
            "switches_per_100_frames": float(100.0 * switches / moves) if moves else 0.0}

