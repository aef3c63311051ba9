"""Exploration by controlling keypoints: K x 4 intrinsic Q-functions, Q_gap and options.

The Transporter paper's third use of keypoints (Kulkarni et al. 2019, section 4.3): with no
extrinsic reward at all, an agent learns for every keypoint i and direction j how to move that
keypoint that way, and explores by carrying out such "options".

  * Intrinsic rewards. Between consecutive agent steps the detector's keypoint i moves from
    (x_i(t), y_i(t)) to (x_i(t+1), y_i(t+1)); the four rewards of keypoint i are
        r_i,0 = x_i(t+1) - x_i(t)   (right)     r_i,1 = x_i(t) - x_i(t+1)   (left)
        r_i,2 = y_i(t+1) - y_i(t)   (down)      r_i,3 = y_i(t) - y_i(t+1)   (up)
    in the records' units ([-1, 1] across the frame, y down). Head h = 4 i + j.
  * K x 4 Q-functions Q_h, each a `rl.networks.KeypointQNetwork` of its own, all trained
    off-policy from one shared replay by ONE jitted update: `rl.dqn.update` vmapped over the
    heads (leading axis 4K on every parameter), the sampled batch shared and only the reward
    differing per head. The rewards are computed on the device from the sampled keypoint
    records, so the replay stores nothing per head.
  * Controllability: Q_gap_i(s) = 1/4 sum_j [max_a Q_i,j(s, a) - min_a Q_i,j(s, a)]; a keypoint
    whose motion the actions decide has a large gap, one that moves on its own has none.
  * Options. An option is a head (keypoint, direction) followed epsilon-greedily for
    `option_length` agent steps. The explorer picks options uniformly over all 4K heads
    ("uniform") or over the directions of the `top_keypoints` keypoints of largest Q_gap in the
    state where the option starts ("controllable").

Choices the paper leaves open (README, "Exploration by controlling keypoints"): one-step
targets (the rewards telescope, so n-step returns add little and would need per-head rewards in
the replay); a transition that ends in a terminal state (a lost life, game over) gives every
head reward 0, since the keypoints jump when a game or a life restarts; an option also ends when
the game ends; double DQN, Huber loss, Adam, as KeyQN.
"""

from __future__ import annotations

import dataclasses
import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from keypoints import xla
from rl import agents
from rl import dqn

DIRECTIONS = ("right", "left", "down", "up")  # j = 0..3: +x, -x, +y, -y
CHOICES = ("controllable", "uniform")
EXPLORERS = ("keypoints", "random")  # experiments.explore: keypoint options or random actions


def validate_config(config) -> None:
  """Raises ValueError (one line) for an unusable exploration config
  (experiments/configs/explore.py)."""
  if config.explorer not in EXPLORERS:
    raise ValueError(f"unknown explorer {config.explorer!r}; expected one of "
                     f"{', '.join(EXPLORERS)}")
  if config.explorer == "keypoints" and not config.keypoint_run:
    raise ValueError("the keypoints explorer needs a trained Transporter: pass "
                     "--config.keypoint_run=<run dir>")
  opts = config.options
  agents.raise_first_failed([
      *agents.population_checks(config, n_step=1),
      (config.coverage_bin >= 1, f"coverage_bin must be >= 1, got {config.coverage_bin}"),
      (config.video_steps >= 0, f"video_steps must be >= 0, got {config.video_steps}"),
      (opts.length >= 1, f"options.length must be >= 1, got {opts.length}"),
      (opts.choice in CHOICES, f"options.choice must be one of {', '.join(CHOICES)}, got "
                               f"{opts.choice!r}"),
      (opts.top_keypoints >= 1, f"options.top_keypoints must be >= 1, got "
                                f"{opts.top_keypoints}"),
      (0 <= opts.epsilon <= 1, f"options.epsilon must be in [0, 1], got {opts.epsilon}"),
  ])


def intrinsic_rewards(xy: jax.Array, next_xy: jax.Array) -> jax.Array:
  """[..., K, 2] keypoints at t and t + 1 -> rewards [..., 4K], head h = 4 i + j (DIRECTIONS)."""
  dx = next_xy[..., 0] - xy[..., 0]
  dy = next_xy[..., 1] - xy[..., 1]
  rewards = jnp.stack([dx, -dx, dy, -dy], axis=-1)  # [..., K, 4]
  return rewards.reshape(*rewards.shape[:-2], -1)


def head_rewards(batch: dict[str, jax.Array]) -> jax.Array:
  """Per-head rewards [4K, B] of a replay batch of keypoint records [B, H, K, 2 + C]: from the
  newest record of `observation` to that of `next_observation`; 0 after a terminal."""
  rewards = intrinsic_rewards(batch["observation"][:, -1, :, :2],
                              batch["next_observation"][:, -1, :, :2])  # [B, 4K]
  rewards = jnp.where(batch["discount"][:, None] > 0, rewards, 0.0)
  return rewards.T


def q_gap(q: jax.Array) -> jax.Array:
  """Q-values [..., 4K, A] of every head -> each keypoint's Q_gap [..., K]."""
  spread = q.max(axis=-1) - q.min(axis=-1)  # [..., 4K]
  return spread.reshape(*spread.shape[:-1], -1, len(DIRECTIONS)).mean(axis=-1)


def choose_heads(key: jax.Array, gap: jax.Array, choice: str, top_keypoints: int) -> jax.Array:
  """New options: a head [N] per member from its keypoints' Q_gap [N, K] (`choice`: CHOICES).

  "uniform": any of the 4K heads with equal probability. "controllable": one of the
  `top_keypoints` keypoints of largest Q_gap (ties to the lower index), then a direction, each
  uniformly."""
  n, k = gap.shape
  keypoint_key, direction_key = jax.random.split(key)
  directions = jax.random.randint(direction_key, (n,), 0, len(DIRECTIONS))
  if choice == "uniform":
    keypoints = jax.random.randint(keypoint_key, (n,), 0, k)
  elif choice == "controllable":
    top = jnp.argsort(-gap, axis=-1, stable=True)[:, :min(top_keypoints, k)]
    pick = jax.random.randint(keypoint_key, (n,), 0, top.shape[1])
    keypoints = jnp.take_along_axis(top, pick[:, None], axis=1)[:, 0]
  else:
    raise ValueError(f"unknown option choice {choice!r}; expected one of {', '.join(CHOICES)}")
  return (keypoints * len(DIRECTIONS) + directions).astype(jnp.int32)


def heads_update(state: dqn.LearnerState, batch: dict[str, jax.Array], *, apply: dqn.Apply,
                 optimizer: optax.GradientTransformation, double: bool, loss_kind: str,
                 target_update_period: int) -> tuple[dqn.LearnerState, dict[str, jax.Array]]:
  """One update of all 4K heads (leading axis of `state`) on one batch of keypoint records:
  `rl.dqn.update` vmapped over the heads, each with its own intrinsic reward. Metrics are
  means over the heads."""
  one = functools.partial(dqn.update, apply=apply, optimizer=optimizer, double=double,
                          loss_kind=loss_kind, target_update_period=target_update_period)
  shared = {k: None for k in batch}
  states, metrics = jax.vmap(one, in_axes=(0, {**shared, "reward": 0}))(
      state, {**batch, "reward": head_rewards(batch)})
  return states, jax.tree.map(jnp.mean, metrics)


class OptionLearners:
  """The 4K heads of N population members (seeds config.seed + s), jitted.

  `state` is a `rl.dqn.LearnerState` with leading axes [N, 4K] on every leaf. Member s's head h
  is initialised from a key split from PRNGKey(seed + s), so member s is what a one-member run
  of seed + s would be.
  """

  def __init__(self, config, network: flax.linen.Module, observer, num_keypoints: int):
    n, self.num_heads = config.num_seeds, len(DIRECTIONS) * num_keypoints
    learner = config.learner
    self.optimizer = optax.adam(learner.learning_rate, eps=learner.adam_eps)
    apply = network.apply
    example = jnp.zeros((config.history, *observer.element_shape), observer.element_dtype)
    init_keys, self.act_keys = dqn.member_keys(config.seed, n)
    head_keys = jax.vmap(lambda k: jax.random.split(k, self.num_heads))(init_keys)
    self.state = jax.vmap(jax.vmap(lambda k: dqn.init(k, network, example, self.optimizer)))(
        head_keys)
    one = functools.partial(heads_update, apply=apply, optimizer=self.optimizer,
                            double=learner.double, loss_kind=learner.loss,
                            target_update_period=learner.target_update_period)
    # The heads are MLPs over keypoint records: XLA:CPU's matrix-product fusions stay on.
    self.update = xla.jit(jax.vmap(one), convolutional=False, donate_argnums=0)
    choice, top = config.options.choice, config.options.top_keypoints
    if choice not in CHOICES:
      raise ValueError(f"unknown option choice {choice!r}; expected one of {', '.join(CHOICES)}")

    def population_act(params, observation, heads, choose, keys, step, epsilon):
      step_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, step)
      option_keys, act_keys = jax.vmap(jax.random.split, out_axes=1)(step_keys)
      # Every head on each member's observation: [N, 4K, A].
      q = jax.vmap(lambda p, o: jax.vmap(lambda ph: apply(ph, o[None])[0])(p))(params,
                                                                               observation)
      gap = q_gap(q)
      new = jax.vmap(lambda k, g: choose_heads(k, g[None], choice, top)[0])(option_keys, gap)
      heads = jnp.where(choose, new, heads)
      q_head = jnp.take_along_axis(q, heads[:, None, None], axis=1)[:, 0]  # [N, A]
      actions = jax.vmap(lambda qh, k: dqn.act(None, qh[None], k, epsilon,
                                               lambda _, x: x)[0])(q_head, act_keys)
      return actions, heads, gap

    self._act = xla.jit(population_act, convolutional=False)

  def act(self, observation: np.ndarray, heads: np.ndarray, choose: np.ndarray, step: int,
          epsilon: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(actions [N], heads [N], Q_gap [N, K]): members with `choose` set start a new option
    (a head from the Q_gap of this observation); the others keep `heads`. Each member acts
    epsilon-greedily on its head's Q-values."""
    actions, heads, gap = self._act(self.state.params, jnp.asarray(observation),
                                    jnp.asarray(heads, jnp.int32), jnp.asarray(choose),
                                    self.act_keys, jnp.int32(step), jnp.float32(epsilon))
    return np.asarray(actions), np.asarray(heads), np.asarray(gap)


@dataclasses.dataclass(frozen=True)
class OptionClock:
  """Which option each member follows and for how many more agent steps ([N] int arrays on the
  host; the clock never enters a jitted function)."""
  head: np.ndarray
  steps_left: np.ndarray

  @classmethod
  def create(cls, num_members: int) -> "OptionClock":
    return cls(np.zeros(num_members, np.int32), np.zeros(num_members, np.int32))

  def due(self) -> np.ndarray:
    """[N] bool: the members that start a new option at this step."""
    return self.steps_left <= 0

  def advance(self, head: np.ndarray, option_length: int, ended: np.ndarray) -> "OptionClock":
    """After a step taken with `head` [N]: members that chose a new option now have
    `option_length - 1` steps left, the others one fewer; a member whose game `ended` [N]
    starts a new option at its next step."""
    left = np.where(self.due(), option_length, self.steps_left) - 1
    return OptionClock(np.asarray(head, np.int32),
                       np.where(np.asarray(ended), 0, left).astype(np.int32))
