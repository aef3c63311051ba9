"""Tests for rl/tabular.py: the update rule by hand, exploration, and exact optima on toy text.

The ground truth for FrozenLake and Taxi is value iteration over the environments' own
transition tables (`tabular.optimal_values`), so the learned greedy policies are compared with
the optimum itself, not with a score threshold. Taxi is "Taxi-v4": gymnasium 1.4 refuses
"Taxi-v3" as deprecated, and v4 with its default arguments is the same deterministic task.
"""

import gymnasium
import numpy as np
import pytest

from rl import tabular

_FROZEN_LAKE_CONFIG = tabular.TabularConfig(num_episodes=1_000, learning_rate=1.0, discount=0.9,
                                            epsilon_decay_episodes=500, max_episode_steps=100,
                                            seed=0)
# Taxi is deterministic, so lr=1 writes each target exactly; a floor of 0.2 on epsilon keeps
# the side branches visited, and with 5,000 episodes the greedy policy was optimal from all 300
# start states for each of 15 seeds tried (2,000-4,000 episodes left 1-3 starts off on some).
_TAXI_CONFIG = tabular.TabularConfig(num_episodes=5_000, learning_rate=1.0, discount=0.99,
                                     epsilon_end=0.2, epsilon_decay_episodes=2_500,
                                     max_episode_steps=200, seed=0)


def _frozen_lake():
  return gymnasium.make("FrozenLake-v1", is_slippery=False)


def _taxi():
  return gymnasium.make("Taxi-v4")


def _walk(env, q, state, max_steps=200):
  """Undiscounted return of the greedy policy of `q` from `state`, along a deterministic P."""
  transitions = env.unwrapped.P
  episode_return = 0.0
  for _ in range(max_steps):
    (prob, state, reward, terminated), = transitions[state][int(np.argmax(q[state]))]
    assert prob == 1.0
    episode_return += reward
    if terminated:
      break
  return episode_return


# --------------------------------------------------------------------------------------------
# The update rule and exploration.


def test_update_matches_hand_computed_values_and_leaves_input_alone():
  q = np.array([[1.0, 2.0], [0.5, -1.0], [3.0, 4.0]])
  original = q.copy()
  # Non-terminal: target 1 + 0.9 * max(3, 4) = 4.6; 2 + 0.5 * (4.6 - 2) = 3.3.
  after = tabular.update(q, state=0, action=1, reward=1.0, next_state=2, terminal=False,
                         learning_rate=0.5, discount=0.9)
  expected = original.copy()
  expected[0, 1] = 3.3
  np.testing.assert_allclose(after, expected, rtol=0, atol=1e-12)
  # Terminal: no bootstrap, target 2; 0.5 + 0.5 * (2 - 0.5) = 1.25.
  after = tabular.update(q, state=1, action=0, reward=2.0, next_state=2, terminal=True,
                         learning_rate=0.5, discount=0.9)
  expected = original.copy()
  expected[1, 0] = 1.25
  np.testing.assert_allclose(after, expected, rtol=0, atol=1e-12)
  # The max is over the next state's row, which may be negative: -2 + 0.5 * 0.5 = -1.75 with
  # lr=1 replacing the old value entirely.
  after = tabular.update(q, state=2, action=0, reward=-2.0, next_state=1, terminal=False,
                         learning_rate=1.0, discount=0.5)
  assert after[2, 0] == pytest.approx(-1.75, abs=1e-12)
  np.testing.assert_array_equal(q, original)
  assert after is not q


def test_epsilon_zero_picks_the_argmax():
  rng = np.random.default_rng(0)
  q_row = np.array([0.1, 0.7, -0.2, 0.3])
  assert {tabular.epsilon_greedy(q_row, 0.0, rng) for _ in range(200)} == {1}


def test_ties_are_broken_uniformly_among_tied_actions():
  rng = np.random.default_rng(0)
  q_row = np.array([1.0, 3.0, 0.0, 3.0, 3.0])
  picks = np.array([tabular.epsilon_greedy(q_row, 0.0, rng) for _ in range(600)])
  counts = np.bincount(picks, minlength=5)
  assert counts[0] == counts[2] == 0
  assert all(counts[a] > 150 for a in (1, 3, 4)), counts  # about 200 each
  # A fresh table: every action must get explored, not just action 0.
  zeros = np.zeros(4)
  assert {tabular.epsilon_greedy(zeros, 0.0, rng) for _ in range(200)} == {0, 1, 2, 3}


def test_epsilon_one_is_uniform():
  rng = np.random.default_rng(0)
  q_row = np.array([0.0, 10.0, 0.0, 0.0])
  picks = np.array([tabular.epsilon_greedy(q_row, 1.0, rng) for _ in range(8_000)])
  frequencies = np.bincount(picks, minlength=4) / picks.size
  # Standard error is about 0.005 per frequency.
  np.testing.assert_allclose(frequencies, 0.25, atol=0.03)


def test_epsilon_decays_linearly_then_stays():
  config = tabular.TabularConfig(epsilon_start=1.0, epsilon_end=0.2, epsilon_decay_episodes=4)
  schedule = [tabular.epsilon_at(config, episode) for episode in range(6)]
  np.testing.assert_allclose(schedule, [1.0, 0.8, 0.6, 0.4, 0.2, 0.2], atol=1e-12)
  no_decay = tabular.TabularConfig(epsilon_end=0.3, epsilon_decay_episodes=0)
  assert tabular.epsilon_at(no_decay, 0) == 0.3


class _Forever(gymnasium.Env):
  """One state, one action, reward 1 each step, never terminates: the value is 1 / (1 - gamma)."""

  observation_space = gymnasium.spaces.Discrete(1)
  action_space = gymnasium.spaces.Discrete(1)

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    return 0, {}

  def step(self, action):
    return 0, 1.0, False, False, {}


@pytest.mark.parametrize("limit", ["env_time_limit", "config_max_episode_steps"])
def test_truncation_bootstraps(limit):
  # Every episode is one step long and is cut off, never terminated. Bootstrapping through the
  # cut gives Q = 1 / (1 - 0.5) = 2; treating it as terminal would give 1.
  if limit == "env_time_limit":
    env, max_steps = gymnasium.wrappers.TimeLimit(_Forever(), max_episode_steps=1), 10
  else:
    env, max_steps = _Forever(), 1
  config = tabular.TabularConfig(num_episodes=60, learning_rate=1.0, discount=0.5,
                                 max_episode_steps=max_steps)
  q, returns = tabular.train(env, config)
  assert q[0, 0] == pytest.approx(2.0, abs=1e-9)
  np.testing.assert_array_equal(returns, np.ones(60))


# --------------------------------------------------------------------------------------------
# Learning the optimum.


def test_q_learning_solves_deterministic_frozen_lake():
  env = _frozen_lake()
  q, returns = tabular.train(env, _FROZEN_LAKE_CONFIG)
  assert returns.shape == (_FROZEN_LAKE_CONFIG.num_episodes,)
  assert tabular.greedy_return(env, q, episodes=3, max_steps=100) == 1.0
  episode_return, steps = tabular.greedy_episode(env, q, max_steps=100)
  assert (episode_return, steps) == (1.0, 6)
  # Ground truth: the only reward is 1 at the goal, so V*(start) = gamma ** (steps - 1).
  discount = _FROZEN_LAKE_CONFIG.discount
  v_star = tabular.optimal_values(env, discount)
  assert v_star[0] == pytest.approx(discount ** 5, abs=1e-9)
  # With lr=1 on a deterministic task the values along the optimal path are exact.
  assert np.max(q[0]) == pytest.approx(v_star[0], abs=1e-9)


@pytest.fixture(scope="module")
def taxi_solution():
  env = _taxi()
  q, returns = tabular.train(env, _TAXI_CONFIG)
  return env, q, returns


def test_q_learning_is_optimal_from_every_taxi_start(taxi_solution):
  env, q, returns = taxi_solution
  # With discount 1, V*(s) is the best undiscounted return from s (Taxi always terminates).
  best_return = tabular.optimal_values(env, 1.0)
  starts = np.flatnonzero(env.unwrapped.initial_state_distrib)
  assert starts.size == 300
  learned = np.array([_walk(env, q, start) for start in starts])
  np.testing.assert_array_equal(learned, best_return[starts])
  assert np.mean(returns[-500:]) > np.mean(returns[:500]) + 100  # learning shows in training


def test_taxi_greedy_return_equals_value_iteration_policy(taxi_solution):
  env, q, _ = taxi_solution
  discount = _TAXI_CONFIG.discount
  q_star = tabular.optimal_action_values(env, tabular.optimal_values(env, discount), discount)
  # The ground truth checks itself: greedy on the discounted Q* is optimal undiscounted too.
  starts = np.flatnonzero(env.unwrapped.initial_state_distrib)
  best_return = tabular.optimal_values(env, 1.0)
  np.testing.assert_array_equal([_walk(env, q_star, s) for s in starts], best_return[starts])
  # Through the real environment, on the same seeded start states.
  learned = tabular.greedy_return(env, q, episodes=200, max_steps=200, seed=123)
  optimal = tabular.greedy_return(env, q_star, episodes=200, max_steps=200, seed=123)
  assert learned == optimal
  assert optimal > 7.0  # about 8 for Taxi's optimal policy


# --------------------------------------------------------------------------------------------
# Determinism and configuration.


def test_training_is_a_function_of_the_seed():
  env = _taxi()
  config = tabular.TabularConfig(num_episodes=40, seed=3)
  q_a, returns_a = tabular.train(env, config)
  q_b, returns_b = tabular.train(env, config)  # the same env object, reset by the seed
  q_c, returns_c = tabular.train(_taxi(), config)
  np.testing.assert_array_equal(q_a, q_b)
  np.testing.assert_array_equal(q_a, q_c)
  np.testing.assert_array_equal(returns_a, returns_b)
  np.testing.assert_array_equal(returns_a, returns_c)
  q_d, _ = tabular.train(env, tabular.TabularConfig(num_episodes=40, seed=4))
  assert not np.array_equal(q_a, q_d)


def test_valid_configs_are_accepted():
  tabular.TabularConfig()
  tabular.TabularConfig(num_episodes=0, learning_rate=1.0, discount=0.0, epsilon_start=0.0,
                        epsilon_end=1.0, epsilon_decay_episodes=0, max_episode_steps=1, seed=0)
  tabular.TabularConfig(discount=1.0)


@pytest.mark.parametrize("field, value", [
    ("num_episodes", -1),
    ("learning_rate", 0.0),
    ("learning_rate", 1.5),
    ("learning_rate", -0.1),
    ("discount", -0.1),
    ("discount", 1.01),
    ("epsilon_start", 1.5),
    ("epsilon_end", -0.1),
    ("epsilon_decay_episodes", -1),
    ("max_episode_steps", 0),
    ("seed", -1),
])
def test_bad_config_values_raise(field, value):
  with pytest.raises(ValueError, match=field):
    tabular.TabularConfig(**{field: value})


def test_bad_arguments_raise():
  env = _frozen_lake()
  with pytest.raises(ValueError, match="discount"):
    tabular.optimal_values(env, 1.5)
  with pytest.raises(ValueError, match="episodes"):
    tabular.greedy_return(env, np.zeros((16, 4)), episodes=0, max_steps=10)
  with pytest.raises(ValueError, match="Discrete"):
    tabular.train(gymnasium.make("CartPole-v1"), tabular.TabularConfig(num_episodes=1))
