"""Keypoint options (rl.options): intrinsic rewards, the vmapped K x 4 update, Q_gap on a task
where one sprite follows the actions, option choice and option timing."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from rl import dqn
from rl import networks
from rl import options
from rl import replay as replay_lib
from rl import sprite_control


def _config(num_seeds=1, lr=1e-3, target_period=100, choice="controllable", top=1):
  return ml_collections.ConfigDict(dict(
      seed=0, num_seeds=num_seeds, history=1,
      learner=dict(learning_rate=lr, adam_eps=1e-8, double=True, loss="huber",
                   target_update_period=target_period),
      options=dict(choice=choice, top_keypoints=top)))


class _Observer:
  def __init__(self, k):
    self.element_shape, self.element_dtype = (k, 2), np.float32


def test_intrinsic_rewards_have_the_papers_signs():
  # Keypoint 0 moves right by 0.1, keypoint 1 moves up by 0.2 (y grows downwards).
  xy = jnp.array([[[0.0, 0.0], [0.5, 0.5]]])
  next_xy = jnp.array([[[0.1, 0.0], [0.5, 0.3]]])
  r = np.asarray(options.intrinsic_rewards(xy, next_xy))
  assert r.shape == (1, 8)
  np.testing.assert_allclose(r[0, :4], [0.1, -0.1, 0.0, 0.0], atol=1e-7)  # right, left, down, up
  np.testing.assert_allclose(r[0, 4:], [0.0, 0.0, -0.2, 0.2], atol=1e-7)
  # From a replay batch: the newest record of each history, nothing after a terminal.
  obs = jnp.zeros((2, 3, 2, 4)).at[:, -1, :, :2].set(xy[0])
  nxt = jnp.zeros((2, 3, 2, 4)).at[:, -1, :, :2].set(next_xy[0])
  per_head = np.asarray(options.head_rewards({"observation": obs, "next_observation": nxt,
                                               "discount": jnp.array([0.9, 0.0])}))
  assert per_head.shape == (8, 2)
  np.testing.assert_allclose(per_head[:, 0], r[0], atol=1e-7)
  np.testing.assert_array_equal(per_head[:, 1], 0.0)


def test_vmapped_update_equals_separate_updates_of_every_head():
  k, batch_size, history = 3, 8, 2
  network = networks.KeypointQNetwork(5, (8,), (16,))
  optimizer = optax.adam(1e-2)
  example = jnp.zeros((history, k, 4))
  keys = jax.random.split(jax.random.PRNGKey(0), 4 * k)
  state = jax.vmap(lambda key: dqn.init(key, network, example, optimizer))(keys)
  data = jax.random.split(jax.random.PRNGKey(1), 3)
  batch = {"observation": jax.random.uniform(data[0], (batch_size, history, k, 4), minval=-1),
           "next_observation": jax.random.uniform(data[1], (batch_size, history, k, 4),
                                                  minval=-1),
           "action": jax.random.randint(data[2], (batch_size,), 0, 5),
           "reward": jnp.zeros(batch_size),  # extrinsic: ignored by the heads
           "discount": jnp.full(batch_size, 0.9).at[0].set(0.0)}
  settings = dict(apply=network.apply, optimizer=optimizer, double=True, loss_kind="huber",
                  target_update_period=1)
  together = jax.jit(functools.partial(options.heads_update, **settings))
  new, metrics = together(state, batch)
  new, _ = together(new, batch)  # twice: Adam's state and the target copy carry over
  # The reference: one plain DQN update per head, its reward written out by hand.
  dx = batch["next_observation"][:, -1, :, 0] - batch["observation"][:, -1, :, 0]  # [B, K]
  dy = batch["next_observation"][:, -1, :, 1] - batch["observation"][:, -1, :, 1]
  single = jax.jit(functools.partial(dqn.update, **settings))
  losses = []
  for i in range(k):
    for j, reward in enumerate((dx[:, i], -dx[:, i], dy[:, i], -dy[:, i])):
      h = 4 * i + j
      one = jax.tree.map(lambda x, h=h: x[h], state)
      b = {**batch, "reward": jnp.where(batch["discount"] > 0, reward, 0.0)}
      one, m = single(one, b)
      losses.append(float(m["loss"]))
      one, _ = single(one, b)
      for x, y in zip(jax.tree.leaves(one), jax.tree.leaves(jax.tree.map(lambda x, h=h: x[h],
                                                                          new))):
        np.testing.assert_allclose(np.asarray(y), np.asarray(x),
                                   atol=1e-5 * max(1.0, float(np.abs(x).max())))
  np.testing.assert_allclose(float(metrics["loss"]), np.mean(losses), rtol=1e-4)


def test_q_gap_finds_the_sprite_the_actions_move():
  k, controlled = 3, 1
  env = sprite_control.SpriteControl(num_sprites=k, controlled=controlled, seed=0)
  config = _config()
  network = networks.KeypointQNetwork(env.num_actions, (16,), (64,))
  learners = options.OptionLearners(config, network, _Observer(k), k)
  replay = replay_lib.Replay(1, 5000, (k, 2), np.float32, history=1, n_step=1, discount=0.9)
  rng = np.random.default_rng([0, 2])
  act_rng = np.random.default_rng(1)
  obs = env.reset()
  for step in range(2500):
    action = act_rng.integers(env.num_actions)
    nxt, ended = env.step(action)
    replay.add(obs[None], np.array([action]), np.zeros(1, np.float32), np.zeros(1, bool),
               np.array([ended]))
    obs = env.reset() if ended else nxt
    if step >= 200:
      learners.state, _ = learners.update(learners.state, vars(replay.sample([rng], 32)))
  gaps = []
  for _ in range(20):
    obs = env.reset()
    _, _, gap = learners.act(obs[None, None], np.zeros(1), np.ones(1, bool), 0, 0.0)
    gaps.append(gap[0])
  gaps = np.array(gaps)
  print("mean Q_gap per sprite", gaps.mean(0))
  assert (gaps.argmax(axis=1) == controlled).mean() >= 0.9
  others = np.delete(gaps, controlled, axis=1)
  assert gaps[:, controlled].mean() > 1.5 * others.mean()


def test_option_choice_follows_q_gap_or_is_uniform():
  gap = jnp.array([[0.1, 0.9, 0.2, 0.0], [0.5, 0.0, 0.0, 0.4]])
  keys = jax.random.split(jax.random.PRNGKey(0), 400)
  heads = np.stack([np.asarray(options.choose_heads(key, gap, "controllable", 1))
                    for key in keys])  # [draws, N]
  assert set(heads[:, 0] // 4) == {1} and set(heads[:, 1] // 4) == {0}
  assert set(heads[:, 0] % 4) == {0, 1, 2, 3}  # every direction of the chosen keypoint
  top2 = np.stack([np.asarray(options.choose_heads(key, gap, "controllable", 2))
                   for key in keys])
  assert set(top2[:, 0] // 4) == {1, 2} and set(top2[:, 1] // 4) == {0, 3}
  uniform = np.stack([np.asarray(options.choose_heads(key, gap, "uniform", 1)) for key in keys])
  assert set(uniform.ravel()) == set(range(16))
  with pytest.raises(ValueError, match="option choice"):
    options.choose_heads(keys[0], gap, "greedy", 1)


def test_options_last_their_length_and_end_with_the_game():
  clock = options.OptionClock.create(2)
  started, length = [], 3
  ended = [[False, False]] * 4 + [[False, True]] + [[False, False]] * 2
  for step, end in enumerate(ended):
    due = clock.due()
    started.append(due.copy())
    clock = clock.advance(np.where(due, step, clock.head), length, np.array(end))
  started = np.array(started)
  # Member 0: a new option every 3 steps. Member 1: its game ends at step 4, so the option
  # begun at step 3 is cut short and a new one starts at step 5.
  np.testing.assert_array_equal(np.flatnonzero(started[:, 0]), [0, 3, 6])
  np.testing.assert_array_equal(np.flatnonzero(started[:, 1]), [0, 3, 5])
  assert clock.head[1] == 5 and clock.steps_left[1] == 1
