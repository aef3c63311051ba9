"""Explores an Atari game with no extrinsic reward, by controlling keypoints (rl.options) or by
random actions; the same --run_dir resumes.

  # a Transporter trained on the game's random-policy frames first (README main job):
  python -m experiments.explore --config.keypoint_run=runs/montezuma \\
      --run_dir=runs/explore_montezuma
  # the baseline: random actions, same protocol and budget:
  python -m experiments.explore --config.explorer=random --run_dir=runs/random_montezuma

Every agent step follows the Atari-100k protocol of rl.atari (a lost life is terminal for
learning; a game over resets). The keypoint explorer acts at random for the first
`learner.min_replay` steps, then follows options (a keypoint and a direction, for
`options.length` steps) chosen among its most controllable keypoints (Q_gap).

Writes into the run directory: config.json; metrics.csv + TensorBoard events (coverage: distinct
player positions, Montezuma's rooms and cells; extrinsic return found; the heads' TD loss and
Q_gap); Orbax checkpoints of the heads, the optimiser, the replay, the environments and the
coverage every `checkpoint_every` steps, at the end and on SIGTERM / Ctrl-C; at the end
explore.json (each member's counts and the wall time), images/coverage.png (counts against
steps), images/visited.png (a heat map of the player's positions) and, for the keypoint
explorer, images/options.gif (options being carried out, the chosen keypoint drawn).
"""

from __future__ import annotations

import json
import pathlib
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import harness
from keypoints import visualize
from rl import actors as actors_lib
from rl import agents
from rl import exploration
from rl import networks
from rl import options
from rl import replay as replay_lib

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/explore.py",
    "Exploration config file (a Python file with get_config()); override fields with "
    "--config.<field>=<value>.")
_RUN_DIR = flags.DEFINE_string(
    "run_dir", None, "Run directory for config, metrics, pictures and checkpoints; an existing "
    "one is resumed.", required=True)

RESUMABLE_FIELDS = ("num_steps", "log_every", "checkpoint_every", "video_steps")
DEMO_SEED_OFFSET = 1_000_000  # the options video plays a game no member explored
SUMMARY = exploration.SUMMARY


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  harness.start_game_run(config, _RUN_DIR.value, RESUMABLE_FIELDS, options.validate_config,
                         config.explorer == "keypoints", explore)


class Explorer:
  """What acts: random actions, or (after warm-up) options of the K x 4 heads."""

  def __init__(self, config, detector):
    self.config = config
    n = config.num_seeds
    self.num_actions = actors_lib.num_actions(config.env_id)
    self.action_rngs = [np.random.default_rng([s, 3]) for s in harness.member_seeds(config)]
    self.learners = self.replay = None
    if detector is None:  # random: the cheapest observation, nothing learned
      self.observer = agents.PixelObserver(actors_lib.observation_shape(config.env_id, "grey"))
      return
    self.observer = agents.KeypointObserver(
        detector, actors_lib.observation_shape(config.env_id, "colour"))
    self.num_keypoints = self.observer.element_shape[0]
    network = networks.KeypointQNetwork(self.num_actions, tuple(config.network.embed_sizes),
                                        tuple(config.network.hidden_sizes))
    self.learners = options.OptionLearners(config, network, self.observer, self.num_keypoints)
    self.replay = replay_lib.Replay(n, config.learner.replay_capacity,
                                    self.observer.element_shape, self.observer.element_dtype,
                                    config.history, 1, config.learner.discount)
    self.clock = options.OptionClock.create(n)
    self.gap = np.zeros((n, self.num_keypoints), np.float32)
    self.sample_rngs = [np.random.default_rng([s, 2]) for s in harness.member_seeds(config)]

  def learning(self, step: int) -> bool:
    return self.learners is not None and step >= self.config.learner.min_replay

  def act(self, observation: np.ndarray, step: int) -> np.ndarray:
    if not self.learning(step):
      return np.array([rng.integers(self.num_actions) for rng in self.action_rngs], np.int32)
    actions, self._heads, self.gap = self.learners.act(
        observation, self.clock.head, self.clock.due(), step, self.config.options.epsilon)
    return actions

  def observe(self, step: int, transition: actors_lib.Transition) -> dict[str, float]:
    """Stores the step, moves the option clock and updates the heads when due; returns the
    update's metrics (empty when there was none)."""
    if self.learners is None:
      return {}
    self.replay.add(transition.element, transition.action, transition.reward,
                    transition.terminal, transition.end)
    if self.learning(step):
      self.clock = self.clock.advance(self._heads, self.config.options.length, transition.end)
    if not self.learning(step) or (step + 1) % self.config.learner.update_period:
      return {}
    batch = self.replay.sample(self.sample_rngs, self.config.learner.batch_size)
    self.learners.state, metrics = self.learners.update(self.learners.state, vars(batch))
    return {k: float(np.mean(v)) for k, v in metrics.items()}

  def state_dict(self) -> dict:
    state = {"action_rngs": harness.rng_state(self.action_rngs)}
    if self.learners is not None:
      state.update(learners=flax.serialization.to_state_dict(self.learners.state),
                   replay=self.replay.state_dict(),
                   sample_rngs=harness.rng_state(self.sample_rngs),
                   clock={"head": self.clock.head, "steps_left": self.clock.steps_left})
    return state

  def load_state_dict(self, state: dict) -> None:
    harness.load_rng_state(self.action_rngs, state["action_rngs"])
    if self.learners is not None:
      self.learners.state = jax.tree.map(jnp.asarray, flax.serialization.from_state_dict(
          self.learners.state, state["learners"]))
      self.replay.load_state_dict(state["replay"])
      harness.load_rng_state(self.sample_rngs, state["sample_rngs"])
      self.clock = options.OptionClock(np.asarray(state["clock"]["head"], np.int32),
                                       np.asarray(state["clock"]["steps_left"], np.int32))


def explore(config, run_dir: pathlib.Path, detector) -> None:
  """Explores from the newest readable checkpoint (or from the start) to config.num_steps, then
  writes the summary and pictures (once)."""
  n = config.num_seeds
  explorer = Explorer(config, detector)
  actors = actors_lib.Actors(config.env_id, harness.member_seeds(config), explorer.observer,
                             config.history)
  coverage = exploration.Coverage(config.env_id, n, config.coverage_bin)
  coverage.update(actors.ram())
  # Extrinsic return found (never learned from): raw reward summed over all steps, the best
  # finished game (meaningful once games > 0) and the number of finished games.
  found = {"reward": np.zeros(n), "best_game": np.zeros(n), "games": np.zeros(n)}
  loop = harness.GameLoop(run_dir, config, config.explorer)
  if loop.restored is not None:
    explorer.load_state_dict(loop.restored["explorer"])
    actors.load_state_dict(loop.restored["actors"])
    coverage.load_state_dict(loop.restored["coverage"])
    found = {k: np.asarray(v, np.float64).copy() for k, v in loop.restored["found"].items()}
  logging.info("Exploring %s with the %s explorer, %d seed(s) from seed %d, from step %d to %d",
               config.env_id, config.explorer, n, config.seed, loop.step, config.num_steps)

  def checkpoint_pytree():
    return {"explorer": explorer.state_dict(), "actors": actors.state_dict(),
            "coverage": coverage.state_dict(), "found": found, "step": np.int64(loop.step),
            "train_seconds": np.float64(loop.seconds())}

  sums, count = {}, 0
  tick, tick_step = time.perf_counter(), loop.step

  def advance(made: int) -> None:
    nonlocal sums, count, tick, tick_step
    actions = explorer.act(actors.observation(), made)
    transition, finished = actors.step(actions)
    coverage.update(actors.ram())
    found["reward"] += transition.raw_reward
    for member, score, _ in finished:
      best = found["best_game"][member]
      found["best_game"][member] = score if found["games"][member] == 0 else max(best, score)
      found["games"][member] += 1
    metrics = explorer.observe(made, transition)
    for k, v in metrics.items():
      sums[k] = sums.get(k, 0.0) + v
    count += bool(metrics)
    step = made + 1
    if step % config.log_every == 0 or step == config.num_steps:
      now = time.perf_counter()
      row = {k: float(np.mean(v)) for k, v in coverage.counts().items()}
      row.update(reward_found=float(found["reward"].mean()),
                 games=float(found["games"].mean()),
                 steps_per_s=(step - tick_step) / max(now - tick, 1e-9))
      for k in ("loss", "q"):
        row[k] = sums[k] / count if count and k in sums else float("nan")
      row["max_q_gap"] = float(explorer.gap.max(axis=1).mean()) if explorer.learners \
          else float("nan")
      loop.writer.write(step, row)
      loop.bar.set_postfix({k: f"{row[k]:.0f}" for k in ("positions", "rooms", "cells")
                            if k in row})
      sums, count, tick, tick_step = {}, 0, now, step

  loop.run(advance, checkpoint_pytree, (actors,), SUMMARY,
           lambda: finish(config, run_dir, explorer, coverage, found, loop.step, loop.seconds()))


def finish(config, run_dir: pathlib.Path, explorer: Explorer, coverage, found, step: int,
           seconds: float) -> None:
  """explore.json, the coverage curves, the heat map and (keypoint explorer) the options GIF."""
  counts = coverage.counts()
  summary = {"explorer": config.explorer, "env_id": config.env_id, "step": step,
             "seeds": harness.member_seeds(config), "keypoint_run": config.keypoint_run or None,
             **{k: v.tolist() for k, v in counts.items()},
             **{f"mean_{k}": float(np.mean(v)) for k, v in counts.items()},
             "reward_found": found["reward"].tolist(), "games": found["games"].tolist(),
             "best_game": [float(b) if g else None for b, g in zip(found["best_game"],
                                                                   found["games"])],
             "hours": seconds / 3600}
  images = run_dir / "images"
  images.mkdir(exist_ok=True)
  plot_coverage(run_dir)
  if coverage.has_player:
    plot_visits(images / "visited.png", coverage.visits.sum(0), config)
  if explorer.learners is not None and config.video_steps > 0:
    visualize.write_gif(images / "options.gif", options_video(config, explorer), fps=15)
  tmp = run_dir / (SUMMARY + ".tmp")
  tmp.write_text(json.dumps(summary, indent=2))
  tmp.rename(run_dir / SUMMARY)
  logging.info("Explored %d steps: %s", step, {k: summary[f"mean_{k}"] for k in counts})


def options_video(config, explorer: Explorer) -> np.ndarray:
  """Member 0 carrying out options in a fresh game: the chosen keypoint ringed, its direction
  written above the frame."""
  actors = actors_lib.Actors(config.env_id, harness.member_seeds(config, DEMO_SEED_OFFSET),
                             explorer.observer, config.history)
  clock = options.OptionClock.create(config.num_seeds)
  frames = []
  try:
    for step in range(config.video_steps):
      observation = actors.observation()
      actions, heads, _ = explorer.learners.act(observation, clock.head, clock.due(), step,
                                                config.options.epsilon)
      keypoint, direction = divmod(int(heads[0]), len(options.DIRECTIONS))
      xy = np.full((1, explorer.num_keypoints, 2), np.nan, np.float32)
      xy[0, keypoint] = explorer.observer.pixels(observation[0, -1])[keypoint]
      frame = visualize.overlay(actors.frames[:1], xy, scale=2, radius=4)
      frames.append(visualize.label(frame, f"keypoint {keypoint} "
                                           f"{options.DIRECTIONS[direction]}")[0])
      transition, _ = actors.step(actions)
      clock = clock.advance(heads, config.options.length, transition.end)
  finally:
    actors.close()
  return np.stack(frames)


def plot_coverage(run_dir: pathlib.Path) -> None:
  """images/coverage.png from metrics.csv: the coverage counts against agent steps."""
  plt = visualize.pyplot()
  rows = np.atleast_1d(np.genfromtxt(run_dir / "metrics.csv", delimiter=",", names=True))
  names = [k for k in ("positions", "cells", "rooms") if k in rows.dtype.names]
  fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
  for ax, name in zip(axes[0], names):
    ax.plot(rows["step"], rows[name])
    ax.set_xlabel("agent steps (per seed)")
    ax.set_ylabel(f"distinct {name}")
  fig.suptitle(run_dir.name)
  fig.tight_layout()
  fig.savefig(run_dir / "images" / "coverage.png", dpi=100)
  plt.close(fig)


def plot_visits(path: pathlib.Path, visits: np.ndarray, config) -> None:
  """A heat map of the player's binned screen positions (log visit counts)."""
  plt = visualize.pyplot()
  fig, ax = plt.subplots(figsize=(4, 5))
  shown = np.where(visits > 0, np.log10(np.maximum(visits, 1)), np.nan)
  image = ax.imshow(shown, cmap="viridis", extent=(0, visits.shape[1] * config.coverage_bin,
                                                   visits.shape[0] * config.coverage_bin, 0))
  fig.colorbar(image, ax=ax, label="log10 visits")
  ax.set_title(f"{config.env_id}: player positions\n({config.explorer} explorer, "
               f"{int((visits > 0).sum())} bins)", fontsize=9)
  ax.set_xlabel("x (raw pixels)")
  ax.set_ylabel("y (raw pixels)")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


if __name__ == "__main__":
  harness.run(main)
