"""Trains KeyQN, pixel DQN or KeyQN's RAM oracle on an Atari game (Atari-100k protocol); the
same --run_dir resumes.

  # a Transporter trained on the game's random-policy frames first (README main job):
  python -m experiments.train_agent --config.agent=keyqn --config.keypoint_run=runs/pong \\
      --run_dir=runs/keyqn_pong
  python -m experiments.train_agent --config.agent=pixel_dqn --run_dir=runs/dqn_pong
  # KeyQN's network on the objects read from RAM (no detector): what exact positions give
  python -m experiments.train_agent --config.agent=keyqn_ram --run_dir=runs/keyqn_ram_pong
  # three seeds as one population (one process, one batched update a step):
  python -m experiments.train_agent --config.num_seeds=3 ...

Writes into the run directory: config.json; metrics.csv + TensorBoard events (training scores,
loss, epsilon, steps/s, evaluation scores); Orbax checkpoints of the learner, the optimiser, the
replay buffer and the environments every `checkpoint_every` steps, at the end and on SIGTERM /
Ctrl-C, so that a killed run continues exactly where its last checkpoint stopped;
final_eval.json (raw scores of `final_eval_episodes` games per member at epsilon 0.001);
images/learning_curve.png and images/agent.gif (member 0 playing, keypoints drawn for KeyQN,
the RAM objects for keyqn_ram).
"""

from __future__ import annotations

import json
import math
import pathlib
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import harness
from keypoints import evaluation
from keypoints import parallel
from keypoints import run_dir as run_dir_lib
from keypoints import visualize
from rl import actors as actors_lib
from rl import agents
from rl import dqn
from rl import replay as replay_lib

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/agent.py",
    "Agent config file (a Python file with get_config()); override fields with "
    "--config.<field>=<value>.")
_RUN_DIR = flags.DEFINE_string(
    "run_dir", None, "Run directory for config, metrics, pictures, checkpoints and the final "
    "evaluation; an existing one is resumed.", required=True)

# What a restart may change: how long the run goes on and how it reports.
RESUMABLE_FIELDS = ("num_steps", "log_every", "checkpoint_every", "eval_every",
                    "eval_episodes", "final_eval_episodes", "eval_max_steps", "eval_games_at_once",
                    "video_steps")
EVAL_SEED_OFFSET = 1_000_000  # evaluation games never replay a training game's seed
FINAL_EVAL = "final_eval.json"
RECALL_THRESHOLD = 8.0  # raw pixels: the detector recall kept in final_eval.json


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = agents.with_agent_defaults(_CONFIG.value)
  harness.start_game_run(config, _RUN_DIR.value, RESUMABLE_FIELDS, agents.validate,
                         config.agent == "keyqn", train)


def evaluate(config, agent, learner: dqn.Population, episodes: int, index: int,
             record: list | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(raw scores, lengths in agent steps), each [N, episodes], at the evaluation epsilon on
  fresh environments, each member playing up to config.eval_games_at_once games side by side
  (one detector or Q-network call for all of them).

  `index` picks the games (evaluation i always plays the same seeds, never a training game's:
  0 is the final evaluation, i >= 1 the periodic ones; slot g of member m plays from seed
  config.seed + m + g * N + EVAL_SEED_OFFSET * (i + 1)); `record` collects the frames of member 0's
  slot 0 (and keypoints for KeyQN) for a video, while its games last."""
  n, at_once = config.num_seeds, min(config.eval_games_at_once, episodes)
  seeds = [s + g * n for s in harness.member_seeds(config, EVAL_SEED_OFFSET * (index + 1))
           for g in range(at_once)]  # member-major
  actors = actors_lib.Actors(config.env_id, seeds, agent.observer, config.history)
  keys = jax.vmap(jax.random.fold_in, (0, None))(learner.act_keys, index + 1)

  def policy(observation, step):
    observation = observation.reshape(n, at_once, *observation.shape[1:])
    return learner.act(observation, step, config.exploration.eval_epsilon, keys).reshape(-1)

  def on_step(acts, actions, playing):
    del actions
    if playing[0] and len(record) < config.video_steps:  # member 0's slot 0, while it plays
      frame = acts.frames[0]
      if frame.ndim == 1:  # keyqn_ram's RAM: the screen of the step's last emulator frame
        frame = acts.envs[0].unwrapped.ale.getScreenRGB()
      if frame.ndim == 2:  # pixel DQN's grey frames
        frame = np.repeat(frame[..., None], 3, axis=-1)
      if agent.name != "pixel_dqn":  # the record the policy is about to read: no detector call
        xy = agent.observer.pixels(acts.observation()[:1, -1])
        frame = visualize.overlay(frame[None], xy, scale=2)[0]
      record.append(frame)

  try:
    return actors_lib.evaluate(actors, policy, episodes, config.eval_max_steps,
                               on_step if record is not None else None, at_once,
                               desc="final evaluation" if index == 0 else f"evaluation {index}")
  finally:
    actors.close()


def plot_learning_curve(run_dir: pathlib.Path) -> None:
  """images/learning_curve.png from metrics.csv: training and evaluation scores."""
  plt = visualize.pyplot()
  path = run_dir / "metrics.csv"
  if not path.exists():
    return
  rows = np.genfromtxt(path, delimiter=",", names=True)
  rows = np.atleast_1d(rows)
  fig, ax = plt.subplots(figsize=(6, 3.5))
  for name, style in (("train_return", "-"), ("eval_return", "o-")):
    if name in rows.dtype.names:
      keep = np.isfinite(rows[name])
      label = name.replace("_", " ") + (" (mean over seeds)" if name == "eval_return" else "")
      ax.plot(rows["step"][keep], rows[name][keep], style, label=label)
  # Each seed's own evaluations, faint, so a population's spread shows (runs logged before
  # these columns existed have none).
  per_seed = [n for n in rows.dtype.names if n.startswith("eval_return_seed")]
  for i, name in enumerate(per_seed):
    keep = np.isfinite(rows[name])
    ax.plot(rows["step"][keep], rows[name][keep], ".:", color="tab:orange", alpha=0.45,
            label="eval return, each seed" if i == 0 else None)
  ax.set_xlabel("agent steps (per seed)")
  ax.set_ylabel("game score (raw)")
  ax.set_title(run_dir.name)
  ax.legend()
  fig.tight_layout()
  (run_dir / "images").mkdir(exist_ok=True)
  fig.savefig(run_dir / "images" / "learning_curve.png", dpi=100)
  plt.close(fig)


def train(config, run_dir: pathlib.Path, detector) -> None:
  """Trains from the newest readable checkpoint (or from scratch) to config.num_steps, then
  runs the final evaluation (once)."""
  n = config.num_seeds
  agent = agents.build(config.agent, config.env_id, detector, **config.network,
                       oracle_hidden=config.oracle_hidden, oracle_jitter=config.oracle_jitter)
  # Data parallel over every device JAX sees (one device: the plain update).
  learner = dqn.Population(config, agent.network, agent.observer, agent.convolutional,
                           mesh=parallel.data_mesh(jax.local_devices()))
  actors = actors_lib.Actors(config.env_id, harness.member_seeds(config), agent.observer,
                             config.history)
  replay = replay_lib.Replay(n, config.learner.replay_capacity, agent.observer.element_shape,
                             agent.observer.element_dtype, config.history,
                             config.learner.n_step, config.learner.discount)
  sample_rngs = [np.random.default_rng([s, 2]) for s in harness.member_seeds(config)]
  loop = harness.GameLoop(run_dir, config, config.agent)
  if loop.restored is not None:
    learner.state = learner.place(jax.tree.map(jnp.asarray, flax.serialization.from_state_dict(
        learner.state, loop.restored["learner"])))
    replay.load_state_dict(loop.restored["replay"])
    actors.load_state_dict(loop.restored["actors"])
    harness.load_rng_state(sample_rngs, loop.restored["sample_rngs"])
  epsilon = optax.linear_schedule(config.exploration.epsilon_start,
                                  config.exploration.epsilon_end,
                                  config.exploration.epsilon_decay_steps)
  logging.info("Training %s on %s, %d seed(s) from seed %d, from step %d to %d", config.agent,
               config.env_id, n, config.seed, loop.step, config.num_steps)

  def checkpoint_pytree():
    return {"learner": flax.serialization.to_state_dict(learner.state),
            "replay": replay.state_dict(), "actors": actors.state_dict(),
            "sample_rngs": harness.rng_state(sample_rngs), "step": np.int64(loop.step),
            "train_seconds": np.float64(loop.seconds())}

  scores, sums, count = [], {}, 0
  tick, tick_step = time.perf_counter(), loop.step

  def advance(made: int) -> None:
    nonlocal scores, sums, count, tick, tick_step
    eps = float(epsilon(made))
    actions = learner.act(actors.observation(), made, eps)
    transition, finished = actors.step(actions)
    replay.add(transition.element, transition.action, transition.reward,
               transition.terminal, transition.end)
    scores += [score for _, score, _ in finished]
    step = made + 1
    if step >= config.learner.min_replay and step % config.learner.update_period == 0:
      for _ in range(config.learner.updates_per_step):  # each on a batch of its own
        batch = replay.sample(sample_rngs, config.learner.batch_size)
        learner.state, metrics = learner.update(learner.state, vars(batch))
        for k, v in metrics.items():
          sums[k] = sums.get(k, 0.0) + v
        count += 1
    evaluate_now = config.eval_every > 0 and step % config.eval_every == 0
    if step % config.log_every == 0 or evaluate_now:
      now = time.perf_counter()
      row = {"train_return": float(np.mean(scores)) if scores else math.nan,
             "games": float(len(scores)), "epsilon": eps,
             # Agent steps per second of each seed, as benchmarks/agents.py counts them
             # (the population makes n times as many environment steps).
             "steps_per_s": (step - tick_step) / max(now - tick, 1e-9)}
      for k in ("loss", "q", "abs_td_error"):
        row[k] = float(np.mean(sums[k])) / count if count else math.nan
      if count and not math.isfinite(row["loss"]):
        raise run_dir_lib.NonFiniteError(
            f"the TD loss is {row['loss']} at step {step}: training diverged; nothing "
            f"after step {loop.manager.latest_step() or 0} was saved")
      # Every row has every column (metrics.csv's header is its first row's keys).
      row["eval_return"] = row["eval_return_std"] = math.nan
      row.update({f"eval_return_seed{s}": math.nan for s in harness.member_seeds(config)})
      if evaluate_now:
        eval_scores, _ = evaluate(config, agent, learner, config.eval_episodes,
                                  step // config.eval_every)
        means = per_member_means(eval_scores)
        row["eval_return"] = float(np.mean(means))
        row["eval_return_std"] = float(np.std(means))
        for s, m in zip(harness.member_seeds(config), means):
          row[f"eval_return_seed{s}"] = float(m)
      loop.writer.write(step, row)
      loop.bar.set_postfix(score=f"{row['train_return']:.1f}", eps=f"{eps:.2f}")
      scores, sums, count = [], {}, 0
      tick, tick_step = time.perf_counter(), step
      if evaluate_now:
        plot_learning_curve(run_dir)
    # After the step's evaluation, which scores the network that learned up to here.
    if dqn.reset_due(step, config.learner, config.num_steps):
      learner.state = learner.reset(learner.state, step // config.learner.reset_every)
      logging.info("Step %d: every seed's network drawn anew (learner.reset_every)", step)

  loop.run(advance, checkpoint_pytree, (actors,), FINAL_EVAL,
           lambda: final_evaluation(config, run_dir, agent, learner, loop.step, loop.seconds()))


def per_member_means(scores: np.ndarray) -> np.ndarray:
  """Each member's mean score over its finished games [N] (NaN where none finished)."""
  return np.array([row[np.isfinite(row)].mean() if np.isfinite(row).any() else math.nan
                   for row in scores])


def _finite_or_none(x) -> float | None:
  return float(x) if math.isfinite(float(x)) else None


def detector_recall(config, threshold: float) -> dict[str, float] | None:
  """KeyQN's detector's per-object recall on its held-out frames (a keypoint within
  `threshold` raw pixels), kept in final_eval.json so that the results table can show it after
  the detector's run directory is gone; None for pixel DQN or where it cannot be scored."""
  if config.agent != "keyqn" or not config.keypoint_run:
    return None
  try:
    return evaluation.run_recall(config.keypoint_run, threshold)
  except (ValueError, FileNotFoundError) as e:
    logging.warning("no detector recall for %s: %s", config.keypoint_run, e)
    return None


def final_evaluation(config, run_dir: pathlib.Path, agent, learner: dqn.Population, step: int,
                     seconds: float) -> None:
  """final_eval.json, the learning curve and the video of member 0."""
  start = time.perf_counter()
  frames: list[np.ndarray] = []
  scores, lengths = evaluate(config, agent, learner, config.final_eval_episodes, index=0,
                             record=frames if config.video_steps > 0 else None)
  per_member = per_member_means(scores)
  finished = lengths[np.isfinite(lengths)]
  result = {"agent": config.agent, "env_id": config.env_id, "step": step,
            "seeds": harness.member_seeds(config), "epsilon": config.exploration.eval_epsilon,
            "episodes_per_seed": int(np.isfinite(scores).sum(axis=1).min()),
            "scores": [[_finite_or_none(x) for x in row] for row in scores.tolist()],
            # agent steps of every game (4 emulator frames each)
            "lengths": [[_finite_or_none(x) for x in row] for row in lengths.tolist()],
            "mean_length": float(finished.mean()) if finished.size else None,
            "mean_per_seed": [_finite_or_none(x) for x in per_member.tolist()],
            "mean": _finite_or_none(np.mean(per_member)),
            "std_over_seeds": _finite_or_none(np.std(per_member)),
            "keypoint_run": config.keypoint_run or None,
            "detector_recall": detector_recall(config, RECALL_THRESHOLD),
            "detector_recall_threshold_raw_px": RECALL_THRESHOLD,
            "train_hours": seconds / 3600, "eval_seconds": time.perf_counter() - start}
  tmp = run_dir / (FINAL_EVAL + ".tmp")
  tmp.write_text(json.dumps(result, indent=2))
  tmp.rename(run_dir / FINAL_EVAL)
  plot_learning_curve(run_dir)
  if frames:
    (run_dir / "images").mkdir(exist_ok=True)
    visualize.write_gif(run_dir / "images" / "agent.gif", np.stack(frames), fps=15)
  logging.info("Final evaluation: %s +- %s over %d seed(s), %d games each", result["mean"],
               result["std_over_seeds"], len(per_member), result["episodes_per_seed"])


if __name__ == "__main__":
  harness.run(main)
