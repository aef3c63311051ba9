"""A synthetic control task for the keypoint-options learner (`rl.options`): K sprites on the
plane, one moved by the actions, the others wandering on their own.

Observations are the sprites' positions as keypoint records float32 [K, 2] ((x, y) in [-1, 1],
y down), what a perfect detector would report, so that tests of controllability need no
Transporter. Actions: 0 stay, 1 right, 2 left, 3 down, 4 up, each a move of `speed`. Every other
sprite takes a random step of the same size in one of the four directions (or stays) at every
step, whatever the action. Positions are clipped to [-1, 1]. Episodes last `episode_length`
steps and end without a terminal state.
"""

from __future__ import annotations

import numpy as np

MOVES = np.array([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]], np.float32)  # per action


class SpriteControl:
  """`num_sprites` sprites; sprite `controlled` follows the actions (module docstring)."""
  num_actions = len(MOVES)

  def __init__(self, num_sprites: int = 3, controlled: int = 0, speed: float = 0.1,
               episode_length: int = 50, seed: int = 0):
    if not 0 <= controlled < num_sprites:
      raise ValueError(f"controlled sprite {controlled} is not one of {num_sprites}")
    self.num_sprites, self.controlled = num_sprites, controlled
    self.speed, self.episode_length = speed, episode_length
    self._rng = np.random.default_rng(seed)
    self.positions = np.zeros((num_sprites, 2), np.float32)
    self._t = 0

  @property
  def element_shape(self) -> tuple[int, int]:
    return (self.num_sprites, 2)

  def reset(self) -> np.ndarray:
    self.positions = self._rng.uniform(-0.8, 0.8, (self.num_sprites, 2)).astype(np.float32)
    self._t = 0
    return self.positions.copy()

  def step(self, action: int) -> tuple[np.ndarray, bool]:
    """(positions [K, 2] after the move, whether the episode ended)."""
    moves = MOVES[self._rng.integers(0, len(MOVES), self.num_sprites)]
    moves[self.controlled] = MOVES[int(action)]
    self.positions = np.clip(self.positions + self.speed * moves, -1.0, 1.0).astype(np.float32)
    self._t += 1
    return self.positions.copy(), self._t >= self.episode_length
