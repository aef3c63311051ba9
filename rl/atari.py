"""The Atari-100k evaluation protocol, as the data-efficient RL literature runs it.

Settings (those of dopamine's Atari-100k agents and BBF), built from gymnasium's wrappers:
  * the base ALE environment with `frameskip=1` and `repeat_action_probability=0` (no sticky
    actions) and the minimal action set;
  * `gymnasium.wrappers.AtariPreprocessing`: each agent step repeats the action for 4 emulator
    frames and returns the pixel-wise max of the last two (Atari sprites flicker), and a reset
    starts with 1-30 uniform no-op steps (`noop_max=30`);
  * episodes end at game over, or are truncated after 27,000 agent steps (108,000 frames,
    ALE's `max_num_frames_per_episode`);
  * a lost life ends the *learning* episode only: `LifeLoss` adds `info["life_lost"]`, which the
    agents treat as terminal when bootstrapping, while the game goes on;
  * rewards are clipped to [-1, 1] for learning (`clip_reward`); scores are reported raw.

Three observation kinds:
  * "grey": 84x84 greyscale uint8, the input of pixel DQN (stacked over 4 steps by the agent);
  * "colour": the raw 210x160x3 RGB screen (max-pooled), the input of the keypoint detector,
    which resizes it exactly as the frames of its training data were resized;
  * "ram": the console's 128 RAM bytes after the step (uint8 [128]), from which
    `keypoints.ground_truth` reads the objects' positions (the KeyQN oracle, `rl.agents`).

`snapshot` / `restore` capture everything the environment carries between steps (the emulator
with its RNG, the no-op RNG, the wrappers' counters), so a resumed agent run continues from the
same emulator state.
"""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium
import numpy as np

from rl import envs

NOOP_MAX = 30
FRAME_SKIP = 4
MAX_EPISODE_STEPS = 27_000  # agent steps; x FRAME_SKIP emulator frames
GREY_SIZE = 84
OBSERVATIONS = ("grey", "colour", "ram")


class LifeLoss(gymnasium.Wrapper):
  """Adds `info["life_lost"]`: the step lost a life (and did not end the game).

  The learner treats it as a terminal state; the environment carries on (no reset), so the
  reported episode return is the whole game's. Lives are read from ALE's `info["lives"]`.
  """

  def __init__(self, env: gymnasium.Env):
    super().__init__(env)
    self.lives = 0

  def reset(self, **kwargs):
    observation, info = self.env.reset(**kwargs)
    self.lives = int(info["lives"])
    info["life_lost"] = False
    return observation, info

  def step(self, action):
    observation, reward, terminated, truncated, info = self.env.step(action)
    lives = int(info["lives"])
    info["life_lost"] = bool(lives < self.lives and not terminated)
    self.lives = lives
    return observation, reward, terminated, truncated, info


class RamObservation(gymnasium.ObservationWrapper):
  """Replaces the screen by the console RAM after the step (the frames are still rendered and
  max-pooled below, so the game runs exactly as with a screen observation)."""

  def __init__(self, env: gymnasium.Env):
    super().__init__(env)
    self.observation_space = gymnasium.spaces.Box(0, 255, (envs.RAM_SIZE,), np.uint8)

  def observation(self, observation):
    del observation
    return self.env.unwrapped.ale.getRAM().copy()


def make(env_id: str, seed: int, observation: str = "grey") -> gymnasium.Env:
  """An ALE game under the Atari-100k protocol (module docstring), already reset with `seed`.

  Args:
    env_id: a gymnasium ALE id such as "ALE/Pong-v5" (its v5 defaults are overridden).
    seed: seeds the emulator and the no-op starts of every episode of this environment.
    observation: "grey" (uint8 [84, 84]), "colour" (uint8 [210, 160, 3]) or "ram" (uint8
      [128]).

  Raises:
    ValueError: an unknown id or observation kind (one line).
  """
  if observation not in OBSERVATIONS:
    raise ValueError(f"unknown observation kind {observation!r}; expected one of "
                     f"{', '.join(OBSERVATIONS)}")
  if envs.parse_env_id(env_id).source != "ale":
    raise ValueError(f"unknown environment {env_id!r}: the Atari-100k protocol needs an ALE "
                     "id such as 'ALE/Pong-v5'")
  gym = envs.import_gymnasium()
  env = gym.make(env_id, frameskip=1, repeat_action_probability=0.0,
                 max_num_frames_per_episode=MAX_EPISODE_STEPS * FRAME_SKIP)
  if observation == "grey":
    size, grey = GREY_SIZE, True
  else:
    size, grey = (envs.ALE_RAW_WIDTH, envs.ALE_RAW_HEIGHT), False  # (width, height): no resize
  env = gym.wrappers.AtariPreprocessing(env, noop_max=NOOP_MAX, frame_skip=FRAME_SKIP,
                                        screen_size=size, terminal_on_life_loss=False,
                                        grayscale_obs=grey, scale_obs=False)
  if observation == "ram":
    env = RamObservation(env)
  env = LifeLoss(env)
  env.reset(seed=seed)
  return env


def observation_shape(observation: str) -> tuple[int, ...]:
  """The shape of one observation of the given kind."""
  if observation == "grey":
    return (GREY_SIZE, GREY_SIZE)
  if observation == "ram":
    return (envs.RAM_SIZE,)
  return (envs.ALE_RAW_HEIGHT, envs.ALE_RAW_WIDTH, 3)


def clip_reward(reward):
  """The learning reward: the raw score change clipped to [-1, 1]."""
  return np.clip(reward, -1.0, 1.0)


def _preprocessing(env: gymnasium.Env) -> gymnasium.Wrapper:
  while not isinstance(env, gymnasium.wrappers.AtariPreprocessing):
    env = env.env
  return env


def snapshot(env: gymnasium.Env) -> bytes:
  """Everything `make`'s environment carries from one step to the next, as bytes.

  The emulator state (RAM, frame counters, its RNG), the generator that draws no-op starts,
  and the wrappers' life counters. The max-pool buffers are refilled by every step.
  """
  ale = env.unwrapped.ale
  preprocessing = _preprocessing(env)
  return pickle.dumps({
      "ale": ale.cloneState(include_rng=True),
      "np_random": env.unwrapped.np_random.bit_generator.state,
      "lives": (env.lives, preprocessing.lives, preprocessing.game_over),
  })


def restore(env: gymnasium.Env, blob: bytes) -> None:
  """Puts an environment built by `make` (same id and kind) into a `snapshot`'s state."""
  state: dict[str, Any] = pickle.loads(blob)
  env.unwrapped.ale.restoreState(state["ale"])
  env.unwrapped.np_random.bit_generator.state = state["np_random"]
  preprocessing = _preprocessing(env)
  env.lives, preprocessing.lives, preprocessing.game_over = state["lives"]
