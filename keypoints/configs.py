"""Model and training configurations (ml_collections.ConfigDict).

Two architectures are offered:
  * "deepmind": the default of DeepMind's released Transporter: Phi and Psi of 16, 16, 32, 32
    filters (kernels 7, 3, 3, 3; strides 1, 1, 2, 1; features at 1/2 resolution), RefineNet
    starting from 32 filters. Small and fast: the default for CPU work.
  * "paper": the appendix of Kulkarni et al. 2019: 7x7/32 s1, 3x3/32 s1, 3x3/64 s2, 3x3/64 s1,
    3x3/128 s2, 3x3/128 s1 (features at 1/4 resolution), RefineNet mirroring it from 128.
Normalisation defaults to instance norm, which the reference reports trains more stably than
the batch norm of the paper; "layer", "batch" and "none" are available.
"""

from __future__ import annotations

import ml_collections

ARCHITECTURES = {
    "deepmind": dict(filters=(16, 16, 32, 32), kernels=(7, 3, 3, 3), strides=(1, 1, 2, 1),
                     decoder_filters=32),
    "paper": dict(filters=(32, 32, 64, 64, 128, 128), kernels=(7, 3, 3, 3, 3, 3),
                  strides=(1, 1, 2, 1, 2, 1), decoder_filters=128),
}

MODEL_TYPES = ("transporter", "jakab", "zhang")


def model_config(arch: str = "deepmind", **overrides) -> ml_collections.ConfigDict:
  """The model part of a config: architecture, K, image size, keypoint std, normalisation."""
  if arch not in ARCHITECTURES:
    raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")
  config = ml_collections.ConfigDict(dict(
      # "transporter", or a baseline of keypoints.baselines: "jakab", "zhang".
      model_type="transporter",
      arch=arch,
      num_keypoints=4,
      image_size=(80, 80),
      gauss_std=0.1,  # in the [-1, 1] units of the feature map
      norm="instance",
      # "mean_frame" (default): frames minus the training frames' average, which zeroes a static
      # background so that only what moves carries signal: on the sprites video keypoints lock on
      # in ~400 steps instead of ~900, and small Atari objects are found at all on a CPU budget.
      # "constant": frames minus 0.5, as in the reference.
      centering="mean_frame",
      # Zhang et al.'s regularisers (used only by model_type "zhang"); weights multiply the
      # losses of keypoints.baselines, whose scale is the [-1, 1] keypoint units.
      zhang=ml_collections.ConfigDict(dict(
          concentration_weight=0.1, separation_weight=0.01, separation_std=0.1,
          equivariance_weight=1.0, max_rotation=0.3, max_scale=0.1, max_translation=0.1)),
      **{k: tuple(v) if isinstance(v, tuple) else v for k, v in ARCHITECTURES[arch].items()},
  ))
  config.update(overrides)
  return config


def train_config(**overrides) -> ml_collections.ConfigDict:
  """Optimisation and pair-sampling settings (paper: Adam 1e-3, offsets up to 20 frames)."""
  config = ml_collections.ConfigDict(dict(
      batch_size=32,
      learning_rate=1e-3,
      lr_decay_rate=0.95,  # multiply the learning rate by this ...
      lr_decay_steps=100_000,  # ... every this many steps (paper schedule)
      min_offset=1,
      max_offset=20,
      num_steps=10_000,
      seed=0,
  ))
  config.update(overrides)
  return config


def validate(model: ml_collections.ConfigDict, train: ml_collections.ConfigDict | None = None):
  """Raises ValueError with one line for a config that cannot work."""
  if model.get("model_type", "transporter") not in MODEL_TYPES:
    raise ValueError(f"unknown model {model.model_type!r}; expected one of {MODEL_TYPES}")
  if model.num_keypoints < 1:
    raise ValueError(f"num_keypoints (K) must be >= 1, got {model.num_keypoints}")
  if model.centering not in ("constant", "mean_frame"):
    raise ValueError(f"centering must be 'constant' or 'mean_frame', got {model.centering!r}")
  if model.gauss_std <= 0:
    raise ValueError(f"gauss_std must be > 0, got {model.gauss_std}")
  if len({len(model.filters), len(model.kernels), len(model.strides)}) != 1:
    raise ValueError("filters, kernels and strides must have the same length")
  h, w = model.image_size
  stride = 1
  for s in model.strides:
    stride *= s
  if h % stride or w % stride or h <= 0 or w <= 0:
    raise ValueError(f"image_size {tuple(model.image_size)} must be positive multiples of the "
                     f"encoder's total stride {stride}")
  if train is not None:
    if train.batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {train.batch_size}")
    if train.min_offset < 1:
      raise ValueError(f"min_offset must be >= 1, got {train.min_offset}")
    if train.max_offset < train.min_offset:
      raise ValueError(f"temporal offset range is inverted: min_offset={train.min_offset} > "
                       f"max_offset={train.max_offset}")
