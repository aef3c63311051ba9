"""TD targets and the Q-learning loss, as pure functions of [B]-shaped arrays.

Conventions: `reward` is the (n-step) discounted learning reward R and `discount` the factor in
front of the bootstrap value, gamma^n, or 0 when the window ended in a terminal state
(`rl.replay`). Q-values are [B, A].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LOSSES = ("huber", "mse")


def td_target(reward: jax.Array, discount: jax.Array, next_q_target: jax.Array,
              next_q_online: jax.Array | None = None) -> jax.Array:
  """R + discount * Q_target(s', a*) [B], a constant for the gradient.

  a* = argmax_a Q_target(s', a) (DQN), or argmax_a Q_online(s', a) when `next_q_online` is
  given (double DQN: the online network picks, the target network evaluates).
  """
  chooser = next_q_target if next_q_online is None else next_q_online
  best = jnp.argmax(chooser, axis=-1)
  bootstrap = jnp.take_along_axis(next_q_target, best[:, None], axis=-1)[:, 0]
  return jax.lax.stop_gradient(reward + discount * bootstrap)


def q_loss(q: jax.Array, action: jax.Array, target: jax.Array,
           kind: str = "huber") -> tuple[jax.Array, jax.Array]:
  """(mean loss, TD errors [B]) of Q(s, a) [B, A] at `action` [B] against `target` [B].

  "huber": the Huber loss with delta 1 (quadratic within 1, linear beyond), as in DQN;
  "mse": half the squared error.
  """
  chosen = jnp.take_along_axis(q, action[:, None].astype(jnp.int32), axis=-1)[:, 0]
  error = target - chosen
  if kind == "huber":
    abs_error = jnp.abs(error)
    loss = jnp.where(abs_error <= 1.0, 0.5 * error ** 2, abs_error - 0.5)
  elif kind == "mse":
    loss = 0.5 * error ** 2
  else:
    raise ValueError(f"unknown loss {kind!r}; expected one of {', '.join(LOSSES)}")
  return loss.mean(), error
