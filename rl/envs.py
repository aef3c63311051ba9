"""Environment construction and random-policy (or chasing) episodes for frame datasets.

Two kinds of environment are supported, named by one id string:

* Atari through the Arcade Learning Environment, any gymnasium ALE id such as "ALE/Pong-v5".
  Observations are the raw 210x160 RGB screen. Settings are those of the v5 ids, applied to every
  id so that datasets are comparable: the emulator repeats each action for `frameskip=4`
  frames (one observation every 4th frame) and uses sticky actions with
  `repeat_action_probability=0.25` (each emulator frame keeps the previous action with that
  probability). The ground truth is the console's 128-byte RAM after each observation.
* The dm_control manipulator arm, in its own domain, "dm_control/manipulator-<task>" with <task>
  one of `MANIPULATOR_TASKS`, and in the stacker domain, "dm_control/stacker-<task>" with <task>
  one of `STACKER_TASKS` (stack_2, stack_4: the arm stacking 2 or 4 boxes). Frames are rendered
  directly at the requested size from a fixed camera (default: camera 0, "fixed", which looks
  at the arm from the side). One frame is stored every
  `action_repeat=4` control steps (each 10 ms of simulated time), the random action held for all
  of them, so the arm visibly moves between frames. The ground truth is the pixel position of
  every visible body's centre of mass (`manipulator_body_names`), which for these single-shape
  parts is the centre of the shape drawn.

Pixel coordinates follow the project's convention: (x, y) with (0, 0) the centre of the top-left
pixel, x to the right and y down, in pixels of the rendered frame. Points behind the camera are
NaN; points in front of it but outside the frame keep their (out-of-range) coordinates.

Every episode is a pure function of its seed: the environment and the uniform random policy are
both seeded from it, so re-collecting an episode reproduces it bit for bit on the same machine.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from keypoints import data
from keypoints import ground_truth

# The Atari constants live with the RAM maps in keypoints.ground_truth.
ALE_RAW_HEIGHT = ground_truth.RAW_HEIGHT
ALE_RAW_WIDTH = ground_truth.RAW_WIDTH
RAM_SIZE = ground_truth.RAM_SIZE
ATARI_FRAMESKIP = 4
ATARI_REPEAT_ACTION_PROBABILITY = 0.25

DM_CONTROL_PREFIX = "dm_control/"
MANIPULATOR_CAMERA_ID = 0
MANIPULATOR_CAMERA_NAME = "fixed"
MANIPULATOR_ACTION_REPEAT = 4
# Tracked bodies, in this order, for those the task's model contains: the arm from the shoulder
# out, then the props. The world, the invisible "pinch site" and the peg's pommel (part of the
# peg) are left out.
_MANIPULATOR_BODIES = ("upper_arm", "middle_arm", "lower_arm", "hand", "thumb", "thumbtip",
                       "finger", "fingertip", "ball", "peg", "target_ball", "target_peg", "cup",
                       "slot", "box0", "box1", "box2", "box3", "target")
# The manipulator model's offscreen framebuffer, the largest frame it can render (the model's
# vis.global_.offheight / offwidth; tests/test_envs.py checks they agree).
MANIPULATOR_MAX_HEIGHT = 480
MANIPULATOR_MAX_WIDTH = 640
_MANIPULATOR_PROPS = {"bring_ball": ("ball", "target_ball"), "bring_peg": ("peg", "target_peg"),
                      "insert_ball": ("ball", "target_ball", "cup"),
                      "insert_peg": ("peg", "target_peg", "slot")}
MANIPULATOR_TASKS = tuple(_MANIPULATOR_PROPS)
# The stacker domain: the same arm, model and cameras, with boxes to stack on a target.
_STACKER_PROPS = {"stack_2": ("box0", "box1", "target"),
                  "stack_4": ("box0", "box1", "box2", "box3", "target")}
STACKER_TASKS = tuple(_STACKER_PROPS)
_ARM_PROPS = {"manipulator": _MANIPULATOR_PROPS, "stacker": _STACKER_PROPS}
DM_CONTROL_IDS = tuple(f"{DM_CONTROL_PREFIX}{domain}-{task}"
                       for domain, props in _ARM_PROPS.items() for task in props)

POLICY = "uniform_random"
# "chase" (Pong and Breakout): the player's paddle moves towards the ball, read from the RAM
# (keypoints.ground_truth), with a uniform random action on CHASE_RANDOM_FRACTION of the steps.
# A data-collection policy, not a label: its frames reach what random play never shows (Pong
# rallies, the player's score past 9), where a detector trained on random play alone may fail.
POLICIES = (POLICY, "chase")
CHASE_RANDOM_FRACTION = 0.1
# Per game: the axis along which the paddle moves (0: x, 1: y), the actions that lower and raise
# that coordinate, and the action while no ball is shown (Breakout serves with FIRE).
_CHASE = {"Pong": (1, 2, 3, 0), "Breakout": (0, 3, 2, 1)}


@dataclasses.dataclass(frozen=True)
class EnvId:
  """A parsed environment id.

  Attributes:
    name: the id as given, e.g. "ALE/Pong-v5" or "dm_control/manipulator-bring_ball".
    source: "ale" or "dm_control" (the dataset metadata's "source").
    task: the dm_control task; None for ALE.
    domain: the dm_control domain ("manipulator" or "stacker"); None for ALE.
  """
  name: str
  source: str
  task: str | None = None
  domain: str | None = None


def parse_env_id(env_id: str) -> EnvId:
  """Checks an environment id without building the environment.

  Raises:
    ValueError: with one line naming the id and why it is not usable.
  """
  if env_id.startswith(DM_CONTROL_PREFIX):
    domain, _, task = env_id[len(DM_CONTROL_PREFIX):].partition("-")
    if env_id not in DM_CONTROL_IDS:
      raise ValueError(f"unknown environment {env_id!r}: dm_control ids are "
                       f"{', '.join(DM_CONTROL_IDS)}")
    return EnvId(env_id, "dm_control", task, domain)
  gymnasium = import_gymnasium()
  try:
    spec = gymnasium.spec(env_id)
  except gymnasium.error.Error as e:
    raise ValueError(f"unknown environment {env_id!r}: {_one_line(e)}") from None
  if not str(spec.entry_point).startswith("ale_py"):
    raise ValueError(f"unknown environment {env_id!r}: not an Atari (ALE) id such as "
                     f"'ALE/Pong-v5', nor a dm_control id ({', '.join(DM_CONTROL_IDS)})")
  return EnvId(env_id, "ale")


def _check_frame_size(height: int, width: int) -> None:
  if height <= 0 or width <= 0:
    raise ValueError(f"frame size must be positive, got {height}x{width}")


def _check_manipulator_frame_size(height: int, width: int) -> None:
  _check_frame_size(height, width)
  if height > MANIPULATOR_MAX_HEIGHT or width > MANIPULATOR_MAX_WIDTH:
    raise ValueError(f"frame size {height}x{width} exceeds the manipulator's offscreen buffer of "
                     f"{MANIPULATOR_MAX_HEIGHT}x{MANIPULATOR_MAX_WIDTH}")


def _check_sizes(height: int, width: int, max_frames: int) -> None:
  _check_frame_size(height, width)
  if max_frames < 1:
    raise ValueError(f"episodes need at least one frame, got a cap of {max_frames}")


def episode_seed(seed: int, index: int) -> int:
  """The seed of episode `index` of a collection seeded with `seed`.

  Depends on nothing else, so a resumed collection re-creates exactly the missing episodes.
  """
  return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


# --------------------------------------------------------------------------------------------
# Atari.


def import_gymnasium():
  import ale_py  # pylint: disable=g-import-not-at-top
  import gymnasium  # pylint: disable=g-import-not-at-top
  gymnasium.register_envs(ale_py)
  # The emulator prints a banner on stderr for every environment otherwise.
  ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
  return gymnasium


def _one_line(error: Exception) -> str:
  return " ".join(str(error).split())


def make_atari(env_id: str, seed: int, frameskip: int = ATARI_FRAMESKIP,
               repeat_action_probability: float = ATARI_REPEAT_ACTION_PROBABILITY):
  """An ALE environment with RGB observations, already reset with `seed`.

  Args:
    env_id: a gymnasium ALE id, e.g. "ALE/Pong-v5".
    seed: seeds the emulator, including its sticky-action randomness.
    frameskip: emulator frames per step; the action is repeated over them.
    repeat_action_probability: sticky actions, the probability that the emulator keeps the
      previous action on each frame.

  Returns:
    A gymnasium environment with observations uint8 [210, 160, 3]; `read_ram(env)` gives its RAM.

  Raises:
    ValueError: for an id that is not a known ALE environment (one line).
  """
  if parse_env_id(env_id).source != "ale":
    raise ValueError(f"unknown environment {env_id!r}: not an Atari (ALE) id")
  gymnasium = import_gymnasium()
  try:
    env = gymnasium.make(env_id, obs_type="rgb", frameskip=frameskip,
                         repeat_action_probability=repeat_action_probability)
  except gymnasium.error.Error as e:
    raise ValueError(f"unknown environment {env_id!r}: {_one_line(e)}") from None
  env.reset(seed=seed)
  return env


def read_ram(env) -> np.ndarray:
  """The console RAM of an ALE environment, uint8 [128], as of the latest observation."""
  return np.array(env.unwrapped.ale.getRAM(), np.uint8)


def _chase_game(env_id: str) -> str:
  """The game name of an ALE id, if the "chase" policy knows it (one-line ValueError if not)."""
  game = env_id.split("/")[-1].split("-")[0] if parse_env_id(env_id).source == "ale" else None
  if game not in _CHASE:
    raise ValueError(f"policy 'chase' knows {', '.join(_CHASE)}, not {env_id!r}")
  return game


def chase_action(env_id: str, ram: np.ndarray) -> int:
  """The "chase" policy's action for a console RAM: move the player's paddle towards the ball
  along its axis (nothing within 3 pixels; the game's serve action while no ball is shown)."""
  axis, lower, raise_, no_ball = _CHASE[_chase_game(env_id)]
  names = ground_truth.object_names(env_id)
  xy = ground_truth.atari_positions(env_id, np.asarray(ram, np.uint8)[None])[0]
  player, ball = xy[names.index("player"), axis], xy[names.index("ball"), axis]
  if not np.isfinite(ball):
    return no_ball
  if not np.isfinite(player) or abs(ball - player) < 3:
    return 0
  return lower if ball < player else raise_


def policy_action(env_id: str, policy: str, ram: np.ndarray, rng: np.random.Generator,
                  num_actions: int) -> int:
  """One action of `policy` (one of `POLICIES`) given the latest RAM; draws from `rng` as
  collection always has: one integer for the random policy, and for "chase" first the draw of
  whether this step is random."""
  if policy == POLICY or rng.random() < CHASE_RANDOM_FRACTION:
    return int(rng.integers(num_actions))
  return chase_action(env_id, ram)


def _atari_episode(env_id: str, seed: int, max_frames: int, height: int, width: int,
                   policy: str = POLICY) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  env_seed, policy_seed = np.random.SeedSequence(seed).generate_state(2)
  env = make_atari(env_id, int(env_seed))
  rng = np.random.default_rng(int(policy_seed))
  try:
    # make_atari reset the environment already; resetting again with the same seed is
    # deterministic and hands back the first observation.
    observation, _ = env.reset(seed=int(env_seed))
    frames, rams = [observation], [read_ram(env)]
    while len(frames) < max_frames:
      action = policy_action(env_id, policy, rams[-1], rng, env.action_space.n)
      observation, _, terminated, truncated, _ = env.step(action)
      frames.append(observation)
      rams.append(read_ram(env))
      if terminated or truncated:
        break
  finally:
    env.close()
  return data.resize_frames(np.stack(frames), height, width), {"ram": np.stack(rams)}


# --------------------------------------------------------------------------------------------
# dm_control manipulator.


def project_points(camera_matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
  """Projects world points [N, 3] to (x, y) pixels [N, 2] through a 3x4 camera matrix.

  The matrix is dm_control's `Camera.matrix`, whose image origin is the centre of the top-left
  pixel with y down (checked against rendered frames in the tests). Its third output is the
  point's depth along the camera's z axis, which points backwards (MuJoCo cameras look along
  -z), so points in front of the camera have a negative third component; the rest become NaN.
  """
  points = np.asarray(points, np.float64)
  homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ camera_matrix.T
  w = homogeneous[:, 2:]
  xy = homogeneous[:, :2] / np.where(w == 0, np.nan, w)
  return np.where(w < 0, xy, np.nan)


class Manipulator:
  """A dm_control task of the manipulator arm (domain "manipulator" or "stacker") seen from one
  camera, with body positions in pixels.

  Build with `make_manipulator`. The camera object both renders the frames and gives the
  projection, so frames and positions always agree.
  """

  def __init__(self, task: str, seed: int, height: int, width: int,
               camera_id: int | str = MANIPULATOR_CAMERA_ID,
               action_repeat: int = MANIPULATOR_ACTION_REPEAT, domain: str = "manipulator"):
    if task not in _ARM_PROPS.get(domain, {}):
      raise ValueError(f"unknown {domain} task {task!r}: the arm's tasks are "
                       f"{', '.join(DM_CONTROL_IDS)}")
    _check_manipulator_frame_size(height, width)
    if action_repeat < 1:
      raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
    # Imported here so that ALE-only use never loads MuJoCo. MuJoCo picks its OpenGL backend
    # when first imported; EGL renders without a display (a user's own MUJOCO_GL wins).
    os.environ.setdefault("MUJOCO_GL", "egl")
    from dm_control import mujoco  # pylint: disable=g-import-not-at-top
    from dm_control import suite  # pylint: disable=g-import-not-at-top
    self._env = suite.load(domain, task, task_kwargs={"random": seed})
    physics = self._env.physics
    model = physics.model
    cameras = [model.id2name(i, "camera") for i in range(model.ncam)]
    if camera_id in cameras:
      camera_id = cameras.index(camera_id)
    # Only the model's own cameras: the free camera (-1) has no fixed pose to document.
    if not isinstance(camera_id, (int, np.integer)) or not 0 <= camera_id < len(cameras):
      raise ValueError(f"bad camera {camera_id!r} for the manipulator: expected an index in "
                       f"[0, {len(cameras)}) or one of {', '.join(cameras)}")
    self.camera_id = int(camera_id)
    self.camera_name = cameras[self.camera_id]
    self._camera = mujoco.Camera(physics, height=height, width=width, camera_id=self.camera_id)
    self.position_names = manipulator_body_names(task, domain)
    self._body_ids = np.array([model.name2id(n, "body") for n in self.position_names])
    self.action_repeat = action_repeat
    self.height, self.width = height, width
    self.reset()

  @property
  def physics(self):
    return self._env.physics

  @property
  def control_timestep(self) -> float:
    """Simulated seconds between two frames."""
    return self._env.control_timestep() * self.action_repeat

  def reset(self) -> None:
    """Starts a new episode (initial state drawn from the task's seeded randomness)."""
    self._env.reset()

  def step(self, action: np.ndarray) -> bool:
    """Holds `action` for `action_repeat` control steps; True when the episode has ended."""
    for _ in range(self.action_repeat):
      if self._env.step(action).last():
        return True
    return False

  def random_action(self, rng: np.random.Generator) -> np.ndarray:
    """An action drawn uniformly within the action spec's bounds."""
    spec = self._env.action_spec()
    return rng.uniform(spec.minimum, spec.maximum).astype(spec.dtype)

  def render(self) -> np.ndarray:
    """The current frame, uint8 [height, width, 3] (a new array each call)."""
    # The camera renders into one reused buffer: without the copy every frame of an episode
    # would end up as its last.
    return np.array(self._camera.render())

  def camera_matrix(self) -> np.ndarray:
    """The camera's current 3x4 projection matrix (see `project_points`)."""
    return self._camera.matrix

  def positions(self) -> np.ndarray:
    """Pixel (x, y) of the tracked bodies' centres, float32 [N, 2] (order: `position_names`)."""
    centres = self.physics.data.xipos[self._body_ids]
    return project_points(self.camera_matrix(), centres).astype(np.float32)

  def close(self) -> None:
    self._env.close()


def make_manipulator(task: str = "bring_ball", seed: int = 0, height: int = 80, width: int = 80,
                     camera_id: int | str = MANIPULATOR_CAMERA_ID,
                     action_repeat: int = MANIPULATOR_ACTION_REPEAT,
                     domain: str = "manipulator") -> Manipulator:
  """A task of the manipulator arm rendering [height, width] frames from `camera_id`, reset.

  Args:
    task: one of `MANIPULATOR_TASKS`, or of `STACKER_TASKS` with domain "stacker".
    seed: seeds the task's initial states.
    height, width: rendered frame size in pixels.
    camera_id: a camera of the model by index or name; 0 ("fixed") is the side view.
    action_repeat: control steps (10 ms each) per frame.
    domain: "manipulator" or "stacker".
  """
  return Manipulator(task, seed, height, width, camera_id, action_repeat, domain)


def manipulator_body_names(task: str, domain: str = "manipulator") -> tuple[str, ...]:
  """The bodies whose positions a dataset of the arm's `task` stores, in order: the arm's, then
  the task's props."""
  all_props = {n for props in _ARM_PROPS.values() for task_props in props.values()
               for n in task_props}
  return tuple(n for n in _MANIPULATOR_BODIES
               if n not in all_props or n in _ARM_PROPS[domain][task])


def _manipulator_episode(task: str, seed: int, max_frames: int, height: int, width: int,
                         domain: str = "manipulator",
                         ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  env_seed, policy_seed = np.random.SeedSequence(seed).generate_state(2)
  env = make_manipulator(task, int(env_seed), height, width, domain=domain)
  rng = np.random.default_rng(int(policy_seed))
  try:
    frames, positions = [env.render()], [env.positions()]
    while len(frames) < max_frames:
      done = env.step(env.random_action(rng))
      frames.append(env.render())
      positions.append(env.positions())
      if done:
        break
  finally:
    env.close()
  return np.stack(frames), {"positions": np.stack(positions)}


# --------------------------------------------------------------------------------------------
# Episodes and dataset metadata.


def collect_episode(env_id: str, seed: int, max_frames: int, height: int, width: int,
                    policy: str = POLICY) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """Runs one episode of the uniform random policy (or of `policy`, one of `POLICIES`).

  The episode ends at termination or truncation (its last frame included) or after
  `max_frames` frames, whichever comes first.

  Args:
    env_id: an ALE id or one of `DM_CONTROL_IDS`.
    seed: seeds both the environment and the policy (see `episode_seed`).
    max_frames: the most frames to return.
    height, width: size of the returned frames. ALE screens are resized with
      `keypoints.data.resize_frames`; manipulator frames are rendered at this size.

  Returns:
    (frames uint8 [T, height, width, 3], ground truth): {"ram": uint8 [T, 128]} for ALE,
    {"positions": float32 [T, N, 2]} for the manipulator (pixels of the stored frames).

  Raises:
    ValueError: for an unknown environment id or a bad size (one line).
  """
  _check_sizes(height, width, max_frames)
  check_policy(env_id, policy)
  env = parse_env_id(env_id)
  if env.source == "ale":
    return _atari_episode(env_id, seed, max_frames, height, width, policy)
  return _manipulator_episode(env.task, seed, max_frames, height, width, env.domain)


def check_policy(env_id: str, policy: str) -> None:
  """One-line ValueError unless `policy` is one of `POLICIES` and can play `env_id`."""
  if policy not in POLICIES:
    raise ValueError(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
  if policy == "chase":
    _chase_game(env_id)


def dataset_metadata(env_id: str, height: int, width: int, seed: int,
                     max_episode_frames: int, policy: str = POLICY) -> dict[str, Any]:
  """Everything that determines a dataset's episodes, as its metadata.json holds it.

  Two collections with equal metadata produce identical episodes, which is what makes resuming
  a collection safe.

  Raises:
    ValueError: for an unknown environment id or a bad size (one line).
  """
  _check_sizes(height, width, max_episode_frames)
  if seed < 0:
    raise ValueError(f"seed must be >= 0, got {seed}")
  check_policy(env_id, policy)
  env = parse_env_id(env_id)
  common = {"env": env_id, "height": height, "width": width, "seed": seed,
            "max_episode_frames": max_episode_frames, "policy": policy}
  if env.source == "ale":
    return {"source": "ale", **common, "raw_height": ALE_RAW_HEIGHT, "raw_width": ALE_RAW_WIDTH,
            "frameskip": ATARI_FRAMESKIP,
            "repeat_action_probability": ATARI_REPEAT_ACTION_PROBABILITY,
            "ground_truth": ["ram"]}
  _check_manipulator_frame_size(height, width)
  return {"source": "dm_control", **common, "raw_height": height, "raw_width": width,
          "domain": env.domain, "task": env.task, "camera_id": MANIPULATOR_CAMERA_ID,
          "camera_name": MANIPULATOR_CAMERA_NAME,
          "action_repeat": MANIPULATOR_ACTION_REPEAT,
          "position_names": list(manipulator_body_names(env.task, env.domain)),
          "ground_truth": ["positions"]}
