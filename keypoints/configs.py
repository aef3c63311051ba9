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

from keypoints import baselines
from keypoints import data
from keypoints import keypoint_ops
from keypoints import networks

ARCHITECTURES = {
    "deepmind": dict(filters=(16, 16, 32, 32), kernels=(7, 3, 3, 3), strides=(1, 1, 2, 1),
                     decoder_filters=32),
    "paper": dict(filters=(32, 32, 64, 64, 128, 128), kernels=(7, 3, 3, 3, 3, 3),
                  strides=(1, 1, 2, 1, 2, 1), decoder_filters=128),
}

MODEL_TYPES = ("transporter", "jakab", "zhang")
NORMS = networks.NORMS
SOFTMAX_KINDS = keypoint_ops.SOFTMAX_KINDS
LR_SCHEDULES = ("exponential", "cosine")
LOSS_WEIGHTINGS = ("uniform", "inverse_std")
COMPUTE_DTYPES = ("float32", "bfloat16")


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
      # Psi's readout of its heatmaps (keypoint_ops.spatial_softmax): "axis" (DeepMind's
      # per-axis softmax of axis means) or "2d" (one softmax over the whole map).
      softmax="axis",
      coord_channels=False,  # x, y channels appended to Psi's input
      # "mean_frame" (default): frames minus the training frames' average, which zeroes a static
      # background so that only what moves carries signal: on the sprites video keypoints lock on
      # in ~400 steps instead of ~900, and small Atari objects are found at all on a CPU budget.
      # "constant": frames minus 0.5, as in the reference.
      centering="mean_frame",
      # What the convolutions compute in: "float32", or "bfloat16" (parameters, normalisation
      # statistics, keypoints, transport and the loss stay float32) for accelerators' fast
      # path. On XLA:CPU it runs about as fast as float32 and gains nothing.
      compute_dtype="float32",
      # Rows at the top of the model's image (after the resize) that every frame is blanked in,
      # input and reconstruction target alike (set to the centring's zero), so that nothing
      # drawn there can draw a keypoint: a game's score, whose digits change when a point is
      # won and look like the objects (Pong's are the paddles' colours). 0: none. Pong at
      # 80x80: 9 (its score sits in rows 0-7, the top wall from row 9).
      blank_top_rows=0,
      # Zhang et al.'s regularisers (used only by model_type "zhang"; keypoints.baselines).
      zhang=ml_collections.ConfigDict(dict(baselines.ZHANG_DEFAULTS)),
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
      # "exponential": the staircase decay above; "cosine": a linear warm-up over
      # `warmup_steps` to `learning_rate`, then a cosine decay to `learning_rate *
      # final_lr_fraction` at `num_steps` (the decay fields above are then unused).
      lr_schedule="exponential",
      warmup_steps=0,
      final_lr_fraction=0.0,
      grad_clip_norm=0.0,  # > 0: clip the gradient's global norm to this before Adam
      # How the reconstruction error is averaged over pixels. "uniform": a plain mean (the
      # paper). "inverse_std": each pixel weighted by 1 / max(std, loss_weight_floor)^2, its
      # std over the training frames (weights scaled to mean 1), so that an error where the
      # frames rarely change (a small ball on an empty field) counts as much as one where they
      # change all the time (a paddle's row, a score): train.pixel_loss_weights.
      loss_weighting="uniform",
      loss_weight_floor=0.05,
      min_offset=1,
      max_offset=20,
      num_steps=10_000,
      seed=0,
  ))
  config.update(overrides)
  return config


def validate(model: ml_collections.ConfigDict, train: ml_collections.ConfigDict | None = None):
  """Raises ValueError with one line for a config that cannot work."""
  if model.model_type not in MODEL_TYPES:
    raise ValueError(f"unknown model {model.model_type!r}; expected one of {MODEL_TYPES}")
  if model.num_keypoints < 1:
    raise ValueError(f"num_keypoints (K) must be >= 1, got {model.num_keypoints}")
  if model.centering not in ("constant", "mean_frame"):
    raise ValueError(f"centering must be 'constant' or 'mean_frame', got {model.centering!r}")
  if model.norm not in NORMS:
    raise ValueError(f"norm must be one of {NORMS}, got {model.norm!r}")
  if model.softmax not in SOFTMAX_KINDS:
    raise ValueError(f"softmax must be one of {SOFTMAX_KINDS}, got {model.softmax!r}")
  if model.compute_dtype not in COMPUTE_DTYPES:
    raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got "
                     f"{model.compute_dtype!r}")
  if model.gauss_std <= 0:
    raise ValueError(f"gauss_std must be > 0, got {model.gauss_std}")
  if len({len(model.filters), len(model.kernels), len(model.strides)}) != 1:
    raise ValueError("filters, kernels and strides must have the same length")
  h, w = model.image_size
  if not 0 <= model.blank_top_rows < h:
    raise ValueError(f"blank_top_rows must be in [0, {h}) for image height {h}, got "
                     f"{model.blank_top_rows}")
  stride = networks.feature_stride(model.strides)
  if h % stride or w % stride or h <= 0 or w <= 0:
    raise ValueError(f"image_size {tuple(model.image_size)} must be positive multiples of the "
                     f"encoder's total stride {stride}")
  if train is not None:
    if train.loss_weighting not in LOSS_WEIGHTINGS:
      raise ValueError(f"loss_weighting must be one of {LOSS_WEIGHTINGS}, got "
                       f"{train.loss_weighting!r}")
    if train.loss_weight_floor <= 0:
      raise ValueError(f"loss_weight_floor must be > 0, got {train.loss_weight_floor}")
    if train.batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {train.batch_size}")
    if train.lr_schedule not in LR_SCHEDULES:
      raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {train.lr_schedule!r}")
    if train.learning_rate <= 0:
      raise ValueError(f"learning_rate must be > 0, got {train.learning_rate}")
    data.check_offsets(train.min_offset, train.max_offset)


def _merge(defaults: dict, saved: dict) -> dict:
  out = dict(defaults)
  for k, v in saved.items():
    out[k] = _merge(defaults[k], v) if isinstance(v, dict) and isinstance(
        defaults.get(k), dict) else v
  return out


def complete(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A saved run config with the model and train fields added since it was written filled in
  with their defaults (which are what such runs used), so code can read every field directly.
  The one place that knows about older run directories."""
  out = config.to_dict()
  if "model" in out:
    out["model"] = _merge(model_config(out["model"].get("arch", "deepmind")).to_dict(),
                          out["model"])
  if "train" in out:
    out["train"] = _merge(train_config().to_dict(), out["train"])
  return ml_collections.ConfigDict(out)
