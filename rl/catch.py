"""Catch (as in bsuite): a small pixel task for fast, exact agent tests.

A ball falls one row per step from a random column of the top row; the agent moves a paddle
along the bottom row (actions: 0 left, 1 stay, 2 right). When the ball reaches the bottom row
the episode ends with reward +1 if the paddle is under it, else -1. The uniform random policy
scores about -0.7; the optimal policy scores +1.

Frames are rendered from the 8x8 grid: "colour" frames uint8 [16, 16, 3] (a red ball and a
green paddle on black), "grey" frames uint8 [84, 84] (pixel DQN's input size). The environment
follows the interface of `rl.atari.make`'s: gymnasium's reset / step, `info["life_lost"]`
(always False) and `snapshot` / `restore`.
"""

from __future__ import annotations

import pickle

import gymnasium
import numpy as np

ENV_ID = "catch"
ROWS = COLUMNS = 8
SIZES = {"colour": (16, 16), "grey": (84, 84)}
BALL = np.array([255, 60, 60], np.uint8)
PADDLE = np.array([60, 255, 60], np.uint8)


class Catch(gymnasium.Env):
  """See the module docstring."""

  def __init__(self, observation: str = "colour"):
    if observation not in SIZES:
      raise ValueError(f"unknown observation kind {observation!r}; expected one of "
                       f"{', '.join(SIZES)}")
    self.kind = observation
    height, width = SIZES[observation]
    shape = (height, width, 3) if observation == "colour" else (height, width)
    self.observation_space = gymnasium.spaces.Box(0, 255, shape, np.uint8)
    self.action_space = gymnasium.spaces.Discrete(3)
    self._rows = (np.arange(height) * ROWS) // height  # grid row of each pixel row
    self._columns = (np.arange(width) * COLUMNS) // width
    self.ball = np.zeros(2, np.int64)  # (row, column)
    self.paddle = 0

  def _render(self) -> np.ndarray:
    frame = np.zeros((len(self._rows), len(self._columns), 3), np.uint8)
    frame[np.ix_(self._rows == self.ball[0], self._columns == self.ball[1])] = BALL
    frame[np.ix_(self._rows == ROWS - 1, self._columns == self.paddle)] = PADDLE
    if self.kind == "grey":
      return (frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    return frame

  def reset(self, *, seed: int | None = None, options=None):
    super().reset(seed=seed)
    self.ball = np.array([0, self.np_random.integers(COLUMNS)])
    self.paddle = int(self.np_random.integers(COLUMNS))
    return self._render(), {"life_lost": False, "lives": 0}

  def step(self, action):
    self.paddle = int(np.clip(self.paddle + int(action) - 1, 0, COLUMNS - 1))
    self.ball[0] += 1
    terminated = bool(self.ball[0] == ROWS - 1)
    reward = 0.0
    if terminated:
      reward = 1.0 if self.paddle == self.ball[1] else -1.0
    return self._render(), reward, terminated, False, {"life_lost": False, "lives": 0}


def make(seed: int, observation: str = "colour") -> Catch:
  env = Catch(observation)
  env.reset(seed=seed)
  return env


def observation_shape(observation: str) -> tuple[int, ...]:
  height, width = SIZES[observation]
  return (height, width, 3) if observation == "colour" else (height, width)


def snapshot(env: Catch) -> bytes:
  return pickle.dumps((env.ball.copy(), env.paddle, env.np_random.bit_generator.state))


def restore(env: Catch, blob: bytes) -> None:
  ball, env.paddle, state = pickle.loads(blob)
  env.ball = np.array(ball)
  env.np_random.bit_generator.state = state


def random_episodes(num_episodes: int, seed: int,
                    observation: str = "colour") -> list[np.ndarray]:
  """Frames [T, ...] of `num_episodes` games of the uniform random policy (for training a
  keypoint detector on Catch)."""
  env = make(seed, observation)
  rng = np.random.default_rng(seed)
  episodes = []
  for _ in range(num_episodes):
    frame, _ = env.reset()
    frames, done = [frame], False
    while not done:
      frame, _, done, _, _ = env.step(int(rng.integers(3)))
      frames.append(frame)
    episodes.append(np.stack(frames))
  return episodes
