"""Keypoints of a detector against ground-truth objects on held-out frames, in raw-frame pixels.

Shared by the tracking comparison (experiments/eval_tracking.py) and the seed studies
(experiments/seed_study.py): both score the same way.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keypoints import data as data_lib
from keypoints import ground_truth
from keypoints import inference
from keypoints import metrics


@dataclasses.dataclass(frozen=True)
class HeldoutScores:
  """Keypoints and objects of held-out frames in raw-frame pixels, and per-object recall.

  Attributes:
    object_names: names of the M objects.
    frame_keypoints: float [T, K, 2] (x, y) pixels of the stored frames (for drawing on them).
    keypoints: float [T, K, 2] (x, y) raw-frame pixels.
    objects: float [T, M, 2] raw-frame pixels, NaN where not visible.
    per_object_recall: float [M], fraction of visible frames with a keypoint within threshold.
    raw_size: (H, W) of the raw frames.
  """
  object_names: tuple[str, ...]
  frame_keypoints: np.ndarray
  keypoints: np.ndarray
  objects: np.ndarray
  per_object_recall: np.ndarray
  raw_size: tuple[int, int]


def raw_frame_size(dataset: data_lib.Dataset) -> tuple[int, int]:
  """(H, W) of the frames the dataset's stored frames were resized from."""
  size = dataset.frames.shape[1:3]
  meta = dataset.metadata
  return int(meta.get("raw_height", size[0])), int(meta.get("raw_width", size[1]))


def detect_all(detector: inference.Detector, frames: np.ndarray,
               batch_size: int = 256) -> np.ndarray:
  """Keypoints [N, K, 2] (pixels of `frames`), `batch_size` frames per detector call."""
  out = [detector(frames[i:i + batch_size]) for i in range(0, len(frames), batch_size)]
  return np.concatenate(out)


def score_heldout(detector: inference.Detector, heldout: data_lib.Dataset, threshold: float,
                  batch_size: int = 256) -> HeldoutScores:
  """Runs `detector` on every held-out frame and scores it against the dataset's objects.

  Raises:
    keypoints.data.DatasetError: the dataset has no object ground truth.
  """
  names, objects = ground_truth.dataset_positions(heldout.metadata, heldout.ground_truth)
  size = heldout.frames.shape[1:3]
  raw_size = raw_frame_size(heldout)
  frame_keypoints = detect_all(detector, heldout.frames, batch_size)
  keypoints = data_lib.resize_points(frame_keypoints, size, raw_size)
  raw_objects = data_lib.resize_points(objects, size, raw_size)
  recall = metrics.object_recall(keypoints, raw_objects, threshold)
  return HeldoutScores(tuple(names), frame_keypoints, keypoints, raw_objects, recall, raw_size)
