"""The DQN-family learner shared by KeyQN and pixel DQN: pure, jittable functions of state.

One member of a population is a `LearnerState`; a population is the same pytree with a leading
axis N on every leaf, updated by `jax.vmap(update)` (and acted for by `jax.vmap` of `act`), so
N seeds train in one process with one dispatch per step (purejaxrl). The pure functions are
jitted and vmapped in one place, `Population`, which the agent binary and the benchmark use.

Learning: double DQN (by default) with n-step returns from `rl.replay`, a target network copied
from the online one every `target_update_period` updates, the Huber loss and Adam (its step
size constant, or decayed over the run: `learning_rate`). Optionally several updates per agent
step (`updates_per_step`, the replay ratio) and the network drawn anew every `reset_every`
agent steps (`reset`; Nikishin et al. 2022, "The Primacy Bias in Deep RL").
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from keypoints import parallel
from keypoints import xla
from rl import losses

Apply = Callable[[Any, jax.Array], jax.Array]  # (params, observations [B, ...]) -> Q [B, A]


@flax.struct.dataclass
class LearnerState:
  params: Any
  target_params: Any
  opt_state: Any
  updates: jax.Array  # int32: updates done so far


def init(key: jax.Array, network: flax.linen.Module, example_observation: jax.Array,
         optimizer: optax.GradientTransformation) -> LearnerState:
  """A new learner: parameters from `key`, the target network equal to them."""
  params = network.init(key, example_observation[None])
  # A copy, not the same arrays: callers donate the state to jitted updates.
  return LearnerState(params=params, target_params=jax.tree.map(jnp.copy, params),
                      opt_state=optimizer.init(params), updates=jnp.zeros((), jnp.int32))


def loss_fn(params, target_params, batch: dict[str, jax.Array], apply: Apply, double: bool,
            loss_kind: str) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The TD loss of a batch {"observation", "action", "reward", "discount",
  "next_observation"} (leading axis B)."""
  q = apply(params, batch["observation"])
  next_q_target = apply(target_params, batch["next_observation"])
  next_q_online = apply(params, batch["next_observation"]) if double else None
  target = losses.td_target(batch["reward"], batch["discount"], next_q_target, next_q_online)
  loss, error = losses.q_loss(q, batch["action"], target, loss_kind)
  return loss, {"loss": loss, "q": q.mean(), "abs_td_error": jnp.abs(error).mean()}


def update(state: LearnerState, batch: dict[str, jax.Array], *, apply: Apply,
           optimizer: optax.GradientTransformation, double: bool = True,
           loss_kind: str = "huber",
           target_update_period: int = 1) -> tuple[LearnerState, dict[str, jax.Array]]:
  """One gradient step on `batch`; the target network follows every `target_update_period`
  updates. Returns the new state and scalar metrics."""
  grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, state.target_params, batch,
                                                    apply, double, loss_kind)
  changes, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, changes)
  updates = state.updates + 1
  copy = updates % target_update_period == 0
  target_params = jax.tree.map(lambda new, old: jnp.where(copy, new, old), params,
                               state.target_params)
  return LearnerState(params, target_params, opt_state, updates), metrics


def act(params, observation: jax.Array, key: jax.Array, epsilon: jax.Array,
        apply: Apply) -> jax.Array:
  """Epsilon-greedy actions [B] for observations [B, ...]: uniform with probability epsilon,
  else the first action of highest Q."""
  q = apply(params, observation)
  explore_key, action_key = jax.random.split(key)
  random_action = jax.random.randint(action_key, q.shape[:1], 0, q.shape[-1])
  explore = jax.random.uniform(explore_key, q.shape[:1]) < epsilon
  return jnp.where(explore, random_action, jnp.argmax(q, axis=-1)).astype(jnp.int32)


def member_keys(seed: int, num_members: int) -> tuple[jax.Array, jax.Array]:
  """(init keys, acting keys), each [N, 2]: member s's come from PRNGKey(seed + s) alone, so it
  starts and explores as a one-member run of seed + s would."""
  keys = jnp.stack([jax.random.PRNGKey(seed + s) for s in range(num_members)])
  return jax.vmap(jax.random.split, out_axes=1)(keys)


LR_DECAYS = ("constant", "linear", "cosine")


def num_updates(num_steps: int, min_replay: int, update_period: int,
                updates_per_step: int = 1) -> int:
  """Updates in a run of `num_steps` agent steps: `updates_per_step` at every step s (counted
  from 1) with s >= min_replay and s % update_period == 0, as the agent binary's loop makes
  them."""
  return updates_per_step * max(0, num_steps // update_period - (min_replay - 1) // update_period)


def reset_due(step: int, learner, num_steps: int) -> bool:
  """Whether the learner is drawn anew after agent step `step` (counted from 1): every
  `learner.reset_every` steps (0: never) once learning has begun, never at the run's end."""
  every = learner.get("reset_every", 0)
  return (every > 0 and step % every == 0 and learner.min_replay <= step < num_steps)


def reset(state: LearnerState, key: jax.Array, network: flax.linen.Module,
          example_observation: jax.Array,
          optimizer: optax.GradientTransformation) -> LearnerState:
  """The learner with its network drawn anew from `key`: the online and target parameters
  and Adam's moments start over, while the update count and a learning-rate schedule's count
  go on (a decaying step keeps decaying over the run)."""
  fresh = init(key, network, example_observation, optimizer)
  opt_state = jax.tree.map(
      lambda new, old: old if isinstance(new, optax.ScaleByScheduleState) else new,
      fresh.opt_state, state.opt_state,
      is_leaf=lambda x: isinstance(x, optax.ScaleByScheduleState))
  return LearnerState(fresh.params, fresh.target_params, opt_state, state.updates)


def learning_rate(learner, num_steps: int) -> float | optax.Schedule:
  """Adam's step size from a learner config: `learning_rate` throughout ("constant"), or
  decayed over the run's updates ("linear" or "cosine") from `learning_rate` to
  `learning_rate * lr_end_fraction`, reached at the run's last update."""
  decay = learner.get("lr_decay", "constant")
  if decay not in LR_DECAYS:
    raise ValueError(f"unknown learner.lr_decay {decay!r}; expected one of "
                     f"{', '.join(LR_DECAYS)}")
  if decay == "constant":
    return learner.learning_rate
  end = learner.learning_rate * learner.lr_end_fraction
  steps = max(1, num_updates(num_steps, learner.min_replay, learner.update_period,
                             learner.get("updates_per_step", 1)) - 1)
  if decay == "linear":
    return optax.linear_schedule(learner.learning_rate, end, steps)
  return optax.cosine_decay_schedule(learner.learning_rate, steps,
                                     alpha=learner.lr_end_fraction)


POPULATION_UPDATES = ("auto", "vmap", "unrolled")


def population_update_mode(setting: str, convolutional: bool) -> str:
  """How a population's update is batched: "vmap", or "unrolled" (the N members' updates side
  by side in one jitted call). "auto": unrolled on the CPU for convolutional networks, where
  XLA:CPU runs vmapped (grouped) convolutions about 1.5x slower than N separate ones (measured,
  3 members, Nature CNN); vmap everywhere else (for KeyQN's MLP it is as fast or faster)."""
  if setting not in POPULATION_UPDATES:
    raise ValueError(f"unknown population update {setting!r}; expected one of "
                     f"{', '.join(POPULATION_UPDATES)}")
  if setting != "auto":
    return setting
  return "unrolled" if convolutional and jax.default_backend() == "cpu" else "vmap"


def unrolled(fn: Callable[..., Any], num_members: int) -> Callable[..., Any]:
  """fn over the leading axis of every argument, as N copies side by side (no vmap)."""
  def population_fn(*args):
    outs = [fn(*jax.tree.map(lambda x, i=i: x[i], args)) for i in range(num_members)]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
  return population_fn


class Population:
  """N learners (seeds config.seed + s) with their jitted population update and acting.

  Member s's parameters come from PRNGKey(seed + s) and its exploration from a key of its own,
  folded with the step, so member s acts as a one-member run of seed + s would.
  `state` is the population's `LearnerState` (leading axis N on every leaf).
  """

  def __init__(self, config, network: flax.linen.Module, observer, convolutional: bool = False,
               mesh: jax.sharding.Mesh | None = None):
    """`mesh`: data parallelism (`keypoints.parallel`): with several devices the state sits on
    every device and each member's batch is split over them, its gradient all-reduced; None or
    one device: the plain update."""
    n = config.num_seeds
    if config.learner.learning_rate is None:
      raise ValueError("learner.learning_rate is unset: resolve the config with "
                       "rl.agents.with_agent_defaults first")
    self.mesh = mesh if mesh is not None and mesh.size > 1 else None
    self.optimizer = optax.adam(learning_rate(config.learner, config.num_steps),
                                eps=config.learner.adam_eps)
    apply = network.apply
    example = jnp.zeros((config.history, *observer.element_shape), observer.element_dtype)
    self._init_keys, self.act_keys = member_keys(config.seed, n)
    self.state = self.place(jax.vmap(lambda k: init(k, network, example, self.optimizer))(
        self._init_keys))
    self._reset = xla.jit(jax.vmap(lambda s, k: reset(s, k, network, example, self.optimizer)),
                          convolutional=convolutional, donate_argnums=0)
    one_update = functools.partial(update, apply=apply, optimizer=self.optimizer,
                                   double=config.learner.double, loss_kind=config.learner.loss,
                                   target_update_period=config.learner.target_update_period)
    self.update_mode = population_update_mode(config.learner.population_update, convolutional)
    batched = jax.vmap(one_update) if self.update_mode == "vmap" else unrolled(one_update, n)
    if self.mesh is not None:
      parallel.check_batch_size(config.learner.batch_size, self.mesh)
      sharding = parallel.batch_sharding(self.mesh, axis=1)  # [members, batch, ...]
      self.update = xla.jit(lambda state, batch: batched(
          state, jax.lax.with_sharding_constraint(batch, sharding)), convolutional=convolutional,
                            donate_argnums=0)
    else:
      self.update = xla.jit(batched, convolutional=convolutional, donate_argnums=0)

    def population_act(params, observation, keys, step, epsilon):
      """[N, G] actions for [N, G, H, ...]: member m acts in its G games with its own key."""
      step_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, step)
      return jax.vmap(lambda p, o, k: act(p, o, k, epsilon, apply))(
          params, observation, step_keys)

    self._act = xla.jit(population_act, convolutional=convolutional)
    self._observation_ndim = example.ndim

  def reset(self, state: LearnerState, index: int) -> LearnerState:
    """`state` with every member's network drawn anew (`reset`), member s from its own seed's
    key folded with `index`, so it resets as a one-member run of seed + s would."""
    keys = jax.vmap(jax.random.fold_in, (0, None))(self._init_keys, index)
    return self.place(self._reset(state, keys))

  def place(self, state: LearnerState) -> LearnerState:
    """`state` where the update expects it: on every device of the mesh (or as it is)."""
    return state if self.mesh is None else parallel.replicate(state, self.mesh)

  def act(self, observation: np.ndarray, step: int, epsilon: float,
          keys: jax.Array | None = None) -> np.ndarray:
    """Actions [N] for each member's observation [N, H, ...], or [N, G] for G games per member
    [N, G, H, ...] (evaluation plays several at once); `keys`: other exploration keys, e.g. for
    evaluation games."""
    keys = self.act_keys if keys is None else keys
    observation = jnp.asarray(observation)
    single = observation.ndim == 1 + self._observation_ndim
    actions = self._act(self.state.params, observation[:, None] if single else observation,
                        keys, jnp.int32(step), jnp.float32(epsilon))
    return np.asarray(actions[:, 0] if single else actions)
