"""Pure training functions for the Transporter: state, loss, step.

`train_step(state, batch) -> (state, metrics)` is the unit that binaries jit and shard (the
batch's leading axis is the data axis, see `keypoints.parallel`; the step keeps no host-side
state).
`sample_and_train(state, frames, pair_index, ...)` draws the batch on device from the state's own
PRNG key, so a run is a pure function of (config, dataset, seed) and resumes bit-exactly from a
checkpointed state.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from keypoints import baselines
from keypoints import configs
from keypoints import data as data_lib
from keypoints import networks


@flax.struct.dataclass
class TrainState:
  """Everything a training run needs to continue; a pytree (checkpointed whole).

  Attributes:
    step: int32 scalar.
    params: model parameters.
    batch_stats: batch-norm statistics ({} unless norm == "batch").
    opt_state: optax state.
    key: uint32 [2] PRNG key for pair sampling.
    apply_fn, tx: static (not checkpointed).
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  key: jax.Array
  apply_fn: Callable = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)


def build_model(model_config: ml_collections.ConfigDict) -> networks.KeypointAutoencoder:
  """The Transporter or a baseline (`model_config.model_type`), configured."""
  common = dict(
      num_keypoints=model_config.num_keypoints,
      image_size=tuple(model_config.image_size),
      filters=tuple(model_config.filters),
      kernels=tuple(model_config.kernels),
      strides=tuple(model_config.strides),
      decoder_filters=model_config.decoder_filters,
      gauss_std=model_config.gauss_std,
      norm=model_config.norm,
      dtype=jnp.dtype(model_config.compute_dtype),
      blank_top_rows=int(model_config.blank_top_rows))
  psi = dict(softmax=model_config.softmax, coord_channels=bool(model_config.coord_channels))
  model_type = model_config.model_type
  if model_type == "transporter":
    return networks.Transporter(**common, **psi)
  if model_type == "jakab":
    return baselines.Jakab(**common, **psi)
  if model_type == "zhang":
    return baselines.Zhang(**common, **model_config.zhang.to_dict())
  raise ValueError(f"unknown model {model_type!r}; expected one of {configs.MODEL_TYPES}")


def learning_rate_schedule(train_config: ml_collections.ConfigDict) -> optax.Schedule:
  """The learning rate against the step (`train_config.lr_schedule`, see configs)."""
  kind = train_config.lr_schedule
  if kind == "exponential":
    return optax.exponential_decay(train_config.learning_rate, train_config.lr_decay_steps,
                                   train_config.lr_decay_rate, staircase=True)
  if kind == "cosine":
    warmup = int(train_config.warmup_steps)
    return optax.warmup_cosine_decay_schedule(
        0.0 if warmup else train_config.learning_rate, train_config.learning_rate, warmup,
        max(int(train_config.num_steps), warmup + 1),
        train_config.learning_rate * train_config.final_lr_fraction)
  raise ValueError(f"unknown lr_schedule {kind!r}; expected one of {configs.LR_SCHEDULES}")


def build_optimizer(train_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  adam = optax.adam(learning_rate_schedule(train_config))
  clip = train_config.grad_clip_norm
  return optax.chain(optax.clip_by_global_norm(clip), adam) if clip > 0 else adam


def create_train_state(key: jax.Array, model: nn.Module, tx: optax.GradientTransformation,
                       image_size: tuple[int, int],
                       frame_mean: jax.Array | None = None) -> TrainState:
  """Initialises parameters from `init_key` and keeps a sampling key derived from `key`.

  Args:
    frame_mean: optional float [H, W, 3] in [0, 1] subtracted from every frame (default 0.5).
  """
  init_key, sample_key = jax.random.split(key)

  # One compiled program rather than op by op: the same numbers (checked for every model type,
  # normalisation and architecture), in about 11 s instead of 17 on the 2-core CPU the first
  # time in a process, where each distinct op and shape would otherwise compile on its own.
  @jax.jit
  def init(init_key, frame_mean):
    dummy = jnp.zeros((1, *image_size, 3), jnp.uint8)
    variables = model.init({"params": init_key, "warp": init_key}, dummy, dummy, train=False)
    params = variables["params"]
    if frame_mean is not None:
      params = {**params, "frame_mean": frame_mean}
    return params, variables.get("batch_stats", {}), tx.init(params)

  params, batch_stats, opt_state = init(
      init_key, None if frame_mean is None else jnp.asarray(frame_mean, jnp.float32))
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                    opt_state=opt_state, key=sample_key, apply_fn=model.apply, tx=tx)


def checkpoint_pytree(state: TrainState) -> dict[str, Any]:
  """The checkpointed part of a train state: everything but its static functions."""
  return {"step": state.step, "params": state.params, "batch_stats": state.batch_stats,
          "opt_state": state.opt_state, "key": state.key}


def model_variables(params: Any, batch_stats: Any) -> dict[str, Any]:
  """The variables dict for `model.apply`: params, plus batch_stats when the model has them."""
  return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def loss_fn(params: Any, batch_stats: Any, apply_fn: Callable, batch: dict[str, jax.Array],
            key: jax.Array, train: bool = True) -> tuple[jax.Array, tuple[dict[str, Any], Any]]:
  """Mean squared reconstruction error of the target frame, plus the model's own regularisers.

  Args:
    batch: {"source", "target"}: uint8 [B, H, W, 3], and optionally "pixel_weights": float32
      [H, W] (`pixel_loss_weights`) to weight the squared error per pixel.
    key: the model's randomness (the "warp" stream of the Zhang baseline; unused otherwise).

  Returns:
    (loss, (model outputs, new batch_stats)).
  """
  variables = model_variables(params, batch_stats)
  rngs = {"warp": key}
  if batch_stats:
    out, updates = apply_fn(variables, batch["source"], batch["target"], train=train,
                            mutable=["batch_stats"], rngs=rngs)
    batch_stats = updates["batch_stats"]
  else:
    out = apply_fn(variables, batch["source"], batch["target"], train=train, rngs=rngs)
  squared = jnp.square(out["reconstruction"] - out["target_image"])
  if "pixel_weights" in batch:
    squared = squared * batch["pixel_weights"][..., None]
  reconstruction = jnp.mean(squared)
  out["reconstruction_loss"] = reconstruction
  loss = reconstruction + sum(out.get("losses", {}).values())
  return loss, (out, batch_stats)


def train_step(state: TrainState, batch: dict[str, jax.Array],
               key: jax.Array) -> tuple[TrainState, dict]:
  """One Adam step on a batch of (source, target) pairs; returns the new state and metrics.

  `key` feeds the model's randomness, if it has any (Zhang's warps).
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (loss, (out, batch_stats)), grads = grad_fn(state.params, state.batch_stats, state.apply_fn,
                                              batch, key)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  keypoints = out["target"]["keypoints"]
  metrics = {
      "loss": loss,
      "reconstruction_loss": out["reconstruction_loss"],
      "grad_norm": optax.tree.norm(grads),
      # How far apart the K keypoints sit (collapsed keypoints are a common failure).
      "keypoint_spread": jnp.mean(jnp.std(keypoints, axis=1)),
      **{f"{name}_loss": value for name, value in out.get("losses", {}).items()},
  }
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state)
  return new_state, metrics


def pixel_loss_weights(train_set: data_lib.Dataset,
                       train_config: ml_collections.ConfigDict) -> np.ndarray | None:
  """float32 [H, W] per-pixel weights of the reconstruction error (mean 1), or None for the
  plain mean (`train_config.loss_weighting`, see configs). A function of the training frames
  alone, so a resumed run recomputes the same map."""
  kind = train_config.loss_weighting
  if kind == "uniform":
    return None
  if kind == "inverse_std":
    weights = 1.0 / np.square(np.maximum(train_set.pixel_std(), train_config.loss_weight_floor))
    return (weights / weights.mean()).astype(np.float32)
  raise ValueError(f"unknown loss_weighting {kind!r}; expected one of {configs.LOSS_WEIGHTINGS}")


def sample_and_train(state: TrainState, frames: jax.Array, pair_index: data_lib.PairIndex,
                     batch_size: int, pixel_weights: jax.Array | None = None,
                     batch_sharding: jax.sharding.Sharding | None = None,
                     ) -> tuple[TrainState, dict]:
  """One step on a fresh batch of pairs drawn with (and advancing) the state's own key.

  Args:
    frames: uint8 [N, H, W, 3], all training frames (on device).
    pair_index: from `data.make_pair_index` for the same frames.
    pixel_weights: optional float32 [H, W] weights of the squared error (`pixel_loss_weights`).
    batch_sharding: how to split the batch of pairs over devices (`parallel.batch_sharding`);
      None leaves it to the compiler (one device).
  """
  # One step per dispatch on purpose: XLA:CPU runs convolutions inside a while loop
  # (lax.scan) more than ten times slower than at the top level.
  _, sample_key = jax.random.split(state.key)
  batch = data_lib.sample_pairs(sample_key, frames, pair_index, batch_size)
  if batch_sharding is not None:
    batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
  return train_on_pairs(state, batch, pixel_weights)


def train_on_pairs(state: TrainState, batch: dict[str, jax.Array],
                   pixel_weights: jax.Array | None = None) -> tuple[TrainState, dict]:
  """The step of `sample_and_train` on pairs drawn from the state's key (by it, or by each
  process, `parallel.multihost_steps`); advances the key as it does."""
  key, sample_key = jax.random.split(state.key)
  if pixel_weights is not None:
    batch = {**batch, "pixel_weights": pixel_weights}
  return train_step(state.replace(key=key), batch, jax.random.fold_in(sample_key, 1))


def sample_and_train_steps(state: TrainState, frames: jax.Array, pair_index: data_lib.PairIndex,
                           batch_size: int, num_steps: int,
                           pixel_weights: jax.Array | None = None,
                           batch_sharding: jax.sharding.Sharding | None = None,
                           ) -> tuple[TrainState, dict]:
  """`num_steps` calls of `sample_and_train` in one dispatch (lax.scan); every metric comes back
  stacked, [num_steps].

  For accelerators, where a step is launch-bound; the CPU keeps one step per dispatch (see
  `sample_and_train`). The steps are the same as `num_steps` separate calls.
  """
  def body(carry, _):
    return sample_and_train(carry, frames, pair_index, batch_size, pixel_weights,
                            batch_sharding)

  return jax.lax.scan(body, state, None, length=num_steps)


def eval_loss(state: TrainState, batch: dict[str, jax.Array], key: jax.Array) -> jax.Array:
  """The training loss on a batch without updating anything (`key`: the model's randomness)."""
  loss, _ = loss_fn(state.params, state.batch_stats, state.apply_fn, batch, key, train=False)
  return loss


def first_non_finite(losses: list[jax.Array], first_step: int) -> tuple[int, float] | None:
  """(step, value) of the first NaN / infinite loss among consecutive steps' losses (scalars,
  or [n] arrays of n steps each), or None."""
  if not losses:
    return None
  values = np.asarray(jnp.concatenate([jnp.atleast_1d(x) for x in losses]))  # one transfer
  bad = np.flatnonzero(~np.isfinite(values))
  return (first_step + int(bad[0]), float(values[bad[0]])) if len(bad) else None
