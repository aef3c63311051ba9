"""The agents' parts: what each stores per step (its observer), and its Q-network.

  pixel_dqn  the 84x84 greyscale frame (`rl.atari` "grey"); NatureCNN over the last H frames.
  keyqn      a frozen Transporter detector's keypoint record of the colour frame (Atari: the raw
             screen, which the detector resizes as its training frames were): for each
             of the K keypoints its (x, y) scaled to [-1, 1] of the frame and the C Phi features
             sampled at it, float32 [K, 2 + C] (only the positions, [K, 2], where the
             network reads no features); KeypointQNetwork over the last H records.

  keyqn_ram  an oracle for KeyQN: the game's objects read from the console RAM
             (`keypoints.ground_truth`) instead of a detector's keypoints, float32 [M, 3] per
             step: each object's (x, y) in [-1, 1] of the raw screen and 1, or (0, 0, 0) while
             it is not on the screen; the same KeypointQNetwork. It tells how well KeyQN's
             learner plays from exact object positions, apart from the detector.
             `--config.oracle_hidden=noise` drops the flag (records [M, 2]) and gives a hidden
             object a random (x, y), as a detector's keypoint of an absent object wanders;
             `--config.oracle_jitter=s` adds Gaussian noise of s raw pixels to every shown
             object's x and y, as a detector's keypoints scatter about their objects.

The detector runs ONCE per environment step (on all population members' frames in one call) and
its records go into replay; updates never run it again.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import numpy as np

from keypoints import ground_truth
from rl import actors
from rl import dqn
from rl import networks

AGENTS = ("keyqn", "pixel_dqn", "keyqn_ram")

# The settings whose default is the agent's own (None in experiments/configs/agent.py until
# `with_agent_defaults` fills them), as measured over 3 seeds on Pong and Breakout (README,
# "KeyQN"): KeyQN's MLP on a few coordinates reads the keypoints' positions alone and learns
# at Adam 3e-4 (pixel DQN's 1e-4 is too slow for it); the RAM oracle is KeyQN's network and
# learner on exact positions, so it shares KeyQN's learning rate. `use_features` concerns a
# detector's features only (True, the network's plain case, elsewhere).
AGENT_DEFAULTS = {
    "keyqn": {"learner.learning_rate": 3e-4, "network.use_features": False},
    "keyqn_ram": {"learner.learning_rate": 3e-4, "network.use_features": True},
    "pixel_dqn": {"learner.learning_rate": 1e-4, "network.use_features": True},
}


def with_agent_defaults(config):
  """A copy of an agent config whose unset (None) fields of AGENT_DEFAULTS hold its agent's
  defaults; fields set on the command line are kept. Every binary, benchmark and test that
  builds a learner from experiments/configs/agent.py resolves it with this first (config.json
  records the resolved values)."""
  config = config.copy_and_resolve_references()
  for field, value in AGENT_DEFAULTS.get(config.agent, {}).items():
    group, name = field.split(".")
    if config[group][name] is None:
      config[group][name] = value
  return config


class UnitFrame:
  """(x, y) in frame pixels <-> [-1, 1] of a width x height frame: the coordinates both KeyQN
  observers record (0 and width - 1 map to -1 and 1)."""

  def __init__(self, width: int, height: int):
    self._scale = np.array([2.0 / (width - 1), 2.0 / (height - 1)], np.float32)

  def to_unit(self, xy: np.ndarray) -> np.ndarray:
    return xy * self._scale - 1.0

  def to_pixels(self, unit: np.ndarray) -> np.ndarray:
    return (unit + 1.0) / self._scale


class PixelObserver:
  """Grey frames are stored as they are."""
  observation = "grey"

  def __init__(self, frame_shape: tuple[int, ...]):
    self.element_shape = tuple(frame_shape)
    self.element_dtype = np.uint8

  def __call__(self, frames: np.ndarray) -> np.ndarray:
    return np.asarray(frames, np.uint8)


class KeypointObserver:
  """Colour frames [N, H, W, 3] (Atari: the raw 210x160 screen) -> keypoint records float32
  [N, K, 2 + C], or [N, K, 2] with `use_features=False` (the positions alone: the detector
  then runs Psi only, not Phi)."""
  observation = "colour"

  def __init__(self, detector, frame_shape: tuple[int, ...], use_features: bool = True,
               keypoints: tuple[int, ...] = ()):
    """`keypoints`: the detector's keypoints to record, by index, in that order (empty: all
    K), e.g. to drop spare keypoints in an ablation."""
    self.detector = detector
    self.use_features = use_features
    num = detector.num_keypoints
    bad = [k for k in keypoints if not 0 <= k < num]
    if bad or len(set(keypoints)) != len(keypoints):
      raise ValueError(f"network.keypoints {tuple(keypoints)} must be distinct indices of the "
                       f"detector's {num} keypoints (0 to {num - 1})")
    self.keypoints = np.array(keypoints if keypoints else range(num), np.int64)
    height, width, _ = frame_shape
    self._frame = UnitFrame(width, height)
    self.element_shape = self(np.zeros((1, height, width, 3), np.uint8)).shape[1:]
    self.element_dtype = np.float32

  def __call__(self, frames: np.ndarray) -> np.ndarray:
    if not self.use_features:
      xy = np.asarray(self.detector(frames))[:, self.keypoints]
      return self._frame.to_unit(xy).astype(np.float32)
    xy, features = self.detector.features(frames)
    xy, features = np.asarray(xy)[:, self.keypoints], np.asarray(features)[:, self.keypoints]
    return np.concatenate([self._frame.to_unit(xy), features], axis=-1).astype(np.float32)

  def pixels(self, records: np.ndarray) -> np.ndarray:
    """Keypoints in frame pixels [..., K, 2] of records [..., K, 2 + C] (no detector call)."""
    return self._frame.to_pixels(records[..., :2])


class ObjectObserver:
  """Console RAM [N, 128] -> the game's objects as records float32 [N, M, 3] (`keyqn_ram`, in
  the module docstring).

  `hidden` says how an object off the screen is recorded: "flag" (the default): (0, 0) and a
  shown flag of 0, records [M, 3]; "noise": no flag, records [M, 2], and a hidden object's
  (x, y) uniform in [-1, 1], as a detector's keypoint wanders while its object is away (an
  ablation: does the oracle need to be told that the ball is gone?). `jitter` > 0 adds
  Gaussian noise of that many raw pixels (std) to the x and y of every shown object (an
  ablation: does a detector's scatter about the objects cost the learner?). The noise is drawn
  from a generator seeded by the RAM's bytes, so one console state always gives one record
  (runs repeat and resume exactly)."""
  observation = "ram"
  HIDDEN = ("flag", "noise")

  def __init__(self, env_id: str, hidden: str = "flag", jitter: float = 0.0):
    if hidden not in self.HIDDEN:
      raise ValueError(f"unknown oracle_hidden {hidden!r}; expected one of "
                       f"{', '.join(self.HIDDEN)}")
    if not jitter >= 0:
      raise ValueError(f"oracle_jitter must be >= 0 raw pixels, got {jitter}")
    self.env_id = env_id
    self.hidden = hidden
    self.jitter = float(jitter)
    self._frame = UnitFrame(ground_truth.RAW_WIDTH, ground_truth.RAW_HEIGHT)
    self.element_shape = (len(ground_truth.object_names(env_id)), 3 if hidden == "flag" else 2)
    self.element_dtype = np.float32

  def __call__(self, ram: np.ndarray) -> np.ndarray:
    xy = ground_truth.atari_positions(self.env_id, ram)  # raw pixels, NaN: not shown
    shown = np.isfinite(xy).all(axis=-1, keepdims=True)
    if self.hidden == "noise" or self.jitter:
      rngs = [np.random.default_rng(list(np.asarray(r, np.uint8))) for r in ram]
    if self.hidden == "noise":
      # (Drawn first: the same records as before jitter existed when jitter is 0.)
      noise = np.stack([rng.uniform(-1.0, 1.0, xy.shape[1:]) for rng in rngs])
    if self.jitter:
      xy = xy + self.jitter * np.stack([rng.standard_normal(xy.shape[1:]) for rng in rngs])
    if self.hidden == "noise":
      return np.where(shown, self._frame.to_unit(xy), noise).astype(np.float32)
    xy = np.where(shown, self._frame.to_unit(xy), 0.0)
    return np.concatenate([xy, shown], axis=-1).astype(np.float32)

  def pixels(self, records: np.ndarray) -> np.ndarray:
    """Objects in raw screen pixels [..., M, 2] (NaN: not shown; with hidden="noise" every
    object is drawn, wherever the record puts it)."""
    xy = self._frame.to_pixels(records[..., :2])
    if records.shape[-1] == 2:
      return xy
    return np.where(records[..., 2:] > 0, xy, np.nan)


@dataclasses.dataclass(frozen=True)
class Agent:
  name: str
  observer: Callable[[np.ndarray], np.ndarray]
  network: nn.Module

  @property
  def convolutional(self) -> bool:
    """Whether the Q-network is convolutional (decides how a population's update is batched,
    `rl.dqn.population_update_mode`)."""
    return isinstance(self.network, networks.NatureCNN)


def build(name: str, env_id: str, detector=None, embed_sizes=(64, 32),
          hidden_sizes=(512,), feature_norm: bool = False, use_features: bool = True,
          keypoints: tuple[int, ...] = (), oracle_hidden: str = "flag",
          oracle_jitter: float = 0.0) -> Agent:
  """The agent `name` for the game `env_id` ("keyqn" needs the detector); `keypoints` is
  KeyQN's `KeypointObserver(keypoints=...)`, `oracle_hidden` and `oracle_jitter` keyqn_ram's
  `ObjectObserver(hidden=..., jitter=...)`; the other keyword arguments are `KeypointQNetwork`'s (the
  config's `network` fields)."""
  if use_features is None:
    raise ValueError("network.use_features is unset: resolve the config with "
                     "rl.agents.with_agent_defaults first")
  num_actions = actors.num_actions(env_id)
  if name == "pixel_dqn":
    return Agent(name, PixelObserver(actors.observation_shape(env_id, "grey")),
                 networks.NatureCNN(num_actions))
  if name == "keyqn":
    if detector is None:
      raise ValueError("keyqn needs a trained Transporter: pass --config.keypoint_run=<run dir>")
    return Agent(name, KeypointObserver(detector, actors.observation_shape(env_id, "colour"),
                                        use_features, tuple(keypoints)),
                 networks.KeypointQNetwork(num_actions, tuple(embed_sizes), tuple(hidden_sizes),
                                           feature_norm, use_features))
  if name == "keyqn_ram":
    return Agent(name, ObjectObserver(env_id, oracle_hidden, oracle_jitter),
                 networks.KeypointQNetwork(num_actions, tuple(embed_sizes), tuple(hidden_sizes)))
  raise ValueError(f"unknown agent {name!r}; expected one of {', '.join(AGENTS)}")


def check_keypoint_run(run_dir: str, env_id: str) -> None:
  """Refuses (one line) a KeyQN detector trained on another game's frames."""
  from keypoints import data  # pylint: disable=g-import-not-at-top
  from keypoints import run_dir as run_dir_lib  # pylint: disable=g-import-not-at-top
  if not run_dir:
    raise ValueError("keyqn needs a trained Transporter: pass --config.keypoint_run=<run dir>")
  config = run_dir_lib.read_config(run_dir)
  try:
    trained_on = data.read_metadata(config.dataset.path).get("env")
  except (OSError, ValueError):
    return  # the dataset is not on this machine: nothing to compare against
  if trained_on is not None and trained_on != env_id:
    raise ValueError(f"the detector in {run_dir} was trained on {trained_on} frames, not "
                     f"{env_id}")


def population_checks(config, n_step: int) -> list[tuple[bool, str]]:
  """(ok, message) checks of the fields every population-of-learners config has (the agents'
  and the keypoint explorer's): seeds, steps, history and the DQN learner's settings."""
  learner = config.learner
  return [
      (config.num_seeds >= 1, f"num_seeds must be >= 1, got {config.num_seeds}"),
      (config.seed >= 0, f"seed must be >= 0, got {config.seed}"),
      (config.num_steps >= 1, f"num_steps must be >= 1, got {config.num_steps}"),
      (config.history >= 1, f"history must be >= 1, got {config.history}"),
      (learner.batch_size >= 1, f"learner.batch_size must be >= 1, got {learner.batch_size}"),
      (learner.learning_rate > 0, f"learner.learning_rate must be > 0, got "
                                  f"{learner.learning_rate}"),
      (learner.get("lr_decay", "constant") in dqn.LR_DECAYS,
       f"learner.lr_decay must be one of {', '.join(dqn.LR_DECAYS)}, got "
       f"{learner.get('lr_decay')!r}"),
      (0 <= learner.get("lr_end_fraction", 0.0) <= 1,
       f"learner.lr_end_fraction must be in [0, 1], got {learner.get('lr_end_fraction')}"),
      (0 <= learner.discount <= 1, f"learner.discount must be in [0, 1], got "
                                   f"{learner.discount}"),
      (learner.loss in ("huber", "mse"), f"learner.loss must be huber or mse, got "
                                         f"{learner.loss!r}"),
      (learner.min_replay >= n_step + 2,
       f"learner.min_replay must be >= n_step + 2 = {n_step + 2}, got {learner.min_replay}"),
      (learner.update_period >= 1, f"learner.update_period must be >= 1, got "
                                   f"{learner.update_period}"),
      (learner.target_update_period >= 1, f"learner.target_update_period must be >= 1, got "
                                          f"{learner.target_update_period}"),
      (learner.replay_capacity >= config.history + n_step + 1,
       f"learner.replay_capacity must be >= history + n_step + 1, got "
       f"{learner.replay_capacity}"),
  ]


def raise_first_failed(checks: list[tuple[bool, str]]) -> None:
  """Raises ValueError with the message of the first failed (ok, message) check."""
  for ok, message in checks:
    if not ok:
      raise ValueError(message)


def validate(config) -> None:
  """Raises ValueError (one line) for an unusable agent config."""
  if config.agent not in AGENTS:
    raise ValueError(f"unknown agent {config.agent!r}; expected one of {', '.join(AGENTS)}")
  learner = config.learner
  checks = [
      (learner.n_step >= 1, f"learner.n_step must be >= 1, got {learner.n_step}"),
      *population_checks(config, learner.n_step),
      (learner.updates_per_step >= 1, f"learner.updates_per_step must be >= 1, got "
                                      f"{learner.updates_per_step}"),
      (learner.reset_every >= 0, f"learner.reset_every must be >= 0 (0: never), got "
                                 f"{learner.reset_every}"),
      (learner.population_update in ("auto", "vmap", "unrolled"),
       f"learner.population_update must be auto, vmap or unrolled, got "
       f"{learner.population_update!r}"),
      (config.eval_every >= 0, f"eval_every must be >= 0, got {config.eval_every}"),
      (config.eval_episodes >= 1 and config.final_eval_episodes >= 1,
       "eval_episodes and final_eval_episodes must be >= 1"),
      (config.eval_games_at_once >= 1,
       f"eval_games_at_once must be >= 1, got {config.eval_games_at_once}"),
      (config.video_steps >= 0, f"video_steps must be >= 0, got {config.video_steps}"),
      (config.network.use_features or not config.network.feature_norm,
       "network.feature_norm normalises the detector's features, which "
       "network.use_features=False (KeyQN's default) drops: set use_features=True with it"),
      (config.agent != "keyqn_ram" or (config.network.use_features and
                                        not config.network.feature_norm),
       "network.use_features and network.feature_norm concern a detector's features; "
       "keyqn_ram reads RAM objects: leave both at their defaults"),
      (config.agent == "keyqn" or not config.network.keypoints,
       f"network.keypoints picks a detector's keypoints; {config.agent} has none: leave it "
       "empty"),
      (config.oracle_hidden in ObjectObserver.HIDDEN,
       f"oracle_hidden must be one of {', '.join(ObjectObserver.HIDDEN)}, got "
       f"{config.oracle_hidden!r}"),
      (config.agent == "keyqn_ram" or config.oracle_hidden == "flag",
       "oracle_hidden concerns keyqn_ram's RAM objects: leave it at flag for "
       f"{config.agent}"),
      (config.oracle_jitter >= 0,
       f"oracle_jitter must be >= 0 raw pixels, got {config.oracle_jitter}"),
      (config.agent == "keyqn_ram" or config.oracle_jitter == 0,
       f"oracle_jitter concerns keyqn_ram's RAM objects: leave it at 0 for {config.agent}"),
      (config.agent != "keyqn_ram" or config.env_id in ground_truth.SUPPORTED_GAMES,
       f"keyqn_ram reads the objects of {', '.join(ground_truth.SUPPORTED_GAMES)} from RAM, "
       f"not of {config.env_id}"),
      # The learner splits every member's batch over this machine's devices.
      (learner.batch_size % jax.local_device_count() == 0,
       f"learner.batch_size {learner.batch_size} does not split over "
       f"{jax.local_device_count()} devices: use a multiple of {jax.local_device_count()}"),
  ]
  for e in ("epsilon_start", "epsilon_end", "eval_epsilon"):
    value = config.exploration[e]
    checks.append((0 <= value <= 1, f"exploration.{e} must be in [0, 1], got {value}"))
  raise_first_failed(checks)
