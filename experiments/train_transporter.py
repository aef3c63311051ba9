"""Trains a Transporter (or a baseline) on a frame dataset; the same --run_dir resumes.

  python -m experiments.train_transporter --config=experiments/configs/pong.py --run_dir=runs/pong
  # any config field can be overridden, e.g. --config.train.batch_size=32 --config.model.arch=...
  # the baselines train under the same config, data and budget:
  python -m experiments.train_transporter --config.model.model_type=jakab --run_dir=runs/pong_jakab

Writes into the run directory: config.json, metrics.csv + TensorBoard events (loss, held-out
loss, keypoint spread), images/keypoints_<step>.gif (keypoints on a held-out episode),
images/reconstruction_<step>.png (source | target | reconstruction rows) and Orbax checkpoints
every `checkpoint_every` steps, at the end, and on SIGTERM / Ctrl-C.
"""

from __future__ import annotations

import contextlib
import functools
import sys

import jax
import jax.numpy as jnp
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
from tqdm import tqdm

from experiments import harness
from keypoints import configs as configs_lib
from keypoints import data as data_lib
from keypoints import inference
from keypoints import parallel
from keypoints import run_dir as run_dir_lib
from keypoints import train as train_lib
from keypoints import visualize
from keypoints import xla

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/pong.py",
    "Training config file (a Python file with get_config()); override fields with "
    "--config.<field>=<value>.")
_RUN_DIR = flags.DEFINE_string(
    "run_dir", None, "Run directory for config, metrics, pictures and checkpoints; "
    "an existing one is resumed.", required=True)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 for multi-host training.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of hosts in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This host's index in the job.")
_AUTO_DISTRIBUTED = flags.DEFINE_bool(
    "auto_distributed", False, "Join a multi-host job whose hosts JAX finds by itself (a TPU "
    "pod, a SLURM job, ...: jax.distributed.initialize() without arguments) instead of "
    "--coordinator_address / --num_processes / --process_id.")
_STEPS_PER_DISPATCH = flags.DEFINE_integer(
    "steps_per_dispatch", 0, "Training steps per jitted call (lax.scan; the same steps as one "
    "call each). 0: one on the CPU, where convolutions inside a loop run slowly, and on an "
    "accelerator the largest divisor of 50 that divides log_every, image_every and "
    "checkpoint_every; a number given must divide all three. Multi-host runs too: each "
    "process's pairs are drawn on its devices.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  harness.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                                 _AUTO_DISTRIBUTED.value)
  config = _CONFIG.value
  is_main = jax.process_index() == 0
  try:
    configs_lib.validate(config.model, config.train)
    harness.validate_cadence(config)
    parallel.check_batch_size(config.train.batch_size, parallel.data_mesh())
    chunk = harness.steps_per_dispatch(_STEPS_PER_DISPATCH.value, {
        f"config.{name}": int(config[name]) for name in ("log_every", "image_every",
                                                         "checkpoint_every")})
    train_set, heldout = data_lib.load_split(config.dataset.path, config.dataset.max_episodes,
                                             config.dataset.heldout_episodes)
    if tuple(train_set.frames.shape[1:3]) != tuple(config.model.image_size):
      raise ValueError(f"dataset frames are {train_set.frames.shape[1]}x"
                       f"{train_set.frames.shape[2]} but config.model.image_size is "
                       f"{tuple(config.model.image_size)}")
    pair_index = data_lib.make_pair_index(train_set.episode_lengths, config.train.min_offset,
                                          config.train.max_offset)
    # Only process 0 holds the lock: on a shared file system all hosts see one directory.
    with run_dir_lib.Lock(_RUN_DIR.value) if is_main else contextlib.nullcontext():
      run_dir = run_dir_lib.prepare(_RUN_DIR.value, config, write=is_main)
      train(config, run_dir, train_set, heldout, pair_index, is_main, chunk)
  except (ValueError, FileNotFoundError, FloatingPointError, parallel.ReplicaMismatch) as e:
    sys.exit(f"error: {e}")


def train(config, run_dir, train_set, heldout, pair_index, is_main, chunk) -> None:
  """Trains from the run directory's newest readable checkpoint (or from scratch) to
  config.train.num_steps, `chunk` steps per dispatch, logging, drawing and checkpointing on the
  config's cadence."""
  model = train_lib.build_model(config.model)
  tx = train_lib.build_optimizer(config.train)
  frame_mean = train_set.mean_frame() if config.model.centering == "mean_frame" else None
  state = train_lib.create_train_state(jax.random.PRNGKey(config.train.seed), model, tx,
                                       tuple(config.model.image_size), frame_mean)
  # Data parallel over every device of every process (keypoints/parallel.py): the state on
  # every device, each device a share of the batch. One device: the plain step.
  mesh = parallel.data_mesh()
  replicated = parallel.replicated(mesh)
  manager, restored_step, restored = run_dir_lib.restore_train_state(
      run_dir, jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                            jax.eval_shape(lambda: train_lib.checkpoint_pytree(state))))
  if restored is not None:
    state = state.replace(**restored)
  state = parallel.replicate(state, mesh)
  step = first_step = int(state.step)
  pixel_weights = train_lib.pixel_loss_weights(train_set, config.train)
  if pixel_weights is not None:
    pixel_weights = parallel.replicate(jnp.asarray(pixel_weights), mesh)
  # steps_fn(state, n) -> (state, metrics of each of the n steps, [n]).
  if jax.process_count() == 1:  # pairs drawn inside the step, from frames on every device
    common = dict(batch_size=config.train.batch_size, pixel_weights=pixel_weights,
                  batch_sharding=parallel.batch_sharding(mesh) if mesh.size > 1 else None)

    def one(state, frames, pair_index):
      state, metrics = train_lib.sample_and_train(state, frames, pair_index, **common)
      return state, jax.tree.map(lambda m: m[None], metrics)

    fused = {}  # one compiled function per dispatch length (the chunk; a shorter last one)

    def steps_fn(state, n):
      if n not in fused:
        fused[n] = xla.jit(one if n == 1 else functools.partial(
            train_lib.sample_and_train_steps, num_steps=n, **common), donate_argnums=0)
      return fused[n](state, frames, pair_index)

    frames = parallel.replicate(jnp.asarray(train_set.frames), mesh)
    pair_index = parallel.replicate(pair_index, mesh)
  else:  # each host draws its share of the pairs from its own episodes
    host_set = train_set.select_episodes(parallel.host_episodes(train_set.num_episodes))
    steps_fn = parallel.multihost_steps(
        mesh, host_set.frames, data_lib.make_pair_index(
            host_set.episode_lengths, config.train.min_offset, config.train.max_offset),
        config.train.batch_size, pixel_weights)
  # A fixed held-out batch for the held-out loss and the reconstruction picture, drawn from
  # the run's seed.
  heldout_key, eval_key, picture_key = jax.random.split(jax.random.fold_in(
      jax.random.PRNGKey(config.train.seed), 1), 3)
  heldout_index = data_lib.make_pair_index(heldout.episode_lengths, config.train.min_offset,
                                           config.train.max_offset)
  heldout_pairs = data_lib.sample_pairs(heldout_key, jnp.asarray(heldout.frames),
                                        heldout_index, 8)
  if pixel_weights is not None:  # the held-out loss in the training loss's units
    heldout_pairs["pixel_weights"] = pixel_weights
  heldout_pairs = parallel.replicate(heldout_pairs, mesh)
  gif_episode = heldout.frames[heldout.episode(0)][:config.gif_frames]
  eval_fn = xla.jit(train_lib.eval_loss)
  writer = harness.make_writer(run_dir, restored_step if restored is not None else None)
  # Pictures are drawn by process 0 alone, from its own copy of the parameters.
  local_variables = lambda: parallel.local_copy(train_lib.model_variables(state.params,
                                                                          state.batch_stats))
  detector = inference.Detector(model, local_variables())
  reconstruct = xla.jit(lambda variables, source, target: model.apply(
      variables, source, target, rngs={"warp": picture_key}))
  logging.info("Training %s/%s (%d params) on %d frames (%d episodes), from step %d to %d, "
               "%d step(s) per dispatch", config.model.model_type, config.model.arch,
               sum(x.size for x in jax.tree.leaves(state.params)),
               len(train_set.frames), train_set.num_episodes, step, config.train.num_steps,
               chunk)

  sums, count, losses = {}, 0, []
  saved_step = step

  def check_losses():
    bad = train_lib.first_non_finite(losses, step - sum(len(x) for x in losses) + 1)
    if bad is not None:
      raise run_dir_lib.NonFiniteError(
          f"the loss is {bad[1]} at step {bad[0]}: training diverged (learning rate "
          f"{config.train.learning_rate:g} too high?); nothing after step "
          f"{manager.latest_step() or 0} was saved")
    losses.clear()

  try:
    with harness.StopRequest() as stop, tqdm(total=config.train.num_steps, initial=step,
                                             desc="train", disable=not is_main) as bar:
      while step < config.train.num_steps and not stop.requested:
        # Up to the next multiple of the chunk (after a resume from a signal's checkpoint), and
        # never past the end.
        n = min(chunk - step % chunk, config.train.num_steps - step)
        state, metrics = steps_fn(state, n)
        step += n
        bar.update(n)
        losses.append(metrics["loss"])
        for k, v in metrics.items():
          sums[k] = sums.get(k, 0.0) + jnp.sum(v)
        count += n
        last = step == config.train.num_steps
        log = step % config.log_every == 0 or last
        save = step % config.checkpoint_every == 0
        if log or save:
          check_losses()
        if log:
          scalars = {k: float(v) / count for k, v in sums.items()}
          scalars["heldout_loss"] = float(eval_fn(state, heldout_pairs, eval_key))
          writer.write(step, scalars)
          bar.set_postfix(loss=f"{scalars['loss']:.5f}", heldout=f"{scalars['heldout_loss']:.5f}")
          sums, count = {}, 0
        if is_main and (step % config.image_every == 0 or last):
          visualize.write_training_pictures(run_dir / "images", step, detector.with_variables(
              local_variables()), reconstruct, gif_episode,
              parallel.local_copy(heldout_pairs))
        if save:
          parallel.check_replicas_agree(state.params, f"parameters at step {step}")
          run_dir_lib.save(manager, step, train_lib.checkpoint_pytree(state))
          saved_step = step
      if saved_step != step:  # the last step, or where a signal stopped the run
        check_losses()
        parallel.check_replicas_agree(state.params, f"parameters at step {step}")
        run_dir_lib.save(manager, step, train_lib.checkpoint_pytree(state))
  finally:
    manager.wait_until_finished()
    writer.close()
  logging.info("Stopped at step %d after %d steps in this process; run directory %s", step,
               step - first_step, run_dir)


if __name__ == "__main__":
  harness.run(main)
