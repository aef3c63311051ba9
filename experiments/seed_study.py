"""Trains one config under several seeds in one process and scores each seed's keypoints.

  python -m experiments.seed_study --config=experiments/configs/pong.py --seeds=0,1,2,3,4 \
      --out=runs/seeds_pong.json [--config.model.num_keypoints=8 ...]

The quick robustness check of a recipe on an accelerator: every seed runs the training binary's
steps (`keypoints.train.sample_and_train`, the same initialisation from `config.train.seed`),
`--steps_per_dispatch` of them per call (one compile serves every seed), then its detector is
scored on the held-out episodes against the object ground truth (per-object recall within
`--threshold` raw-frame pixels, as `experiments.eval_tracking` does). No run directory, no
checkpoints: for runs you keep, use `launch.sweep` over `experiments.train_transporter` and
`experiments.eval_tracking --sweep_dir`. Writes a JSON with, per seed, the per-object recall,
the wall time, the loss / keypoint-spread curves and the tracking metrics of
`experiments.eval_tracking` (precision and recall per `--horizons`, track length, switches);
prints one line per seed and, at the end, the tracking table of the seeds' mean and std (as
`eval_tracking` prints for runs given one label). Any model type of the training binary
trains here (`--config.model.model_type=jakab`, ...).
"""

from __future__ import annotations

import functools
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import harness

from keypoints import configs as configs_lib
from keypoints import data as data_lib
from keypoints import evaluation
from keypoints import inference
from keypoints import train as train_lib
from keypoints import xla

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/pong.py", "Training config file; override fields with "
    "--config.<field>=<value> (config.train.seed is replaced by each of --seeds).")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "Seeds to train, one after another.")
_OUT = flags.DEFINE_string("out", None, "JSON file for the results (rewritten after every seed).",
                           required=True)
_NAME = flags.DEFINE_string("name", None, "Label stored in the JSON (default: the file's stem).")
_STEPS_PER_DISPATCH = flags.DEFINE_integer(
    "steps_per_dispatch", 0, "Training steps per jitted call (lax.scan); 0: 1 on the CPU, where "
    "convolutions in a loop run slowly, else the largest divisor of 50 that divides num_steps.")
_LOG_EVERY = flags.DEFINE_integer("log_every", 50, "Record loss and spread every this many "
                                  "steps (rounded up to whole dispatches).")
_THRESHOLD = flags.DEFINE_float("threshold", 8.0, "A keypoint is on an object within this many "
                                "pixels of the raw frame.")
_HORIZONS = flags.DEFINE_list(
    "horizons", ["0", "1", "2", "5", "10", "20", "50", "100"],
    "Horizons (frames since a sequence's start) of the tracking metrics, as eval_tracking's.")


def train_seed(config, seed: int, model, tx, frame_mean, frames, pair_index, step_fn,
               chunk: int, log_every: int):
  """Trains one seed from scratch; returns (state, curves)."""
  state = train_lib.create_train_state(jax.random.PRNGKey(seed), model, tx,
                                       tuple(config.model.image_size), frame_mean)
  curves = {"step": [], "loss": [], "keypoint_spread": []}
  step = 0
  while step < config.train.num_steps:
    state, metrics = step_fn(state, frames, pair_index)
    step += chunk
    if step % log_every < chunk or step >= config.train.num_steps:
      loss = float(np.mean(metrics["loss"]))  # over the dispatch's steps
      if not np.isfinite(loss):
        raise FloatingPointError(f"seed {seed}: the loss is {loss} at step {step}")
      curves["step"].append(step)
      curves["loss"].append(loss)
      curves["keypoint_spread"].append(float(np.mean(metrics["keypoint_spread"])))
  return state, curves


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  try:
    seeds = [int(s) for s in _SEEDS.value]
    horizons = [int(h) for h in _HORIZONS.value]
    if min(horizons) < 0:
      raise ValueError(f"horizons must be >= 0, got {horizons}")
    configs_lib.validate(config.model, config.train)
    train_set, heldout = data_lib.load_split(config.dataset.path, config.dataset.max_episodes,
                                             config.dataset.heldout_episodes)
    chunk = harness.steps_per_dispatch(_STEPS_PER_DISPATCH.value,
                                       {"config.train.num_steps": config.train.num_steps})
  except (ValueError, data_lib.DatasetError) as e:
    sys.exit(f"error: {e}")

  weights = train_lib.pixel_loss_weights(train_set, config.train)
  weights = None if weights is None else jnp.asarray(weights)
  if chunk == 1:
    fn = functools.partial(train_lib.sample_and_train, batch_size=config.train.batch_size,
                           pixel_weights=weights)
  else:
    fn = functools.partial(train_lib.sample_and_train_steps, batch_size=config.train.batch_size,
                           num_steps=chunk, pixel_weights=weights)
  step_fn = xla.jit(fn, donate_argnums=0)
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  summary = {"name": _NAME.value or out.stem, "backend": jax.default_backend(),
             "device": str(jax.devices()[0].device_kind), "config": config.to_dict(),
             "threshold_raw_px": _THRESHOLD.value, "steps_per_dispatch": chunk, "seeds": []}
  # Built once: the jitted step is compiled for these objects and serves every seed.
  model = train_lib.build_model(config.model)
  tx = train_lib.build_optimizer(config.train)
  frame_mean = train_set.mean_frame() if config.model.centering == "mean_frame" else None
  frames = jnp.asarray(train_set.frames)
  pair_index = data_lib.make_pair_index(train_set.episode_lengths, config.train.min_offset,
                                        config.train.max_offset)
  for seed in seeds:
    start = time.perf_counter()
    state, curves = train_seed(config, seed, model, tx, frame_mean, frames, pair_index, step_fn,
                               chunk, _LOG_EVERY.value)
    seconds = time.perf_counter() - start
    detector = inference.Detector(model, train_lib.model_variables(state.params,
                                                                   state.batch_stats))
    scores = evaluation.score_heldout(detector, heldout, _THRESHOLD.value)
    recall = scores.recall_by_object()
    tracking = evaluation.tracking_result(config.model.model_type, None, config, scores,
                                          heldout, _THRESHOLD.value, horizons)
    summary["seeds"].append({"seed": seed, "per_object_recall": recall,
                             "min_recall": float(min(recall.values())),
                             "train_seconds": seconds, **curves, "tracking": tracking})
    out.write_text(json.dumps(summary, indent=1))
    print(f"{summary['name']} seed {seed}: " + ", ".join(f"{n} {r:.2f}" for n, r in
                                                         recall.items())
          + f"; final loss {curves['loss'][-1]:.2e}, spread {curves['keypoint_spread'][-1]:.2f}, "
          f"{seconds:.0f} s", flush=True)
  print(evaluation.tracking_table(
      evaluation.group_seeds([s["tracking"] for s in summary["seeds"]]), horizons))
  hits = sum(s["min_recall"] >= 0.9 for s in summary["seeds"])
  print(f"{summary['name']}: {hits} of {len(seeds)} seeds put a keypoint on every object in "
        f">= 90% of held-out frames", flush=True)


if __name__ == "__main__":
  harness.run(main)
