"""A population of N game environments stepped in lockstep on the host.

Games: any ALE id under the Atari-100k protocol (`rl.atari`), or "catch" (`rl.catch`, a small
task for tests). Member s plays its own environment (seeded from its own seed) and keeps its own
observation history; the observer (pixel frames or the keypoint detector) is called once per
step on all N frames. Episode bookkeeping follows `rl.atari`: a lost life is terminal for
learning, the game goes on; a finished game (or the 27,000-step limit) resets the member's
environment, and its raw score is reported.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
from tqdm import tqdm

from rl import atari
from rl import catch
from rl import replay as replay_lib


def _game(env_id: str):
  """The module that builds `env_id`: rl.catch for "catch", else rl.atari."""
  return catch if env_id == catch.ENV_ID else atari


def make_env(env_id: str, seed: int, observation: str):
  """An environment of the Atari-100k protocol (an ALE id) or Catch ("catch"), already reset."""
  if env_id == catch.ENV_ID:
    return catch.make(seed, observation)
  return atari.make(env_id, seed, observation)


def observation_shape(env_id: str, observation: str) -> tuple[int, ...]:
  """The shape of one observation of the game."""
  return _game(env_id).observation_shape(observation)


def num_actions(env_id: str) -> int:
  """The size of the game's (minimal) action set."""
  env = make_env(env_id, 0, "grey")
  try:
    return int(env.action_space.n)
  finally:
    env.close()


@dataclasses.dataclass
class Transition:
  """What step t wrote for every member ([N] arrays, element [N, ...])."""
  element: np.ndarray
  action: np.ndarray
  reward: np.ndarray  # clipped
  terminal: np.ndarray
  end: np.ndarray
  raw_reward: np.ndarray


class Actors:
  """N environments of one game with their histories and running episode scores."""

  def __init__(self, env_id: str, seeds: list[int], observer: Callable[[np.ndarray], np.ndarray],
               history: int):
    self.observer = observer
    self._game = _game(env_id)
    self.envs = [make_env(env_id, int(s), observer.observation) for s in seeds]
    frames = np.stack([env.reset(seed=int(s))[0] for env, s in zip(self.envs, seeds)])
    self.frames = frames
    self.element = observer(frames)
    self.history = replay_lib.History(self.element, history)
    n = len(seeds)
    self.episode_return = np.zeros(n, np.float64)
    self.episode_length = np.zeros(n, np.int64)

  @property
  def num_members(self) -> int:
    return len(self.envs)

  def ram(self) -> np.ndarray:
    """Each member's console RAM, uint8 [N, 128] (ALE games only)."""
    return np.stack([env.unwrapped.ale.getRAM() for env in self.envs])

  def observation(self) -> np.ndarray:
    """Each member's current history [N, H, *element]."""
    return self.history.stack

  def step(self, actions: np.ndarray, active: np.ndarray | None = None
           ) -> tuple[Transition, list[tuple[int, float, int]]]:
    """Steps every member (or only the `active` ones, bool [N]: the others keep their frame,
    observation and history, and the observer sees only the active frames); returns the
    transition to store and the games that finished, as (member, raw score, length in agent
    steps)."""
    n = self.num_members
    reward = np.zeros(n, np.float32)
    terminal = np.zeros(n, bool)
    end = np.zeros(n, bool)
    frames, finished = list(self.frames), []
    for s, (env, action) in enumerate(zip(self.envs, np.asarray(actions))):
      if active is not None and not active[s]:
        continue
      frame, r, term, trunc, info = env.step(int(action))
      reward[s] = r
      terminal[s] = term or info["life_lost"]
      end[s] = term or trunc
      self.episode_return[s] += r
      self.episode_length[s] += 1
      if end[s]:
        finished.append((s, float(self.episode_return[s]), int(self.episode_length[s])))
        self.episode_return[s] = 0.0
        self.episode_length[s] = 0
        frame, _ = env.reset()
      frames[s] = frame
    transition = Transition(self.element, np.asarray(actions, np.int32),
                            atari.clip_reward(reward).astype(np.float32), terminal, end, reward)
    self.frames = np.stack(frames)
    if active is None:
      self.element = self.observer(self.frames)
    else:
      self.element = self.element.copy()
      rows = np.flatnonzero(active)
      if len(rows):
        self.element[rows] = self._observe(self.frames[rows])
    self.history.push(self.element, end, active)
    return transition, finished

  def _observe(self, frames: np.ndarray) -> np.ndarray:
    """The observer on some members' frames, padded to a power of two (at most N) so that a
    jitted observer compiles for a few batch sizes only."""
    size = min(1 << (len(frames) - 1).bit_length(), self.num_members)
    pad = np.repeat(frames[-1:], size - len(frames), axis=0)
    return self.observer(np.concatenate([frames, pad]))[:len(frames)]

  def state_dict(self) -> dict[str, np.ndarray]:
    """Everything needed to continue exactly: environments, histories and running scores."""
    state = {"history": self.history.stack, "element": self.element, "frames": self.frames,
             "episode_return": self.episode_return, "episode_length": self.episode_length}
    for s, env in enumerate(self.envs):
      state[f"env_{s}"] = np.frombuffer(self._game.snapshot(env), np.uint8)
    return state

  def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
    for s, env in enumerate(self.envs):
      self._game.restore(env, np.asarray(state[f"env_{s}"], np.uint8).tobytes())
    self.history.stack = np.asarray(state["history"]).copy()
    self.element = np.asarray(state["element"]).copy()
    self.frames = np.asarray(state["frames"]).copy()
    self.episode_return = np.asarray(state["episode_return"], np.float64).copy()
    self.episode_length = np.asarray(state["episode_length"], np.int64).copy()

  def close(self) -> None:
    for env in self.envs:
      env.close()


def evaluate(actors: Actors, policy: Callable[[np.ndarray, int], np.ndarray], episodes: int,
             max_steps: int | None = None,
             on_step: Callable[[Actors, np.ndarray, np.ndarray], None] | None = None,
             games_at_once: int = 1,
             desc: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(raw scores, lengths in agent steps), each [M, episodes], of the games of
  `policy(observation [M * G, H, ...], step) -> actions [M * G]`.

  `actors` holds M members' G = `games_at_once` environments each, member-major (environment
  m * G + g is member m's slot g): every member plays `episodes` games, G at a time. Slot g
  plays a number of games fixed in advance (episodes // G, one more for the first
  episodes % G slots) and its scores are kept whatever the games' lengths, so running games
  side by side never favours short games. `max_steps` bounds the steps of the loop (each steps
  every environment once); games not finished by then have NaN as score and length. A slot that
  has played its games is no longer stepped (nor observed). `on_step(actors, actions, playing)`
  sees every step (e.g. to record a video), with `playing` [M * G] bool marking the slots that
  still play (the others' frames stand still). `desc` names a progress bar of the games played
  (none if None).
  """
  if games_at_once < 1 or actors.num_members % games_at_once:
    raise ValueError(f"{actors.num_members} environments do not hold {games_at_once} games "
                     "per member")
  num_members = actors.num_members // games_at_once
  quota = np.array([episodes // games_at_once + (g < episodes % games_at_once)
                    for g in range(games_at_once)] * num_members)
  played = np.zeros(actors.num_members, np.int64)
  scores = np.full((num_members, episodes), np.nan)
  lengths = np.full((num_members, episodes), np.nan)
  done = np.zeros(num_members, np.int64)
  step = 0
  with tqdm(total=int(quota.sum()), desc=desc, unit="game", leave=False,
            disable=desc is None) as bar:
    playing = played < quota
    while playing.any() and (max_steps is None or step < max_steps):
      actions = policy(actors.observation(), step)
      if on_step is not None:
        on_step(actors, actions, playing)
      _, finished = actors.step(actions, playing)
      for env, score, length in finished:
        played[env] += 1
        member = env // games_at_once
        scores[member, done[member]] = score
        lengths[member, done[member]] = length
        done[member] += 1
      bar.update(len(finished))
      step += 1
      playing = played < quota
      if step % 500 == 0:  # a long game (e.g. one that waits for FIRE) still shows progress
        bar.set_postfix(steps=step, playing=int(playing.sum()))
  return scores, lengths
