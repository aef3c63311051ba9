"""Tests for rl/envs.py on the real emulator and the real MuJoCo physics and renderer."""

import numpy as np
import pytest

from rl import envs

_PONG = "ALE/Pong-v5"
_MANIPULATOR = "dm_control/manipulator-bring_ball"
_GEOM = 5  # mujoco.mjtObj.mjOBJ_GEOM, the object type of geoms in segmentation renders


# --------------------------------------------------------------------------------------------
# Atari.


def test_pong_episode_shapes_and_dtypes():
  frames, truth = envs.collect_episode(_PONG, seed=0, max_frames=40, height=48, width=40)
  assert frames.shape == (40, 48, 40, 3) and frames.dtype == np.uint8
  assert set(truth) == {"ram"}
  assert truth["ram"].shape == (40, envs.RAM_SIZE) and truth["ram"].dtype == np.uint8


def test_pong_ram_and_frames_change_over_time():
  frames, truth = envs.collect_episode(_PONG, seed=0, max_frames=40, height=48, width=40)
  ram = truth["ram"]
  assert len(np.unique(ram, axis=0)) > 20  # Pong keeps a timer byte that changes every step
  assert not np.array_equal(frames[0], frames[-1])


def test_pong_is_deterministic_in_its_seed():
  a_frames, a_truth = envs.collect_episode(_PONG, seed=3, max_frames=30, height=32, width=32)
  b_frames, b_truth = envs.collect_episode(_PONG, seed=3, max_frames=30, height=32, width=32)
  np.testing.assert_array_equal(a_frames, b_frames)
  np.testing.assert_array_equal(a_truth["ram"], b_truth["ram"])
  _, c_truth = envs.collect_episode(_PONG, seed=4, max_frames=30, height=32, width=32)
  assert not np.array_equal(a_truth["ram"], c_truth["ram"])


def test_make_atari_gives_raw_screens_and_ram():
  env = envs.make_atari(_PONG, seed=0)
  try:
    observation, *_ = env.step(0)
    assert observation.shape == (envs.ALE_RAW_HEIGHT, envs.ALE_RAW_WIDTH, 3)
    ram = envs.read_ram(env)
    assert ram.shape == (envs.RAM_SIZE,) and ram.dtype == np.uint8
  finally:
    env.close()


@pytest.mark.parametrize("env_id", ["ALE/Foo-v5", "ALE/Pong-v4", "CartPole-v1", "nonsense",
                                    "dm_control/cartpole-swingup",
                                    "dm_control/manipulator-fly"])
def test_unknown_env_id_is_one_line_value_error(env_id):
  with pytest.raises(ValueError, match="unknown environment") as error:
    envs.collect_episode(env_id, seed=0, max_frames=5, height=8, width=8)
  assert "\n" not in str(error.value) and env_id in str(error.value)


def test_make_atari_rejects_unknown_id():
  with pytest.raises(ValueError, match="unknown environment 'ALE/Foo-v5'"):
    envs.make_atari("ALE/Foo-v5", seed=0)


def test_episode_seeds_are_stable_and_distinct():
  assert envs.episode_seed(0, 1) == envs.episode_seed(0, 1)
  seeds = {envs.episode_seed(s, i) for s in range(3) for i in range(50)}
  assert len(seeds) == 150


# --------------------------------------------------------------------------------------------
# dm_control manipulator.


def test_manipulator_episode_shapes_and_determinism():
  frames, truth = envs.collect_episode(_MANIPULATOR, seed=1, max_frames=12, height=32, width=40)
  names = envs.manipulator_body_names("bring_ball")
  assert frames.shape == (12, 32, 40, 3) and frames.dtype == np.uint8
  assert set(truth) == {"positions"}
  positions = truth["positions"]
  assert positions.shape == (12, len(names), 2) and positions.dtype == np.float32
  assert np.isfinite(positions).all()
  # The arm moves between frames, and so does what the frames show.
  assert np.abs(positions[-1, :8] - positions[0, :8]).max() > 1.0
  changed = np.abs(np.diff(frames.astype(np.int16), axis=0)).max(axis=(1, 2, 3)) > 0
  assert changed.mean() > 0.8, changed
  again_frames, again_truth = envs.collect_episode(_MANIPULATOR, seed=1, max_frames=12,
                                                   height=32, width=40)
  np.testing.assert_array_equal(frames, again_frames)
  np.testing.assert_array_equal(positions, again_truth["positions"])


@pytest.mark.parametrize("env_id", envs.DM_CONTROL_IDS)
def test_metadata_names_the_bodies_the_environment_tracks(env_id):
  parsed = envs.parse_env_id(env_id)
  task, domain = parsed.task, parsed.domain
  env = envs.make_manipulator(task, seed=0, height=16, width=16, domain=domain)
  try:
    assert env.position_names == envs.manipulator_body_names(task, domain)
    # Every tracked body is in the task's model.
    model = env.physics.model
    assert set(env.position_names) <= {model.id2name(i, "body") for i in range(model.nbody)}
    assert (env.camera_id, env.camera_name) == (envs.MANIPULATOR_CAMERA_ID,
                                                envs.MANIPULATOR_CAMERA_NAME)
    offscreen = env.physics.model.vis.global_
    assert (offscreen.offheight, offscreen.offwidth) == (envs.MANIPULATOR_MAX_HEIGHT,
                                                         envs.MANIPULATOR_MAX_WIDTH)
  finally:
    env.close()
  metadata = envs.dataset_metadata(env_id, 16, 16, 0, 10)
  assert metadata["position_names"] == list(env.position_names)
  assert (metadata["domain"], metadata["task"]) == (domain, task)


def test_stacker_ids_parse_and_bad_ones_name_every_dm_control_id():
  assert envs.parse_env_id("dm_control/stacker-stack_4") == envs.EnvId(
      "dm_control/stacker-stack_4", "dm_control", "stack_4", "stacker")
  assert envs.manipulator_body_names("stack_4", "stacker")[-5:] == (
      "box0", "box1", "box2", "box3", "target")
  for bad in ("dm_control/stacker-stack_3", "dm_control/manipulator-stack_4"):
    with pytest.raises(ValueError) as info:
      envs.parse_env_id(bad)
    assert "\n" not in str(info.value) and "dm_control/stacker-stack_2" in str(info.value)


def test_stack_4_ground_truth_lands_on_the_boxes_in_rendered_frames():
  # Each box's projected centre is on that box's own pixels and, for a box that nothing hides,
  # within half a pixel of their centroid (the fixed camera sees the 4.4 cm cubes almost
  # orthographically); likewise the target and the arm.
  height, width = 120, 160
  for seed in range(3):
    env, positions, segmentation, _ = _arm_scene("stack_4", "stacker", seed, 5, height, width)
    masks = {b: _body_mask(env, segmentation, b) for b in positions}
    full = max(masks[f"box{i}"].sum() for i in range(4))
    assert full >= 15, full
    for body in ("box0", "box1", "box2", "box3", "target", "hand", "fingertip", "thumbtip"):
      mask = masks[body]
      if mask.sum() < 0.9 * full:  # partly hidden (behind the arm or another box)
        continue
      x, y = np.round(positions[body]).astype(int)
      assert mask[y, x], (seed, body)
      if body.startswith("box"):
        ys, xs = np.nonzero(mask)
        offset = np.array([xs.mean(), ys.mean()]) - positions[body]
        assert np.abs(offset).max() < 0.5, (seed, body, offset)


def _segmentation(env, height, width):
  seg = env.physics.render(height, width, camera_id=env.camera_id, segmentation=True)
  return np.where(seg[..., 1] == _GEOM, seg[..., 0], -1)


def _body_mask(env, segmentation, body):
  model = env.physics.model
  geoms = np.flatnonzero(model.geom_bodyid == model.name2id(body, "body"))
  return np.isin(segmentation, geoms)


def _arm_scene(task, domain, seed, steps, height, width):
  """(the closed env, positions by body, segmentation, frame) after `steps` random actions."""
  env = envs.make_manipulator(task, seed=seed, height=height, width=width, domain=domain)
  try:
    rng = np.random.default_rng(seed)
    for _ in range(steps):
      env.step(env.random_action(rng))
    positions = dict(zip(env.position_names, env.positions()))
    return env, positions, _segmentation(env, height, width), env.render()
  finally:
    env.close()


def test_projection_is_pixel_centred_with_y_down():
  # Non-square frames also check that x and y use the same focal length. The ball is a sphere
  # seen almost orthographically (fovy is 4 degrees), so the centroid of its pixels is the
  # projection of its centre; a corner-based origin would shift every centroid by half a pixel
  # and a flipped y would move it across the frame.
  height, width = 240, 320
  offsets = []
  for seed in range(3):
    env, positions, segmentation, frame = _arm_scene("bring_ball", "manipulator", seed, 3,
                                                     height, width)
    ball = _body_mask(env, segmentation, "ball")
    assert ball.sum() > 40, "the ball should be in view and unoccluded for these seeds"
    ys, xs = np.nonzero(ball)
    offset = np.array([xs.mean(), ys.mean()]) - positions["ball"]
    assert np.abs(offset).max() < 0.35, offset
    offsets.append(offset)
    x, y = np.round(positions["ball"]).astype(int)
    red, _, blue = frame[y, x].astype(int)
    assert red > blue + 60, "the ball is orange on a blue background"
    # The centre of each arm segment and the fingertips project onto that body's own pixels.
    for body in ("upper_arm", "middle_arm", "lower_arm", "hand", "thumbtip", "fingertip"):
      x, y = np.round(positions[body]).astype(int)
      assert _body_mask(env, segmentation, body)[y, x], body
  assert np.abs(np.mean(offsets, axis=0)).max() < 0.15


@pytest.mark.parametrize("camera_id", [2, -1, "nope"])
def test_bad_camera_is_rejected(camera_id):
  with pytest.raises(ValueError, match="bad camera"):
    envs.make_manipulator("bring_ball", seed=0, height=16, width=16, camera_id=camera_id)


def test_camera_by_name():
  env = envs.make_manipulator("bring_ball", seed=0, height=16, width=16, camera_id="hand")
  try:
    assert (env.camera_id, env.camera_name) == (1, "hand")
    assert np.isfinite(env.positions()).all()
  finally:
    env.close()


def test_projection_at_stored_resolution_lands_on_the_ball():
  env = envs.make_manipulator("bring_ball", seed=1, height=80, width=80)
  try:
    x, y = np.round(env.positions()[env.position_names.index("ball")]).astype(int)
    assert _body_mask(env, _segmentation(env, 80, 80), "ball")[y, x]
  finally:
    env.close()


def test_points_behind_the_camera_are_nan():
  env = envs.make_manipulator("bring_ball", seed=0, height=32, width=32)
  try:
    camera_position = env.physics.data.cam_xpos[env.camera_id]
    # The fixed camera looks along +y from y = -16.
    points = np.array([camera_position + [0, -4, 0], [0, 0, 0.4], [5, 0, 0.4]])
    xy = envs.project_points(env.camera_matrix(), points)
  finally:
    env.close()
  assert np.isnan(xy[0]).all()
  assert np.isfinite(xy[1:]).all()
  assert xy[1, 0] == pytest.approx(15.5, abs=0.01)  # the arm's root is centred horizontally
  assert xy[2, 0] > 32  # in front but out of frame: kept, outside [0, W)


def test_project_points_convention_on_a_synthetic_camera():
  # A camera at the origin looking along -z with focal length 10 px and image centre (4.5, 3.5).
  matrix = np.array([[-10.0, 0, 4.5, 0], [0, 10.0, 3.5, 0], [0, 0, 1, 0]])
  xy = envs.project_points(matrix, np.array([[0, 0, -2], [1, 1, -2], [0, 0, 2], [0, 0, 0]]))
  np.testing.assert_allclose(xy[:2], [[4.5, 3.5], [9.5, -1.5]])
  assert np.isnan(xy[2:]).all()
