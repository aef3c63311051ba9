"""Replay on the host: a population of N circular buffers written in lockstep, n-step sampling.

Every agent step writes one slot per population member:
  observation[t]  what the agent saw at step t: an 84x84 frame for pixel DQN, the detector's
                  keypoint record [K, 2 + C] for KeyQN (one element; histories are built here)
  action[t]       the action taken at t
  reward[t]       the learning (clipped) reward that followed
  terminal[t]     the transition from t ended in a terminal state for learning (game over or a
                  lost life): nothing is bootstrapped past it
  end[t]          the episode ended after step t (game over or the time limit): slot t + 1
                  starts another episode
  start[t]        the absolute index of the first slot of t's episode

Indices are absolute (the number of slots written before); slot = index % capacity.

A history of H elements ending at j is observation[j-H+1 .. j], where indices before the
episode's first slot (or older than the oldest slot kept) repeat that slot: the padding of
gymnasium's FrameStackObservation, which the actors use too (`History`).

An n-step sample starting at i is (history(i), action[i], R, discount, history(i + m)):
  R = sum_{k<m} gamma^k reward[i+k], where m = n, or fewer when terminal[i+k] ends the window
  first (then discount = 0 and the next history is never used); otherwise discount = gamma^n.
A window that meets an episode end that is not terminal (the 27,000-step limit) before n steps,
or needs slots not yet written, cannot be sampled; such draws are drawn again.

Sampling draws from each member's own numpy Generator, so member s of a population samples
exactly what a single-member run of seed s would.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass
class Batch:
  """[N, B, ...] arrays of one sample per population member."""
  observation: np.ndarray  # [N, B, H, *element]
  action: np.ndarray  # int32 [N, B]
  reward: np.ndarray  # float32 [N, B], n-step discounted learning reward
  discount: np.ndarray  # float32 [N, B], gamma^n, or 0 after a terminal
  next_observation: np.ndarray  # [N, B, H, *element]


class Replay:
  """N circular buffers of `capacity` slots (module docstring).

  Args:
    num_members: population size N.
    capacity: slots per member.
    element_shape, element_dtype: one observation element.
    history: H, elements per agent observation.
    n_step: n of the n-step return.
    discount: gamma.
  """

  def __init__(self, num_members: int, capacity: int, element_shape: tuple[int, ...],
               element_dtype: Any, history: int, n_step: int, discount: float):
    if capacity < history + n_step + 1:
      raise ValueError(f"replay capacity {capacity} is too small for history {history} and "
                       f"n-step {n_step}")
    if history < 1 or n_step < 1 or not 0.0 <= discount <= 1.0:
      raise ValueError(f"bad replay settings: history {history}, n-step {n_step}, "
                       f"discount {discount}")
    self.num_members, self.capacity = num_members, capacity
    self.history, self.n_step, self.discount = history, n_step, float(discount)
    n, c = num_members, capacity
    self.observation = np.zeros((n, c, *element_shape), element_dtype)
    self.action = np.zeros((n, c), np.int32)
    self.reward = np.zeros((n, c), np.float32)
    self.terminal = np.zeros((n, c), bool)
    self.end = np.zeros((n, c), bool)
    self.start = np.zeros((n, c), np.int64)
    self.count = 0  # slots written per member (all members write in lockstep)
    self._episode_start = np.zeros(n, np.int64)
    self._members = np.arange(n)

  def __len__(self) -> int:
    return min(self.count, self.capacity)

  def add(self, observation: np.ndarray, action: np.ndarray, reward: np.ndarray,
          terminal: np.ndarray, end: np.ndarray) -> None:
    """Writes step t of every member: arrays with leading axis N (see module docstring)."""
    slot = self.count % self.capacity
    self.observation[:, slot] = observation
    self.action[:, slot] = action
    self.reward[:, slot] = reward
    self.terminal[:, slot] = terminal
    self.end[:, slot] = end
    self.start[:, slot] = self._episode_start
    self.count += 1
    # A member whose episode ended starts its next one at the next slot.
    self._episode_start = np.where(np.asarray(end, bool), self.count, self._episode_start)

  def _oldest(self) -> int:
    return max(0, self.count - self.capacity)

  def _histories(self, member: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Observation histories [..., H, *element] ending at absolute `index` of `member`."""
    first = np.maximum(self.start[member, index % self.capacity], self._oldest())
    offsets = np.arange(-(self.history - 1), 1)
    indices = np.maximum(index[..., None] + offsets, first[..., None])
    return self.observation[member[..., None], indices % self.capacity]

  def _windows(self, member: int, index: np.ndarray):
    """(valid, R, discount, m) of the n-step windows starting at `index` [B] of `member`."""
    steps = index[:, None] + np.arange(self.n_step)  # [B, n]
    written = steps < self.count
    slots = steps % self.capacity
    terminal = self.terminal[member, slots] & written
    end = self.end[member, slots] & written
    # The window stops after the first terminal (inclusive); an end that is not terminal
    # before that, or a step not yet written, makes the window unusable.
    stopped_before = np.cumsum(terminal, axis=1) - terminal > 0
    in_window = ~stopped_before
    hits_terminal = terminal.any(axis=1)
    length = np.where(hits_terminal, np.argmax(terminal, axis=1) + 1, self.n_step)
    bad_end = (end & ~terminal & in_window).any(axis=1)
    # Without a terminal the next history needs slot index + n to be written.
    complete = np.where(hits_terminal, (written | ~in_window).all(axis=1),
                        index + self.n_step < self.count)
    valid = complete & ~bad_end & (index >= self._oldest())
    powers = self.discount ** np.arange(self.n_step)
    rewards = np.where(in_window & written, self.reward[member, slots], 0.0)
    returns = (rewards * powers).sum(axis=1)
    discount = np.where(hits_terminal, 0.0, self.discount ** self.n_step)
    return valid, returns.astype(np.float32), discount.astype(np.float32), length

  def can_sample(self) -> bool:
    """Whether enough has been written for a complete window."""
    return self.count > self.n_step + 1

  def sample(self, rngs: list[np.random.Generator], batch_size: int) -> Batch:
    """One batch per member, member s drawing from rngs[s]; invalid windows are redrawn."""
    if not self.can_sample():
      raise ValueError(f"replay holds {self.count} steps; at least {self.n_step + 2} are "
                       "needed to sample")
    out = {k: [] for k in ("observation", "action", "reward", "discount", "next_observation")}
    low = self._oldest()
    for member, rng in enumerate(rngs):
      index = rng.integers(low, self.count, size=batch_size)
      valid, returns, discount, length = self._windows(member, index)
      for _ in range(1000):
        if valid.all():
          break
        redraw = rng.integers(low, self.count, size=int((~valid).sum()))
        index[~valid] = redraw
        v, r, d, m = self._windows(member, index)
        valid, returns, discount, length = v, r, d, m
      else:
        raise RuntimeError("replay found no valid n-step window in 1000 draws")
      members = np.full(batch_size, member)
      nxt = np.minimum(index + length, self.count - 1)
      out["observation"].append(self._histories(members, index))
      out["next_observation"].append(self._histories(members, nxt))
      out["action"].append(self.action[member, index % self.capacity])
      out["reward"].append(returns)
      out["discount"].append(discount)
    return Batch(**{k: np.stack(v) for k, v in out.items()})

  # ------------------------------------------------------------------------------------------
  # Checkpointing: only the slots written are saved.

  def state_dict(self) -> dict[str, np.ndarray]:
    """The buffer as arrays to checkpoint, in slot order oldest first."""
    order = np.arange(self._oldest(), self.count) % self.capacity
    return {"observation": self.observation[:, order], "action": self.action[:, order],
            "reward": self.reward[:, order], "terminal": self.terminal[:, order],
            "end": self.end[:, order], "start": self.start[:, order],
            "count": np.int64(self.count), "episode_start": self._episode_start.copy()}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    """Restores `state_dict()` into this (empty, same-shaped) buffer."""
    count = int(state["count"])
    stored = tuple(np.asarray(state["observation"]).shape[2:])
    if stored != self.observation.shape[2:]:
      raise ValueError(f"replay checkpoint holds observations of shape {list(stored)}, this "
                       f"run stores {list(self.observation.shape[2:])}: it was made with other "
                       f"settings (start a new run directory)")
    kept = np.asarray(state["action"]).shape[1]
    if kept != min(count, self.capacity) or np.asarray(state["action"]).shape[0] != \
        self.num_members:
      raise ValueError(f"replay checkpoint holds {kept} slots of "
                       f"{np.asarray(state['action']).shape[0]} members, expected "
                       f"{min(count, self.capacity)} of {self.num_members}")
    order = np.arange(max(0, count - self.capacity), count) % self.capacity
    for name in ("observation", "action", "reward", "terminal", "end", "start"):
      getattr(self, name)[:, order] = np.asarray(state[name])
    self.count = count
    self._episode_start = np.asarray(state["episode_start"], np.int64).copy()


class History:
  """The actors' side of the history: the last H elements of each member's current episode,
  padded at an episode's start with its first element (as `Replay` does)."""

  def __init__(self, first: np.ndarray, history: int):
    self.stack = np.repeat(np.asarray(first)[:, None], history, axis=1)  # [N, H, *element]

  def push(self, element: np.ndarray, new_episode: np.ndarray,
           moved: np.ndarray | None = None) -> np.ndarray:
    """Appends each member's newest element; members starting a new episode are refilled with
    it; members not `moved` (bool [N], default all) keep their stacks. Returns the stacks
    [N, H, *element]."""
    element = np.asarray(element)
    shifted = np.concatenate([self.stack[:, 1:], element[:, None]], axis=1)
    fresh = np.repeat(element[:, None], self.stack.shape[1], axis=1)
    row = lambda x: np.asarray(x, bool).reshape((-1,) + (1,) * (self.stack.ndim - 1))
    stack = np.where(row(new_episode), fresh, shifted)
    self.stack = stack if moved is None else np.where(row(moved), stack, self.stack)
    return self.stack
