"""Tests for keypoints/ground_truth.py: RAM-read object positions checked on real ALE frames."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from keypoints import data
from keypoints import ground_truth
from keypoints import sprites
from rl import envs

_PONG = "ALE/Pong-v5"
_BREAKOUT = "ALE/Breakout-v5"
_MSPACMAN = "ALE/MsPacman-v5"
_STEPS = 300
_NOOP, _FIRE = 0, 1

# Each object's colours as the raw screen draws them (several for multicoloured sprites), and the
# least fraction of frames of a random-policy run that must report it, so that a table which
# hides objects fails as surely as one that misplaces them.
_OBJECTS = {
    _PONG: {"player": ([(92, 186, 92)], 0.6), "enemy": ([(213, 130, 74)], 0.5),
            "ball": ([(236, 236, 236)], 0.3)},
    _BREAKOUT: {"player": ([(200, 72, 72)], 0.9), "ball": ([(200, 72, 72)], 0.3)},
    # Hat, face, coat and boots.
    "ALE/Frostbite-v5": {"player": ([(162, 98, 33), (198, 108, 58), (142, 142, 142),
                                     (162, 162, 42)], 0.3)},
    _MSPACMAN: {"pacman": ([(210, 164, 74)], 0.9), "blinky": ([(200, 72, 72)], 0.3),
                "pinky": ([(198, 89, 179)], 0.2), "inky": ([(84, 184, 153)], 0.1),
                "sue": ([(180, 122, 48)], 0.2)},
    "ALE/Seaquest-v5": {"player": ([(187, 187, 53)], 0.3)},
    # Panama Joe's body, hat and boots, face.
    "ALE/MontezumaRevenge-v5": {"player": ([(200, 72, 72), (210, 182, 86), (228, 111, 111)], 0.9),
                                "skull": ([(236, 236, 236)], 0.5)},
}
# The 2600 Ms. Pac-Man draws only some ghosts in each frame; ghosts are checked on the frames
# that draw them (their colour somewhere in the maze, rows 0-171).
_FLICKERING = {_MSPACMAN: ("blinky", "pinky", "inky", "sue")}
_MAZE_ROWS = 172
# Colour must lie within this many pixels (per axis) of the reported centre.
_RADIUS = 2.0
_MIN_HIT_RATE = 0.9


@functools.cache
def _run(env_id: str, steps: int = _STEPS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Raw frames uint8 [T, 210, 160, 3] and RAM uint8 [T, 128] of a uniform random policy."""
  env = envs.make_atari(env_id, seed)
  rng = np.random.default_rng(seed)
  frames, rams = [], []
  try:
    while len(frames) < steps:
      observation, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
      frames.append(observation)
      rams.append(envs.read_ram(env))
      if terminated or truncated:
        observation, _ = env.reset(seed=seed + len(frames))
        frames.append(observation)
        rams.append(envs.read_ram(env))
  finally:
    env.close()
  return np.stack(frames[:steps]), np.stack(rams[:steps])


def _has_colour(frame: np.ndarray, x: float, y: float, colours, radius: float = _RADIUS) -> bool:
  """Whether a pixel within `radius` of (x, y) along both axes has one of `colours`."""
  x0, x1 = max(int(np.ceil(x - radius)), 0), int(np.floor(x + radius)) + 1
  y0, y1 = max(int(np.ceil(y - radius)), 0), int(np.floor(y + radius)) + 1
  window = frame[y0:y1, x0:x1]
  return any((window == np.array(c, np.uint8)).all(-1).any() for c in colours)


def _drawn_in_maze(frames: np.ndarray, colours) -> np.ndarray:
  maze = frames[:, :_MAZE_ROWS]
  return np.any([(maze == np.array(c, np.uint8)).all(-1).any((1, 2)) for c in colours], axis=0)


def test_supported_games_and_names_match_the_checked_objects():
  assert set(ground_truth.SUPPORTED_GAMES) == set(_OBJECTS)
  for env_id, objects in _OBJECTS.items():
    assert set(ground_truth.object_names(env_id)) == set(objects)
  assert ground_truth.object_names(_PONG) == ("player", "enemy", "ball")


@pytest.mark.parametrize("env_id", ground_truth.SUPPORTED_GAMES)
def test_positions_land_on_the_objects_colour_in_rendered_frames(env_id):
  frames, ram = _run(env_id)
  positions = ground_truth.atari_positions(env_id, ram)
  names = ground_truth.object_names(env_id)
  assert positions.shape == (len(frames), len(names), 2) and positions.dtype == np.float32
  for m, name in enumerate(names):
    colours, min_fraction = _OBJECTS[env_id][name]
    xy = positions[:, m]
    shown = ~np.isnan(xy).any(-1)
    assert np.array_equal(np.isnan(xy[:, 0]), np.isnan(xy[:, 1])), name
    if name in _FLICKERING.get(env_id, ()):
      shown &= _drawn_in_maze(frames, colours)
    assert shown.mean() >= min_fraction, (env_id, name, shown.mean())
    checked = np.nonzero(shown)[0]
    hits = [_has_colour(frames[t], *xy[t], colours) for t in checked]
    assert np.mean(hits) >= _MIN_HIT_RATE, (env_id, name, np.mean(hits))
    # The check itself can fail: 20 pixels to the right the object is not there.
    misses = [_has_colour(frames[t], xy[t, 0] + 20, xy[t, 1], colours) for t in checked]
    assert np.mean(misses) < 0.5, (env_id, name, np.mean(misses))
    # Every object moves during the run.
    assert len(np.unique(xy[shown], axis=0)) >= 5, (env_id, name)
    inside = (xy[shown] >= 0).all() and (xy[shown, 0] <= 159).all() and (xy[shown, 1] <= 209).all()
    assert inside, (env_id, name)


def _colour_box_offsets(frames, centres, colours, half_size, field, margin=4.0):
  """Per frame, the (dx, dy) from `centres` [T, 2] to the centre of the bounding box of the
  pixels of `colours` in the sprite's box around it (grown by `margin`, clipped to the game's
  field); NaN where that box holds none of them or the centre is NaN."""
  offsets = np.full((len(frames), 2), np.nan)
  for t in np.flatnonzero(np.isfinite(centres).all(-1)):
    (x, y), (hx, hy) = centres[t], half_size
    x0 = max(int(np.floor(x - hx - margin)), int(field[0]))
    x1 = min(int(np.ceil(x + hx + margin)), int(field[2]))
    y0 = max(int(np.floor(y - hy - margin)), int(field[1]))
    y1 = min(int(np.ceil(y + hy + margin)), int(field[3]))
    if x1 < x0 or y1 < y0:
      continue
    window = frames[t, y0:y1 + 1, x0:x1 + 1]
    mask = np.any([(window == np.array(c, np.uint8)).all(-1) for c in colours], axis=0)
    if mask.any():
      ys, xs = np.nonzero(mask)
      offsets[t] = ((xs.min() + xs.max()) / 2 + x0 - x, (ys.min() + ys.max()) / 2 + y0 - y)
  return offsets


# Sprites whose drawn shape moves off their RAM position in some poses (the module's docstring):
# Panama Joe jumping, climbing or dying. Every other sprite's centre is within 2 pixels in at
# least 95% of the frames that draw it.
_POSE_EXCEPTIONS = {("ALE/MontezumaRevenge-v5", "player"): 0.8}
_CENTRE_TOLERANCE = 2.0


def _game_run(env_id):
  """A random-policy run's frames and RAM, the game's object table and the positions."""
  frames, ram = _run(env_id)
  game = ground_truth._game(env_id)  # pylint: disable=protected-access
  return frames, ram, game, ground_truth.atari_positions(env_id, ram)


@pytest.mark.parametrize("env_id", ground_truth.SUPPORTED_GAMES)
def test_positions_are_the_sprites_centres_within_2_pixels(env_id):
  frames, _, game, positions = _game_run(env_id)
  for m, obj in enumerate(game.objects):
    colours = _OBJECTS[env_id][obj.name][0]
    need = _POSE_EXCEPTIONS.get((env_id, obj.name), 0.95)

    def within(shift):
      offsets = _colour_box_offsets(frames, positions[:, m] + shift, colours, obj.half_size,
                                    game.field)
      seen = np.isfinite(offsets).all(-1)
      assert seen.sum() >= 20, (env_id, obj.name, seen.sum())
      return (np.abs(offsets[seen]).max(-1) <= _CENTRE_TOLERANCE).mean()

    assert within(np.zeros(2)) >= need, (env_id, obj.name, within(np.zeros(2)))
    # The check can fail: positions off by 3 pixels along either axis are caught.
    for shift in ([3.0, 0.0], [0.0, 3.0], [-3.0, 0.0], [0.0, -3.0]):
      assert within(np.array(shift)) < min(need, 0.5), (env_id, obj.name, shift)


@pytest.mark.parametrize("env_id", ground_truth.SUPPORTED_GAMES)
def test_objects_reported_missing_are_not_drawn_where_the_ram_puts_them(env_id):
  # The visibility rules against the frames: where an object is NaN, its colours are (all but
  # never) drawn around the position its RAM bytes give. (Reported frames do draw it: above.)
  frames, ram, game, positions = _game_run(env_id)
  for m, obj in enumerate(game.objects):
    missing = np.isnan(positions[:, m, 0])
    ram_xy = np.stack([obj.x(ram.astype(np.int64)), obj.y(ram.astype(np.int64))], -1)
    offsets = _colour_box_offsets(frames, ram_xy, _OBJECTS[env_id][obj.name][0], obj.half_size,
                                  game.field)
    drawn = np.isfinite(offsets).all(-1)
    wrongly_missing = (missing & drawn).sum()
    assert wrongly_missing <= 0.02 * len(frames), (env_id, obj.name, wrongly_missing)


def test_frostbite_man_is_followed_while_he_sinks():
  frames, ram = _run("ALE/Frostbite-v5")
  player = ground_truth.atari_positions("ALE/Frostbite-v5", ram)[:, 0]
  counter = ram[:, 107]
  sinking = (counter > 0) & (counter < 18)
  assert sinking.sum() >= 10 and (counter == 18).any()  # the run has him sink and vanish
  assert np.isfinite(player[sinking]).all()
  assert np.isnan(player[counter == 18]).all()
  # Deeper down, his centre is lower: the part still drawn is his lower body.
  game = ground_truth._game("ALE/Frostbite-v5")  # pylint: disable=protected-access
  ram_y = game.objects[0].y(ram.astype(np.int64))
  np.testing.assert_allclose(player[sinking, 1] - ram_y[sinking], counter[sinking] / 2)


def test_pong_ball_is_nan_exactly_when_out_of_play():
  frames, ram = _run(_PONG)
  ball = ground_truth.atari_positions(_PONG, ram)[:, 2]
  # The ball shares its white with the walls; the field between them is rows 34-193.
  drawn = (frames[:, 34:194] == np.array([236, 236, 236], np.uint8)).all(-1).any((1, 2))
  reported = ~np.isnan(ball[:, 0])
  assert drawn.any() and (~drawn).any()  # points are won and lost within the run
  assert np.mean(reported == drawn) >= 0.99
  # In play it moves a few pixels per step: no jumps between consecutive in-play frames.
  both = reported[1:] & reported[:-1]
  steps = np.abs(np.diff(ball, axis=0))[both]
  assert np.median(steps[:, 0]) > 0 and np.percentile(steps.max(-1), 95) <= 16


def test_breakout_ball_appears_once_served():
  env = envs.make_atari(_BREAKOUT, seed=1, repeat_action_probability=0.0)
  try:
    rams = []
    for _ in range(20):
      env.step(_NOOP)
      rams.append(envs.read_ram(env))
    env.step(_FIRE)
    for _ in range(10):
      env.step(_NOOP)
      rams.append(envs.read_ram(env))
  finally:
    env.close()
  ball = ground_truth.atari_positions(_BREAKOUT, np.stack(rams))[:, 1]
  assert np.isnan(ball[:20]).all()
  assert not np.isnan(ball[-5:]).any()
  assert (np.diff(ball[-5:, 1]) != 0).all()  # it flies


def test_single_frame_ram_gives_one_frame_of_positions():
  _, ram = _run(_PONG)
  np.testing.assert_array_equal(ground_truth.atari_positions(_PONG, ram[5]),
                                ground_truth.atari_positions(_PONG, ram)[5])


def test_unsupported_game_is_a_one_line_error_naming_the_supported_ones():
  with pytest.raises(ValueError) as info:
    ground_truth.atari_positions("ALE/Asteroids-v5", np.zeros((3, 128), np.uint8))
  message = str(info.value)
  assert "\n" not in message and "ALE/Asteroids-v5" in message
  assert all(env_id in message for env_id in ground_truth.SUPPORTED_GAMES)
  with pytest.raises(ValueError, match="ALE/Asteroids-v5"):
    ground_truth.object_names("ALE/Asteroids-v5")
  with pytest.raises(ValueError, match="128"):
    ground_truth.atari_positions(_PONG, np.zeros((3, 64), np.uint8))


@pytest.mark.parametrize("height,width", [(80, 80), (84, 84), (105, 80)])
def test_resize_points_follows_the_box_resize(height, width):
  # Box averaging keeps an object's intensity-weighted centre, so a block's centre in the resized
  # frame is where its raw centre maps to (up to the rounding to uint8). Scaling centres without
  # the half-pixel shifts, x * width / raw_width, would be 0.24 to 0.31 pixels off at these sizes.
  for x0, y0, w, h in [(100, 56, 8, 8), (3, 188, 10, 12), (140, 30, 4, 16), (57, 101, 12, 10)]:
    frame = np.zeros((1, envs.ALE_RAW_HEIGHT, envs.ALE_RAW_WIDTH, 3), np.uint8)
    frame[0, y0:y0 + h, x0:x0 + w] = 240
    small = data.resize_frames(frame, height, width)[0, :, :, 0].astype(np.float64)
    ys, xs = np.mgrid[:height, :width]
    centre = np.array([(small * xs).sum(), (small * ys).sum()]) / small.sum()
    raw_centre = np.array([x0 + (w - 1) / 2, y0 + (h - 1) / 2])
    mapped = data.resize_points(raw_centre, (envs.ALE_RAW_HEIGHT, envs.ALE_RAW_WIDTH),
                                (height, width))
    np.testing.assert_allclose(mapped, centre, atol=0.15)
  nan = data.resize_points(np.full((2, 2), np.nan), (210, 160), (80, 80))
  assert np.isnan(nan).all()


def test_dataset_positions_scales_ale_positions_to_the_stored_frames():
  _, ram = _run(_PONG)
  metadata = envs.dataset_metadata(_PONG, height=84, width=64, seed=0, max_episode_frames=_STEPS)
  names, positions = ground_truth.dataset_positions(metadata, {"ram": ram})
  assert names == ("player", "enemy", "ball")
  raw = ground_truth.atari_positions(_PONG, ram)
  assert positions.shape == raw.shape and positions.dtype == np.float32
  np.testing.assert_array_equal(np.isnan(positions), np.isnan(raw))
  # x: 64/160 of the raw screen, y: 84/210, pixel centres to pixel centres.
  np.testing.assert_allclose(positions[..., 0], (raw[..., 0] + 0.5) * 0.4 - 0.5, atol=1e-4)
  np.testing.assert_allclose(positions[..., 1], (raw[..., 1] + 0.5) * 0.4 - 0.5, atol=1e-4)
  # Evaluation asks for the raw screen's pixels: read there, never resized down and back up.
  _, raw_positions = ground_truth.dataset_positions(metadata, {"ram": ram}, raw=True)
  np.testing.assert_array_equal(raw_positions, raw)


def test_dataset_positions_of_a_resized_pong_frame_land_on_the_paddle():
  frames, ram = _run(_PONG)
  metadata = envs.dataset_metadata(_PONG, height=105, width=80, seed=0, max_episode_frames=_STEPS)
  small = data.resize_frames(frames, 105, 80)
  _, positions = ground_truth.dataset_positions(metadata, {"ram": ram})
  # At half size the green paddle (4 wide, 16 tall) still fills whole pixels around its centre.
  green = np.array([92, 186, 92], np.uint8)
  reported = np.nonzero(~np.isnan(positions[:, 0, 0]))[0]
  hits = [_has_colour(small[t], *positions[t, 0], [green], radius=1.0) for t in reported]
  assert len(reported) > _STEPS // 2 and np.mean(hits) >= _MIN_HIT_RATE


def test_dataset_positions_pass_through_stored_positions(tmp_path):
  sprites.write_dataset(tmp_path / "sprites", num_episodes=2, episode_length=5, size=16,
                        num_sprites=2, sprite_size=3, seed=0)
  dataset = data.load_dataset(tmp_path / "sprites")
  names, positions = ground_truth.dataset_positions(dataset.metadata, dataset.ground_truth)
  assert names == ("sprite_0", "sprite_1")
  np.testing.assert_array_equal(positions, dataset.ground_truth["positions"])
  # Without names in the metadata, objects are numbered.
  metadata = {k: v for k, v in dataset.metadata.items() if k != "position_names"}
  names, _ = ground_truth.dataset_positions(metadata, dataset.ground_truth)
  assert names == ("object_0", "object_1")


def test_dataset_positions_without_ground_truth_is_a_dataset_error():
  pong = envs.dataset_metadata(_PONG, height=80, width=80, seed=0, max_episode_frames=10)
  with pytest.raises(data.DatasetError, match="'ram'"):
    ground_truth.dataset_positions(pong, {})
  asteroids = {**pong, "env": "ALE/Asteroids-v5"}
  with pytest.raises(data.DatasetError, match="Asteroids") as info:
    ground_truth.dataset_positions(asteroids, {"ram": np.zeros((2, 128), np.uint8)})
  assert "\n" not in str(info.value)
  sprites_metadata = {"source": "sprites", "env": "sprites", "height": 16, "width": 16}
  with pytest.raises(data.DatasetError, match="'positions'"):
    ground_truth.dataset_positions(sprites_metadata, {})


def test_dataset_positions_keep_a_flickering_ghost_only_in_the_stored_frames_that_draw_it():
  frames, ram = _run(_MSPACMAN, 600)
  stored = data.resize_frames(frames, 80, 80)
  metadata = {"source": "ale", "env": _MSPACMAN, "height": 80, "width": 80}
  names, everywhere = ground_truth.dataset_positions(metadata, {"ram": ram}, raw=True)
  _, drawn_only = ground_truth.dataset_positions(metadata, {"ram": ram}, raw=True,
                                                 frames=stored)
  for m, name in enumerate(names):
    given = np.isfinite(drawn_only[:, m, 0])
    if name not in _FLICKERING[_MSPACMAN]:
      np.testing.assert_array_equal(drawn_only[:, m], everywhere[:, m])
      continue
    # The truth from the raw screen: the ghost's own colour within its 8x10 sprite box.
    colours = _OBJECTS[_MSPACMAN][name][0]
    raw_drawn = np.array([np.isfinite(xy).all() and _has_colour(f, *xy, colours, radius=4.0)
                          for f, xy in zip(frames, everywhere[:, m])])
    assert 0.05 < raw_drawn.mean() < 0.95, (name, raw_drawn.mean())  # it does flicker
    assert (given == raw_drawn).mean() >= 0.99, name
    np.testing.assert_array_equal(drawn_only[given, m], everywhere[given, m])
  with pytest.raises(data.DatasetError, match="frames must be"):
    ground_truth.dataset_positions(metadata, {"ram": ram}, frames=stored[:-1])


def test_pong_player_score_counts_the_points_won():
  from rl import atari  # pylint: disable=g-import-not-at-top
  env = atari.make(_PONG, seed=7, observation="ram")
  ram, _ = env.reset(seed=7)
  won, scores = 0, []
  for _ in range(1500):  # the chasing paddle wins points; no episode ends this soon
    ram, reward, terminated, truncated, _ = env.step(envs.chase_action(_PONG, ram))
    won += reward > 0
    scores.append((int(ground_truth.player_score(_PONG, ram)), won))
    assert not truncated
  assert won >= 2 and all(shown == counted for shown, counted in scores)
  assert ground_truth.player_score("ALE/Breakout-v5", ram) is None
