"""Agent throughput on this machine: where the time of one agent step goes, and the projected
wall time of a 100k-step run, for KeyQN and pixel DQN, one seed and a population.

  python -m benchmarks.agents                        # Pong, keyqn and pixel_dqn, 1 and 5 seeds
  python -m benchmarks.agents --seeds=1,3 --agents=keyqn --keypoint_run=runs/pong
  python -m benchmarks.agents --agents=keyqn --use_features   # KeyQN reading features too

Each row times, per agent step of the whole population (median over --steps steps, after a
warm-up): the environments (N games, 4 emulator frames each), the observer (KeyQN: one batched
detector call on the N raw frames), acting (one vmapped Q-network call), replay sampling (one
batch per member) and the update (one vmapped double-DQN step, batch 32). The sum is an agent
step with one update, as the default config trains; "steps_per_s" counts agent steps of each
member (so 5 seeds at 100 steps/s means 500 environment steps a second); "hours_100k" is
100,000 such steps. "update_gflop" / "observe_gflop" are XLA's FLOP counts of the update
and of the detector call, "update_gflops" / "observe_gflops" what they achieve in the measured
time, to set against the "ceiling/matmul" row (a 2048^3 float32 matmul on this machine): a
population whose calls run near the ceiling is compute-bound, and its members cost their FLOPs.
Without --keypoint_run KeyQN reads an untrained detector of the main job's
size (the compute is the same).

Evaluation rows ("eval_g<G>"): one evaluation step with every member playing G games side by
side (the config's eval_games_at_once), environments, observer and acting together;
"eval_steps_per_s" counts agent steps of each member's games (G per evaluation step), so
G = 10 at the same speed as G = 1 would be ten times the evaluation throughput.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags


from benchmarks import timing
from experiments.configs import agent as agent_config
from experiments.configs import pong as pong_config
from keypoints import inference
from keypoints import train as train_lib
from rl import actors as actors_lib
from rl import agents
from rl import dqn
from rl import replay as replay_lib

_AGENTS = flags.DEFINE_list("agents", ["keyqn", "pixel_dqn"], "Agents to time.")
_SEEDS = flags.DEFINE_list("seeds", ["1", "5"], "Population sizes to time.")
_GAME = flags.DEFINE_string("env_id", "ALE/Pong-v5", "Game (an ALE id, or catch).")
_STEPS = flags.DEFINE_integer("steps", 50, "Timed agent steps per row (after a warm-up).")
_KEYPOINT_RUN = flags.DEFINE_string("keypoint_run", None,
                                    "A Transporter run for KeyQN (default: an untrained one).")
_EVAL_GAMES = flags.DEFINE_list("eval_games", ["1", "10"], "Games per member side by side "
                                "to time evaluation steps with (none: no evaluation rows).")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write the rows to this JSON file.")
_USE_FEATURES = flags.DEFINE_bool(
    "use_features", False, "KeyQN rows: False times KeyQN's default, the keypoints' positions "
    "alone (the detector runs Psi alone; rows 'keyqn/...'); --use_features times records of "
    "positions and the detector's features (its first settings; rows 'keyqn_features/...').")


def _detector():
  if _KEYPOINT_RUN.value:
    return inference.load_detector(_KEYPOINT_RUN.value)
  model_config = pong_config.get_config().model
  model = train_lib.build_model(model_config)
  size = tuple(model_config.image_size)
  frame = jnp.zeros((1, *size, 3), jnp.uint8)
  variables = model.init({"params": jax.random.PRNGKey(0), "warp": jax.random.PRNGKey(0)},
                         frame, frame)
  return inference.Detector(model, train_lib.model_variables(
      variables["params"], variables.get("batch_stats", {})))


def _setup(name: str, num_seeds: int, games: int = 1):
  """(config, agent, learner, actors) of an N-seed population, each member with `games`
  environments."""
  config = agent_config.get_config()
  config.update(dict(agent=name, env_id=_GAME.value, num_seeds=num_seeds))
  if name == "keyqn":
    config.network.use_features = _USE_FEATURES.value
  config = agents.with_agent_defaults(config)
  agent = agents.build(name, config.env_id, _detector() if name == "keyqn" else None,
                       **config.network)
  learner = dqn.Population(config, agent.network, agent.observer, agent.convolutional)
  actors = actors_lib.Actors(config.env_id, list(range(num_seeds * games)), agent.observer,
                             config.history)
  return config, agent, learner, actors


def _row_name(name: str) -> str:
  """The agent's name in row names: KeyQN reading the features too is "keyqn_features"."""
  return "keyqn_features" if name == "keyqn" and _USE_FEATURES.value else name


def time_agent(name: str, num_seeds: int, steps: int) -> dict:
  config, agent, learner, actors = _setup(name, num_seeds)
  replay = replay_lib.Replay(num_seeds, 2000, agent.observer.element_shape,
                             agent.observer.element_dtype, config.history,
                             config.learner.n_step, config.learner.discount)
  rng = np.random.default_rng(0)
  rngs = [np.random.default_rng(s) for s in range(num_seeds)]
  num_actions = int(agent.network.num_actions)

  def random_step():
    transition, _ = actors.step(rng.integers(num_actions, size=num_seeds))
    replay.add(transition.element, transition.action, transition.reward, transition.terminal,
               transition.end)

  for _ in range(200):  # enough replay to sample from
    random_step()
  frames = actors.frames

  def env_only():
    for env in actors.envs:
      _, _, term, trunc, _ = env.step(int(rng.integers(num_actions)))
      if term or trunc:
        env.reset()

  batch = [replay.sample(rngs, config.learner.batch_size)]

  def update():
    learner.state, metrics = learner.update(learner.state, vars(batch[0]))
    jax.block_until_ready(metrics)

  parts = {
      "env_ms": timing.median_ms(env_only, steps),
      "observe_ms": timing.median_ms(lambda: agent.observer(frames), steps),
      "act_ms": timing.median_ms(lambda: learner.act(actors.observation(), 0, 0.01), steps),
      "sample_ms": timing.median_ms(lambda: batch.__setitem__(0, replay.sample(
          rngs, config.learner.batch_size)), steps),
      "update_ms": timing.median_ms(update, steps),
  }
  # XLA's FLOP counts of the two compiled calls that do arithmetic: the population's update
  # and KeyQN's detector call (pixel DQN's observer only hands on preprocessed frames).
  update_gflop = timing.xla_flops(learner.update.lower(learner.state, vars(batch[0]))) / 1e9
  detector = getattr(agent.observer, "detector", None)
  observe_gflop = None if detector is None else timing.xla_flops(
      detector.lower(frames, features=agent.observer.use_features)) / 1e9
  actors.close()
  total = sum(parts.values())
  return {"name": f"{_row_name(name)}/{_GAME.value}/seeds{num_seeds}",
          # What one replay element holds: frames, or keypoint records [K, 2 (+ C)].
          "element_shape": list(agent.observer.element_shape),
          **{k: round(v, 3) for k, v in parts.items()},
          "step_ms": round(total, 3), "steps_per_s": round(1e3 / total, 1),
          "hours_100k": round(100_000 * total / 1e3 / 3600, 2),
          "update_gflop": round(update_gflop, 4),
          "update_gflops": round(update_gflop / parts["update_ms"] * 1e3, 1),
          "observe_gflop": None if observe_gflop is None else round(observe_gflop, 4),
          "observe_gflops": None if observe_gflop is None else round(
              observe_gflop / parts["observe_ms"] * 1e3, 1)}


def time_evaluation(name: str, num_seeds: int, games: int, steps: int) -> dict:
  """One evaluation step of N members with `games` games each, at the evaluation epsilon."""
  config, _, learner, actors = _setup(name, num_seeds, games)

  def step():
    observation = actors.observation()
    actions = learner.act(observation.reshape(num_seeds, games, *observation.shape[1:]), 0,
                          config.exploration.eval_epsilon)
    actors.step(actions.reshape(-1))

  ms = timing.median_ms(step, steps)
  actors.close()
  return {"name": f"{_row_name(name)}/{_GAME.value}/seeds{num_seeds}/eval_g{games}",
          "eval_step_ms": round(ms, 3), "eval_steps_per_s": round(1e3 * games / ms, 1)}


def main(argv):
  del argv
  rows = [{"name": "ceiling/matmul", "gflops": round(timing.matmul_ceiling_gflops(), 1)}]
  print(f"ceiling: a 2048^3 float32 matmul at {rows[0]['gflops']:.1f} GFLOP/s")
  print(f"{'row':34s} {'env':>7s} {'observe':>8s} {'act':>6s} {'sample':>7s} {'update':>7s} "
        f"{'step ms':>8s} {'steps/s':>8s} {'h/100k':>7s} {'upd GFLOP/s':>11s} "
        f"{'obs GFLOP/s':>11s}")
  for name in _AGENTS.value:
    for seeds in _SEEDS.value:
      row = time_agent(name, int(seeds), _STEPS.value)
      rows.append(row)
      print(f"{row['name']:34s} {row['env_ms']:7.2f} {row['observe_ms']:8.2f} "
            f"{row['act_ms']:6.2f} {row['sample_ms']:7.2f} {row['update_ms']:7.2f} "
            f"{row['step_ms']:8.2f} {row['steps_per_s']:8.1f} {row['hours_100k']:7.2f} "
            f"{row['update_gflops']:11.1f} "
            f"{'-' if row['observe_gflops'] is None else row['observe_gflops']:>11}",
            flush=True)
  for name in _AGENTS.value:
    for seeds in _SEEDS.value:
      for games in _EVAL_GAMES.value:
        row = time_evaluation(name, int(seeds), int(games), _STEPS.value)
        rows.append(row)
        print(f"{row['name']:34s} evaluation step {row['eval_step_ms']:8.2f} ms, "
              f"{row['eval_steps_per_s']:8.1f} agent steps/s per member", flush=True)
  if _JSON_OUT.value:
    with open(_JSON_OUT.value, "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  app.run(main)
