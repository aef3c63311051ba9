"""TD targets (plain, double, n-step discounts) against hand-computed values; the Huber loss;
the target-network schedule; the vmapped population update equals separate updates."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rl import dqn
from rl import losses
from rl import networks


def test_td_target_plain_and_double():
  reward = jnp.array([1.0, 0.5, 2.0])
  discount = jnp.array([0.9, 0.0, 0.81])  # 0: the window ended in a terminal state
  next_q_target = jnp.array([[1.0, 3.0], [5.0, 7.0], [2.0, -1.0]])
  next_q_online = jnp.array([[4.0, 0.0], [0.0, 1.0], [-3.0, 9.0]])
  # DQN: max over the target network's values.
  np.testing.assert_allclose(losses.td_target(reward, discount, next_q_target),
                             [1.0 + 0.9 * 3.0, 0.5, 2.0 + 0.81 * 2.0], rtol=1e-6)
  # Double DQN: the online network picks (actions 0, 1, 1), the target network evaluates.
  np.testing.assert_allclose(losses.td_target(reward, discount, next_q_target, next_q_online),
                             [1.0 + 0.9 * 1.0, 0.5, 2.0 + 0.81 * -1.0], rtol=1e-6)


def test_n_step_target_from_replay_rewards():
  # A 3-step window with rewards 1, 0, 2 and gamma 0.9 (rl.replay's R and gamma^3), then
  # the bootstrap value max Q = 10.
  gamma = 0.9
  ret = 1.0 + gamma * 0.0 + gamma ** 2 * 2.0
  target = losses.td_target(jnp.array([ret]), jnp.array([gamma ** 3]), jnp.array([[10.0, 4.0]]))
  np.testing.assert_allclose(target, [1.0 + 0.81 * 2.0 + 0.729 * 10.0], rtol=1e-6)


def test_huber_and_mse_losses():
  q = jnp.array([[1.0, 2.0], [0.0, 0.0]])
  action = jnp.array([1, 0])
  target = jnp.array([2.5, 3.0])  # errors 0.5 (quadratic) and 3 (linear)
  loss, error = losses.q_loss(q, action, target, "huber")
  np.testing.assert_allclose(error, [0.5, 3.0])
  np.testing.assert_allclose(loss, (0.5 * 0.25 + (3.0 - 0.5)) / 2, rtol=1e-6)
  loss, _ = losses.q_loss(q, action, target, "mse")
  np.testing.assert_allclose(loss, (0.5 * 0.25 + 0.5 * 9.0) / 2, rtol=1e-6)
  with pytest.raises(ValueError, match="unknown loss"):
    losses.q_loss(q, action, target, "l1")


def _setup(num_members, seed=0):
  network = networks.KeypointQNetwork(3, (8,), (16,))
  optimizer = optax.adam(1e-2)
  example = jnp.zeros((2, 4, 5))
  keys = jax.random.split(jax.random.PRNGKey(seed), num_members)
  state = jax.vmap(lambda k: dqn.init(k, network, example, optimizer))(keys)
  update = functools.partial(dqn.update, apply=network.apply, optimizer=optimizer,
                             target_update_period=3)
  return network, state, update


def _batch(key, shape):
  k = jax.random.split(key, 5)
  return {"observation": jax.random.normal(k[0], (*shape, 2, 4, 5)),
          "action": jax.random.randint(k[1], shape, 0, 3),
          "reward": jax.random.normal(k[2], shape),
          "discount": jnp.where(jax.random.uniform(k[3], shape) < 0.2, 0.0, 0.9),
          "next_observation": jax.random.normal(k[4], (*shape, 2, 4, 5))}


@pytest.mark.parametrize("mode", ["vmap", "unrolled"])
def test_population_update_equals_separate_updates(mode):
  _, state, update = _setup(3)
  batch = _batch(jax.random.PRNGKey(1), (3, 16))
  pop_update = jax.jit(jax.vmap(update) if mode == "vmap" else dqn.unrolled(update, 3))
  one_update = jax.jit(update)
  pop = state
  singles = [jax.tree.map(lambda x, i=i: x[i], state) for i in range(3)]
  for _ in range(4):
    pop, pop_metrics = pop_update(pop, batch)
    for i in range(3):
      singles[i], metrics = one_update(singles[i], jax.tree.map(lambda x, i=i: x[i], batch))
      np.testing.assert_allclose(pop_metrics["loss"][i], metrics["loss"], rtol=1e-5, atol=1e-7)
  for i in range(3):
    for a, b in zip(jax.tree.leaves(pop.params), jax.tree.leaves(singles[i].params)):
      np.testing.assert_allclose(a[i], b, rtol=1e-4, atol=1e-6)
  # The members really differ (a population, not copies).
  first = jax.tree.leaves(pop.params)[0]
  assert not np.allclose(first[0], first[1])


def test_target_network_follows_every_period_and_learning_lowers_the_loss():
  network, state, update = _setup(1)
  state = jax.tree.map(lambda x: x[0], state)
  batch = jax.tree.map(lambda x: x[0], _batch(jax.random.PRNGKey(2), (1, 32)))
  step = jax.jit(update)
  first_loss = None
  for i in range(1, 61):
    before = state.target_params
    state, metrics = step(state, batch)
    first_loss = metrics["loss"] if first_loss is None else first_loss
    same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state.target_params),
                                                    jax.tree.leaves(state.params)))
    unchanged = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state.target_params),
                                                         jax.tree.leaves(before)))
    assert same == (i % 3 == 0)
    assert unchanged == (i % 3 != 0)
  assert int(state.updates) == 60
  # A fixed batch is fitted: the TD loss falls well below where it started.
  assert float(metrics["loss"]) < 0.5 * float(first_loss)
  del network


def test_num_updates_counts_the_agent_loops_updates():
  for num_steps, min_replay, period in [(100, 10, 1), (100, 10, 3), (7, 10, 1), (50, 1, 4),
                                        (100_000, 1600, 1)]:
    made = sum(1 for s in range(1, num_steps + 1) if s >= min_replay and s % period == 0)
    assert dqn.num_updates(num_steps, min_replay, period) == made
    assert dqn.num_updates(num_steps, min_replay, period, updates_per_step=4) == 4 * made


def test_resets_fall_every_reset_every_steps_once_learning_began_and_not_at_the_end():
  import ml_collections
  learner = ml_collections.ConfigDict(dict(min_replay=150, reset_every=100))
  due = [s for s in range(1, 501) if dqn.reset_due(s, learner, num_steps=500)]
  assert due == [200, 300, 400]
  learner.reset_every = 0
  assert not any(dqn.reset_due(s, learner, num_steps=500) for s in range(1, 501))


def _tree_equal(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_reset_draws_the_network_anew_and_keeps_the_counts():
  network = networks.KeypointQNetwork(3, (8,), (16,))
  optimizer = optax.adam(optax.linear_schedule(1e-2, 0.0, 100))
  example = jnp.zeros((2, 4, 5))
  state = dqn.init(jax.random.PRNGKey(0), network, example, optimizer)
  step = jax.jit(functools.partial(dqn.update, apply=network.apply, optimizer=optimizer,
                                   target_update_period=3))
  batch = jax.tree.map(lambda x: x[0], _batch(jax.random.PRNGKey(2), (1, 32)))
  for _ in range(7):
    state, _ = step(state, batch)
  new = dqn.reset(state, jax.random.PRNGKey(5), network, example, optimizer)
  drawn = network.init(jax.random.PRNGKey(5), example[None])
  assert _tree_equal(new.params, drawn) and _tree_equal(new.target_params, drawn)
  assert not _tree_equal(new.params, state.params)
  adam, schedule = new.opt_state
  assert int(adam.count) == 0 and not any(np.any(x) for x in jax.tree.leaves(adam.mu))
  assert int(schedule.count) == 7 == int(state.opt_state[1].count)  # the decay goes on
  assert int(new.updates) == 7
  # Updates continue from the reset learner (its schedule's step, not the first one's).
  after, metrics = step(new, batch)
  assert np.isfinite(float(metrics["loss"])) and int(after.opt_state[1].count) == 8


def test_a_populations_reset_member_equals_a_one_member_runs_reset():
  import types
  from experiments.configs import agent as agent_config
  from rl import agents
  network = networks.KeypointQNetwork(3, (8,), (16,))
  observer = types.SimpleNamespace(element_shape=(4, 5), element_dtype=jnp.float32)

  def population(seed, n):
    config = agent_config.get_config()
    config.update(dict(seed=seed, num_seeds=n, history=2))
    return dqn.Population(agents.with_agent_defaults(config), network, observer)

  def reset(seed, n, index):  # the state is donated to the reset: a new learner each time
    learner = population(seed, n)
    return learner.reset(learner.state, index)

  member = lambda state, m: jax.tree.map(lambda x: x[m], state.params)
  pop_reset = reset(3, 2, index=2)
  assert _tree_equal(member(pop_reset, 1), member(reset(4, 1, index=2), 0))
  assert not _tree_equal(member(pop_reset, 0), member(pop_reset, 1))
  assert not _tree_equal(member(pop_reset, 1), member(reset(3, 2, index=3), 1))
  assert not _tree_equal(member(pop_reset, 1), member(population(3, 2).state, 1))


@pytest.mark.parametrize("decay", ["linear", "cosine"])
def test_learning_rate_decays_over_the_runs_updates(decay):
  import ml_collections
  learner = ml_collections.ConfigDict(dict(learning_rate=3e-4, lr_decay=decay,
                                           lr_end_fraction=0.1, min_replay=10, update_period=1))
  schedule = dqn.learning_rate(learner, num_steps=109)  # 100 updates: counts 0 to 99
  rates = np.array([float(schedule(i)) for i in range(100)])
  np.testing.assert_allclose(rates[[0, -1]], [3e-4, 3e-5], rtol=1e-5)
  assert np.all(np.diff(rates) < 0)  # strictly falling to the last update
  if decay == "linear":
    np.testing.assert_allclose(rates[50], 3e-4 - 50 / 99 * 2.7e-4, rtol=1e-5)
  else:  # slow at both ends, fast in the middle
    assert rates[0] - rates[10] < rates[45] - rates[55]
  learner.lr_decay = "constant"
  assert dqn.learning_rate(learner, num_steps=109) == 3e-4
  learner.lr_decay = "step"
  with pytest.raises(ValueError, match="unknown learner.lr_decay 'step'"):
    dqn.learning_rate(learner, num_steps=109)


def test_population_update_mode():
  assert dqn.population_update_mode("vmap", True) == "vmap"
  assert dqn.population_update_mode("unrolled", False) == "unrolled"
  expected = "unrolled" if jax.default_backend() == "cpu" else "vmap"
  assert dqn.population_update_mode("auto", True) == expected
  assert dqn.population_update_mode("auto", False) == "vmap"
  with pytest.raises(ValueError, match="unknown population update"):
    dqn.population_update_mode("pmap", False)


def test_act_is_greedy_at_epsilon_zero_and_uniform_with_probability_epsilon():
  network, state, _ = _setup(1)
  params = jax.tree.map(lambda x: x[0], state.params)
  obs = jax.random.normal(jax.random.PRNGKey(3), (256, 2, 4, 5))
  greedy = dqn.act(params, obs, jax.random.PRNGKey(0), 0.0, network.apply)
  np.testing.assert_array_equal(greedy, jnp.argmax(network.apply(params, obs), axis=-1))
  # One observation 3,000 times: the greedy action is one action, so what differs is exploration.
  same = jnp.broadcast_to(obs[:1], (3000,) + obs.shape[1:])
  best = int(greedy[0])
  for epsilon in (1.0, 0.5):
    actions = np.asarray(dqn.act(params, same, jax.random.PRNGKey(1), epsilon, network.apply))
    counts = np.bincount(actions, minlength=3) / len(actions)
    # Uniform with probability epsilon: each other action epsilon / 3 of the time (std < 0.01).
    expected = np.full(3, epsilon / 3)
    expected[best] += 1 - epsilon
    np.testing.assert_allclose(counts, expected, atol=0.04)


def test_feature_norm_makes_keyqn_blind_to_the_features_scale_not_to_positions():
  records = jax.random.normal(jax.random.PRNGKey(0), (4, 2, 3, 2 + 6))
  rescaled = records.at[..., 2:].set(records[..., 2:] * 20.0 + 5.0)  # per-record affine
  moved = records.at[..., 0].add(0.3)
  for feature_norm in (True, False):
    network = networks.KeypointQNetwork(3, (8,), (16,), feature_norm=feature_norm)
    params = network.init(jax.random.PRNGKey(1), records)
    q = network.apply(params, records)
    same = np.allclose(network.apply(params, rescaled), q, atol=1e-3 * float(jnp.abs(q).max()))
    assert same == feature_norm
    assert not np.allclose(network.apply(params, moved), q, atol=1e-3 * float(jnp.abs(q).max()))


def test_keyqn_without_features_reads_positions_only():
  records = jax.random.normal(jax.random.PRNGKey(0), (4, 2, 3, 2 + 6))
  other_features = records.at[..., 2:].set(jax.random.normal(jax.random.PRNGKey(2), (4, 2, 3, 6)))
  moved = records.at[..., 1].add(0.3)
  for use_features in (True, False):
    network = networks.KeypointQNetwork(3, (8,), (16,), use_features=use_features)
    params = network.init(jax.random.PRNGKey(1), records)
    q = network.apply(params, records)
    tol = 1e-3 * float(jnp.abs(q).max())
    assert np.allclose(network.apply(params, other_features), q, atol=tol) != use_features
    assert not np.allclose(network.apply(params, moved), q, atol=tol)
    # The embedding's first layer sees (x, y) alone, or (x, y) and the 6 features.
    assert params["params"]["Dense_0"]["kernel"].shape == (8 if use_features else 2, 8)
    if not use_features:  # the observer's positions-only records [.., K, 2]: the same Q-values
      np.testing.assert_allclose(network.apply(params, records[..., :2]), q, atol=tol)
