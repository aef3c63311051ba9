"""The detector API: keypoints (and Phi features at them) of raw frames from a trained run.

    from keypoints.inference import load_detector
    detect = load_detector(run_dir)   # restores the run's config and latest checkpoint
    xy = detect(frames)               # uint8 [N, H, W, 3], any H, W -> float32 [N, K, 2]
    xy, feats = detect.features(frames)  # ... and float32 [N, K, C] Phi features at them

Keypoints are (x, y) pixels of the *input* frame, (0, 0) the centre of its top-left pixel.
Frames are resized to the model's resolution with `keypoints.data.resize_frames`, the resize
used when the training data was collected.
"""

from __future__ import annotations

import copy
import os

import jax
import jax.numpy as jnp
import numpy as np

from keypoints import data as data_lib
from keypoints import keypoint_ops
from keypoints import networks
from keypoints import run_dir as run_dir_lib
from keypoints import train as train_lib
from keypoints import xla


def to_pixels(keypoints: np.ndarray | jax.Array, feature_size: tuple[int, int],
              image_size: tuple[int, int], frame_size: tuple[int, int] | None = None):
  """Normalised feature-map keypoints [..., 2] -> (x, y) pixels of a frame.

  A feature cell covers a stride x stride block of the model's image; its centre is the
  block's centre. `frame_size` (H, W) rescales to a raw frame the image was resized from.
  """
  (fh, fw), (h, w) = feature_size, image_size
  keypoints = np.asarray(keypoints)
  points = np.stack([keypoint_ops.to_pixel_axis(keypoints[..., 0], fw, w),
                     keypoint_ops.to_pixel_axis(keypoints[..., 1], fh, h)], axis=-1)
  if frame_size is not None:
    points = data_lib.resize_points(points, image_size, frame_size)
  return points.astype(np.float32)


class Detector:
  """Callable keypoint detector bound to trained parameters (see module docstring)."""

  def __init__(self, model: networks.KeypointAutoencoder, variables: dict):
    self.model = model
    self.num_keypoints = model.num_keypoints
    self.image_size = tuple(model.image_size)
    stride = networks.feature_stride(model.strides)
    self.feature_size = (self.image_size[0] // stride, self.image_size[1] // stride)
    self.variables = variables
    self._detect = xla.jit(lambda v, x: model.apply(v, x, method=model.detect))
    self._features = xla.jit(lambda v, x: model.apply(v, x, method=model.detect_with_features))

  def with_variables(self, variables: dict) -> "Detector":
    """The same detector (and compiled functions) bound to other variables, e.g. fresh
    parameters during training; this one is left unchanged."""
    other = copy.copy(self)
    other.variables = variables
    return other

  def _prepare(self, frames) -> tuple[np.ndarray, tuple[int, int]]:
    frames = np.asarray(frames)
    if frames.ndim == 3:
      raise ValueError(f"frames must be a batch uint8 [N, H, W, 3]; got one frame of shape "
                       f"{list(frames.shape)} (use frames[None])")
    if frames.ndim != 4 or frames.shape[-1] != 3:
      raise ValueError(f"frames must be uint8 [N, H, W, 3], got shape {list(frames.shape)}")
    if frames.dtype != np.uint8:
      raise ValueError(f"frames must be uint8 (raw environment frames), got {frames.dtype}")
    if 0 in frames.shape:
      raise ValueError(f"frames must be non-empty uint8 [N, H, W, 3], got shape "
                       f"{list(frames.shape)}")
    size = frames.shape[1:3]
    return data_lib.resize_frames(frames, *self.image_size), size

  def __call__(self, frames) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float32 [N, K, 2] (x, y) pixels of the input frames."""
    images, size = self._prepare(frames)
    kp = self._detect(self.variables, jnp.asarray(images))
    return to_pixels(np.asarray(kp), self.feature_size, self.image_size, size)

  def lower(self, frames, features: bool = False) -> jax.stages.Lowered:
    """The jitted network call of `__call__` on `frames` (of `features` with features=True),
    lowered: its `cost_analysis()` is XLA's count of the call's FLOPs (the benchmarks' use);
    resizing the frames on the host is not part of it."""
    images, _ = self._prepare(frames)
    return (self._features if features else self._detect).lower(self.variables,
                                                                jnp.asarray(images))

  def features(self, frames) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, H, W, 3] -> ((x, y) pixels [N, K, 2], Phi features at them [N, K, C])."""
    images, size = self._prepare(frames)
    kp, feats = self._features(self.variables, jnp.asarray(images))
    return (to_pixels(np.asarray(kp), self.feature_size, self.image_size, size),
            np.asarray(feats))


def load_detector(run_dir: str | os.PathLike, step: int | None = None) -> Detector:
  """Restores a run's config and its newest readable (or the given) checkpoint as a `Detector`.

  Only the model's variables are read (no optimizer is built). An unreadable newest checkpoint
  is skipped with one warning line; `run_dir.RunDirError` (one line) when nothing usable is
  there.
  """
  config = run_dir_lib.read_config(run_dir)
  model = train_lib.build_model(config.model)
  image_size = tuple(config.model.image_size)
  dummy = jnp.zeros((1, *image_size, 3), jnp.uint8)
  shapes = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0),
                                              "warp": jax.random.PRNGKey(0)}, dummy, dummy))
  abstract = {"params": shapes["params"], "batch_stats": shapes.get("batch_stats", {})}
  _, variables = run_dir_lib.restore_params(run_dir, abstract, step)
  return Detector(model, train_lib.model_variables(variables["params"],
                                                   variables["batch_stats"]))
