"""Tabular Q-learning with epsilon-greedy exploration, for gymnasium's toy-text tasks.

A small, exactly checkable baseline: on FrozenLake and Taxi the learned table can be compared
with the optimum computed by value iteration over the environment's own transition tables, so
the tests pin down the learning rule rather than a score threshold.

Conventions:
  * Environments have `Discrete` observation and action spaces; a Q-table is a float array of
    shape (num_states, num_actions), indexed `q[state, action]`.
  * Only a *terminated* transition (the MDP reached a terminal state) stops bootstrapping. A
    truncation (a time limit, gymnasium's `TimeLimit` or `TabularConfig.max_episode_steps`) is
    not terminal: the state it cuts off still has a future, so its target bootstraps through it.
  * Returns are undiscounted sums of rewards, as gymnasium reports them; `discount` only enters
    the learning target and value iteration.
  * Randomness: every random draw of the learner comes from an explicitly passed
    `np.random.Generator` (`train` builds one from `TabularConfig.seed`); the environment's own
    randomness is seeded once, on its first reset, from the same seed.
  * Toy-text transition tables are `env.unwrapped.P[s][a] = [(prob, next_state, reward,
    terminated), ...]`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium
import numpy as np


@dataclasses.dataclass(frozen=True)
class TabularConfig:
  """Settings of a Q-learning run.

  Attributes:
    num_episodes: episodes to train for (0 returns the all-zero initial table).
    learning_rate: step size of the update, in (0, 1].
    discount: discount factor of the learning target, in [0, 1].
    epsilon_start: exploration rate of the first episode, in [0, 1].
    epsilon_end: exploration rate once the decay is over, in [0, 1].
    epsilon_decay_episodes: episodes over which epsilon goes linearly from `epsilon_start` to
      `epsilon_end`; 0 uses `epsilon_end` from the start.
    max_episode_steps: steps after which an episode is truncated (on top of any time limit the
      environment itself has).
    seed: seeds both the learner's generator and the environment's first reset; >= 0.
  """
  num_episodes: int = 2_000
  learning_rate: float = 0.5
  discount: float = 0.99
  epsilon_start: float = 1.0
  epsilon_end: float = 0.05
  epsilon_decay_episodes: int = 1_000
  max_episode_steps: int = 200
  seed: int = 0

  def __post_init__(self):
    if self.num_episodes < 0:
      raise ValueError(f"num_episodes must be >= 0, got {self.num_episodes}")
    if not 0.0 < self.learning_rate <= 1.0:
      raise ValueError(f"learning_rate must be in (0, 1], got {self.learning_rate}")
    if not 0.0 <= self.discount <= 1.0:
      raise ValueError(f"discount must be in [0, 1], got {self.discount}")
    if not 0.0 <= self.epsilon_start <= 1.0:
      raise ValueError(f"epsilon_start must be in [0, 1], got {self.epsilon_start}")
    if not 0.0 <= self.epsilon_end <= 1.0:
      raise ValueError(f"epsilon_end must be in [0, 1], got {self.epsilon_end}")
    if self.epsilon_decay_episodes < 0:
      raise ValueError(f"epsilon_decay_episodes must be >= 0, got {self.epsilon_decay_episodes}")
    if self.max_episode_steps < 1:
      raise ValueError(f"max_episode_steps must be >= 1, got {self.max_episode_steps}")
    if self.seed < 0:
      raise ValueError(f"seed must be >= 0, got {self.seed}")


def _update_in_place(q: np.ndarray, state: int, action: int, reward: float, next_state: int,
                     terminal: bool, learning_rate: float, discount: float) -> None:
  """The Q-learning update, written into `q` (the shared core of `update` and `train`)."""
  bootstrap = 0.0 if terminal else discount * float(np.max(q[next_state]))
  q[state, action] += learning_rate * (reward + bootstrap - q[state, action])


def update(q: np.ndarray, state: int, action: int, reward: float, next_state: int,
           terminal: bool, learning_rate: float, discount: float) -> np.ndarray:
  """One Q-learning step on a copy of the table.

  Q[s, a] += lr * (r + discount * max_a' Q[s', a'] * (1 - terminal) - Q[s, a]).

  Args:
    q: the table, shape (num_states, num_actions); left unchanged.
    state: s.
    action: a.
    reward: r, the reward of the transition.
    next_state: s'.
    terminal: whether s' is terminal (`terminated`); pass False for a truncation, whose cut-off
      future still counts.
    learning_rate: lr, in (0, 1].
    discount: in [0, 1].

  Returns:
    A new table equal to `q` except at [state, action].
  """
  new_q = q.copy()
  _update_in_place(new_q, state, action, reward, next_state, terminal, learning_rate, discount)
  return new_q


def epsilon_greedy(q_row: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
  """Picks an action from one state's action values.

  Args:
    q_row: the action values of the state, shape (num_actions,).
    epsilon: probability of a uniformly random action.
    rng: the source of every random draw.

  Returns:
    A uniformly random action with probability `epsilon`; otherwise a greedy one, ties broken
    uniformly at random (a fresh, all-zero table would otherwise always explore action 0).
  """
  # Always draw the coin, even when epsilon is 0 or 1, so the generator advances the same way
  # whatever the schedule.
  if rng.random() < epsilon:
    return int(rng.integers(q_row.shape[0]))
  best = np.flatnonzero(q_row == np.max(q_row))
  return int(best[rng.integers(best.shape[0])])


def epsilon_at(config: TabularConfig, episode: int) -> float:
  """The exploration rate of `episode` (0-based) under the linear decay of `config`."""
  if episode >= config.epsilon_decay_episodes:
    return config.epsilon_end
  fraction = episode / config.epsilon_decay_episodes
  return config.epsilon_start + fraction * (config.epsilon_end - config.epsilon_start)


def _table_shape(env: gymnasium.Env) -> tuple[int, int]:
  """(num_states, num_actions) of an environment with discrete spaces."""
  spaces = (env.observation_space, env.action_space)
  if not all(isinstance(space, gymnasium.spaces.Discrete) for space in spaces):
    raise ValueError(f"tabular methods need Discrete observation and action spaces, got "
                     f"{env.observation_space} and {env.action_space}")
  return int(env.observation_space.n), int(env.action_space.n)


def train(env: gymnasium.Env, config: TabularConfig) -> tuple[np.ndarray, np.ndarray]:
  """Runs Q-learning with epsilon-greedy exploration from an all-zero table.

  The environment is reset with `seed=config.seed` once, before the first episode, and without
  a seed afterwards, so a run is a pure function of `config` (same seed, same table).

  Args:
    env: a gymnasium environment with Discrete spaces.
    config: the run's settings.

  Returns:
    (q, episode_returns): the learned table, float64 of shape (num_states, num_actions), and the
    undiscounted return of each training episode (exploration included), shape (num_episodes,).
  """
  q = np.zeros(_table_shape(env), dtype=np.float64)
  rng = np.random.default_rng(config.seed)
  episode_returns = np.zeros(config.num_episodes, dtype=np.float64)
  for episode in range(config.num_episodes):
    epsilon = epsilon_at(config, episode)
    state, _ = env.reset(seed=config.seed if episode == 0 else None)
    episode_return = 0.0
    for _ in range(config.max_episode_steps):
      action = epsilon_greedy(q[state], epsilon, rng)
      next_state, reward, terminated, truncated, _ = env.step(action)
      # The table is this function's own, so it is updated in place: copying it every step
      # (as `update` does) would only cost time.
      _update_in_place(q, state, action, float(reward), next_state, terminated,
                       config.learning_rate, config.discount)
      episode_return += float(reward)
      state = next_state
      if terminated or truncated:
        break
    episode_returns[episode] = episode_return
  return q, episode_returns


def greedy_episode(env: gymnasium.Env, q: np.ndarray, max_steps: int,
                   seed: int | None = None) -> tuple[float, int]:
  """Runs one episode of the greedy policy, ties broken by the lowest action index.

  Args:
    env: the environment.
    q: the table to act greedily on.
    max_steps: steps after which the episode is cut off.
    seed: passed to `env.reset`; None continues the environment's own generator.

  Returns:
    (return, steps): the undiscounted return and the number of steps taken.
  """
  state, _ = env.reset(seed=seed)
  episode_return = 0.0
  for step in range(1, max_steps + 1):
    state, reward, terminated, truncated, _ = env.step(int(np.argmax(q[state])))
    episode_return += float(reward)
    if terminated or truncated:
      return episode_return, step
  return episode_return, max_steps


def greedy_return(env: gymnasium.Env, q: np.ndarray, episodes: int, max_steps: int,
                  seed: int | None = None) -> float:
  """Mean undiscounted return of the greedy policy (ties broken by the lowest action index).

  Args:
    env: the environment.
    q: the table to act greedily on.
    episodes: episodes to average over, >= 1.
    max_steps: steps after which each episode is cut off.
    seed: seeds the first reset (later ones continue from it), so that two tables can be
      compared on the same start states; None leaves the environment's generator as it is.

  Returns:
    The mean return over the episodes.
  """
  if episodes < 1:
    raise ValueError(f"episodes must be >= 1, got {episodes}")
  returns = [greedy_episode(env, q, max_steps, seed=seed if i == 0 else None)[0]
             for i in range(episodes)]
  return float(np.mean(returns))


def _tabulate(env: gymnasium.Env) -> tuple[np.ndarray, np.ndarray]:
  """Dense model of a toy-text MDP from `env.unwrapped.P`.

  Returns:
    (rewards, continuation): rewards[s, a] is the expected immediate reward, and
    continuation[s, a, s'] the probability of moving to s' *and not terminating* (terminal
    transitions contribute no future value).
  """
  num_states, num_actions = _table_shape(env)
  transitions: dict[int, dict[int, list[tuple[Any, ...]]]] = env.unwrapped.P
  rewards = np.zeros((num_states, num_actions), dtype=np.float64)
  continuation = np.zeros((num_states, num_actions, num_states), dtype=np.float64)
  for state in range(num_states):
    for action in range(num_actions):
      for prob, next_state, reward, terminated in transitions[state][action]:
        rewards[state, action] += prob * reward
        if not terminated:
          continuation[state, action, next_state] += prob
  return rewards, continuation


def optimal_action_values(env: gymnasium.Env, values: np.ndarray, discount: float) -> np.ndarray:
  """One Bellman backup: Q(s, a) = E[r + discount * V(s') * (1 - terminated)].

  Args:
    env: a toy-text environment (with `env.unwrapped.P`).
    values: state values V, shape (num_states,); e.g. those of `optimal_values`.
    discount: in [0, 1].

  Returns:
    The action values, shape (num_states, num_actions); the optimal Q* when `values` is V*.
  """
  rewards, continuation = _tabulate(env)
  return rewards + discount * continuation @ values


def optimal_values(env: gymnasium.Env, discount: float, tol: float = 1e-10,
                   max_iterations: int = 100_000) -> np.ndarray:
  """Optimal state values V* by value iteration over the toy-text transition tables.

  Args:
    env: a toy-text environment (with `env.unwrapped.P`).
    discount: in [0, 1]; 1 is fine for tasks whose optimal policies all terminate (FrozenLake,
      Taxi), and then V*(s) is the best expected undiscounted return from s.
    tol: stop once no value changes by more than this in one sweep.
    max_iterations: sweeps after which to give up, since with `discount` 1 value iteration need
      not converge.

  Returns:
    V*, shape (num_states,).

  Raises:
    ValueError: for a discount outside [0, 1] or a tolerance <= 0.
    RuntimeError: if value iteration has not converged after `max_iterations` sweeps.
  """
  if not 0.0 <= discount <= 1.0:
    raise ValueError(f"discount must be in [0, 1], got {discount}")
  if tol <= 0:
    raise ValueError(f"tol must be > 0, got {tol}")
  rewards, continuation = _tabulate(env)
  values = np.zeros(rewards.shape[0], dtype=np.float64)
  for _ in range(max_iterations):
    new_values = np.max(rewards + discount * continuation @ values, axis=1)
    if np.max(np.abs(new_values - values)) <= tol:
      return new_values
    values = new_values
  raise RuntimeError(f"value iteration did not converge to tol={tol} in {max_iterations} sweeps")
