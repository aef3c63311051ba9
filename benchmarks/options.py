"""The keypoint-options learner on this machine: one vmapped update of all K x 4 heads against a
Python loop of K x 4 single-head updates, and the explorer's acting cost.

  python -m benchmarks.options                     # K = 8 and 16, the explore config's heads
  python -m benchmarks.options --keypoints=8 --json_out=docs/benchmark_options_cpu.json

Per row (median over --steps calls, after a warm-up): "vmapped_ms", one jitted call updating
every head (`rl.options.heads_update`, the intrinsic rewards computed inside); "loop_ms", 4K
calls of the jitted single-head `rl.dqn.update` (each head's rewards precomputed, the heads'
states already split), as a Python loop over heads would do; their ratio; and "act_ms", one
call that evaluates every head on one observation, picks options from Q_gap and acts (what
the explorer does each agent step besides the detector and the game).
"""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags

from benchmarks import timing
from experiments.configs import explore as explore_config
from keypoints import xla
from rl import dqn
from rl import networks
from rl import options

_KEYPOINTS = flags.DEFINE_list("keypoints", ["8", "16"], "Numbers of keypoints K to time.")
_FEATURES = flags.DEFINE_integer("features", 32, "Detector features per keypoint (the main "
                                 "job's Phi has 32).")
_ACTIONS = flags.DEFINE_integer("num_actions", 18, "Actions (Montezuma's Revenge has 18).")
_STEPS = flags.DEFINE_integer("steps", 30, "Timed calls per measurement (after a warm-up).")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write the rows to this JSON file.")


class _Observer:
  def __init__(self, k: int, features: int):
    self.element_shape, self.element_dtype = (k, 2 + features), np.float32


def time_heads(k: int, steps: int) -> dict:
  config = explore_config.get_config()
  network = networks.KeypointQNetwork(_ACTIONS.value, tuple(config.network.embed_sizes),
                                      tuple(config.network.hidden_sizes))
  observer = _Observer(k, _FEATURES.value)
  learners = options.OptionLearners(config, network, observer, k)
  b, h = config.learner.batch_size, config.history
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  shape = (1, b, h, *observer.element_shape)
  batch = {"observation": jax.random.uniform(keys[0], shape, minval=-1),
           "next_observation": jax.random.uniform(keys[1], shape, minval=-1),
           "action": jax.random.randint(keys[2], (1, b), 0, _ACTIONS.value),
           "reward": jnp.zeros((1, b)), "discount": jnp.full((1, b), config.learner.discount)}
  state = [learners.state]

  def vmapped():
    state[0], metrics = learners.update(state[0], batch)
    jax.block_until_ready(metrics)

  one = xla.jit(functools.partial(
      dqn.update, apply=network.apply, optimizer=learners.optimizer,
      double=config.learner.double, loss_kind=config.learner.loss,
      target_update_period=config.learner.target_update_period), convolutional=False,
      donate_argnums=0)
  member = {name: value[0] for name, value in batch.items()}
  rewards = options.head_rewards(member)
  heads = [jax.tree.map(lambda x, i=i: jnp.copy(x[0, i]), learners.state)
           for i in range(learners.num_heads)]

  def loop():
    for i in range(learners.num_heads):
      heads[i], metrics = one(heads[i], {**member, "reward": rewards[i]})
    jax.block_until_ready(metrics)

  observation = np.asarray(batch["observation"][:, 0])
  clock = options.OptionClock.create(1)
  parts = {"vmapped_ms": timing.median_ms(vmapped, steps),
           "loop_ms": timing.median_ms(loop, steps)}
  learners.state = state[0]  # the updates donated the one it was built with
  parts["act_ms"] = timing.median_ms(
      lambda: learners.act(observation, clock.head, clock.due(), 0, 0.1), steps)
  return {"keypoints": k, "heads": learners.num_heads, **{n: round(v, 3) for n, v in
                                                           parts.items()},
          "loop_over_vmapped": round(parts["loop_ms"] / parts["vmapped_ms"], 2),
          "backend": jax.default_backend()}


def main(argv):
  del argv
  rows = []
  print(f"{'K':>3s} {'heads':>6s} {'vmapped ms':>11s} {'loop ms':>9s} {'ratio':>6s} "
        f"{'act ms':>7s}")
  for k in _KEYPOINTS.value:
    row = time_heads(int(k), _STEPS.value)
    rows.append(row)
    print(f"{row['keypoints']:3d} {row['heads']:6d} {row['vmapped_ms']:11.2f} "
          f"{row['loop_ms']:9.2f} {row['loop_over_vmapped']:6.2f} {row['act_ms']:7.2f}",
          flush=True)
  if _JSON_OUT.value:
    with open(_JSON_OUT.value, "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  app.run(main)
