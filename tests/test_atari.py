"""The Atari-100k protocol on real ALE games: no sticky actions, 4-frame skip with max-pool,
no-op starts, life-loss terminals that do not end the game, reward clipping, the time limit,
and snapshot / restore of a running game."""

import numpy as np
import pytest

from rl import atari


def test_settings_of_the_base_environment():
  env = atari.make("ALE/Breakout-v5", 0)
  kwargs = env.unwrapped.spec.kwargs
  assert kwargs["repeat_action_probability"] == 0.0
  assert kwargs["frameskip"] == 1
  assert kwargs["max_num_frames_per_episode"] == 27_000 * 4
  assert env.observation_space.shape == (84, 84)
  assert atari.make("ALE/Breakout-v5", 0, "colour").observation_space.shape == (210, 160, 3)


def test_an_agent_step_is_four_frames_max_pooled_over_the_last_two():
  env = atari.make("ALE/Pong-v5", 1, "colour")
  ale = env.unwrapped.ale
  rng = np.random.default_rng(0)
  for _ in range(30):
    env.step(int(rng.integers(env.action_space.n)))
  for action in (2, 3, 0, 2, 3):
    state = ale.cloneState(include_rng=True)
    frame_before = ale.getEpisodeFrameNumber()
    observation, *_ = env.step(action)
    assert ale.getEpisodeFrameNumber() - frame_before == 4
    ale.restoreState(state)
    screens = []
    for _ in range(4):
      ale.act(env.unwrapped._action_set[action])  # pylint: disable=protected-access
      screens.append(ale.getScreenRGB())
    np.testing.assert_array_equal(observation, np.maximum(screens[2], screens[3]))


def test_no_sticky_actions_the_emulators_generator_changes_nothing():
  # Sticky actions (v5's default is 0.25) keep the previous action at random, drawn from the
  # emulator's own generator: one game state played on with the same actions under two seeds'
  # generators would part ways. Without them the generator plays no part.
  seeds = (3, 4)
  games = [atari.make("ALE/Breakout-v5", seed) for seed in seeds]
  for seed, env in zip(seeds, games):
    env.reset(seed=seed)
  games[1].unwrapped.ale.restoreState(games[0].unwrapped.ale.cloneState(include_rng=False))
  rng = np.random.default_rng(1)
  for _ in range(150):
    action = int(rng.integers(4))
    first, second = (env.step(action)[0] for env in games)
    np.testing.assert_array_equal(first, second)


def test_ram_observation_is_the_console_ram_of_the_same_game():
  ram_env, colour_env = atari.make("ALE/Pong-v5", 4, "ram"), atari.make("ALE/Pong-v5", 4, "colour")
  assert ram_env.observation_space.shape == atari.observation_shape("ram") == (128,)
  rng = np.random.default_rng(2)
  ram, _ = ram_env.reset(seed=4)
  colour_env.reset(seed=4)
  for _ in range(60):
    np.testing.assert_array_equal(ram, colour_env.unwrapped.ale.getRAM())
    action = int(rng.integers(ram_env.action_space.n))
    ram, reward, *_ = ram_env.step(action)
    assert colour_env.step(action)[1] == reward  # the same game, whatever is observed
  assert ram.dtype == np.uint8 and len({tuple(ram_env.reset()[0]) for _ in range(3)}) > 1


def test_no_op_starts_are_between_1_and_30_frames_and_vary():
  env = atari.make("ALE/Breakout-v5", 0)
  starts = []
  for _ in range(40):
    _, info = env.reset()
    starts.append(info["episode_frame_number"])
  assert min(starts) >= 1 and max(starts) <= 30
  assert len(set(starts)) > 10


def test_a_lost_life_is_terminal_for_learning_only_and_rewards_are_clipped():
  env = atari.make("ALE/Breakout-v5", 0)
  env.reset(seed=0)
  rng = np.random.default_rng(0)
  lives, lost, raw_rewards = 5, 0, []
  for _ in range(5000):
    _, reward, terminated, truncated, info = env.step(int(rng.integers(4)))
    raw_rewards.append(reward)
    assert info["life_lost"] == (info["lives"] < lives and not terminated)
    lost += info["life_lost"]
    lives = info["lives"]
    if terminated or truncated:
      assert info["lives"] == 0  # the game ends at game over, not at a lost life
      break
  assert lost == 4  # five lives: four lost mid-game, then game over
  assert sum(raw_rewards) > 0
  np.testing.assert_array_equal(atari.clip_reward(np.array([7.0, 1.0, 0.0, -4.0])),
                                [1.0, 1.0, 0.0, -1.0])


def test_snapshot_restore_continues_the_same_game():
  env = atari.make("ALE/Breakout-v5", 2)
  rng = np.random.default_rng(0)
  for _ in range(60):
    env.step(int(rng.integers(4)))
  blob = atari.snapshot(env)
  actions = rng.integers(4, size=600)

  def play(e):
    out = []
    for a in actions:
      observation, reward, terminated, truncated, info = e.step(int(a))
      out.append((observation.tobytes(), reward, terminated, info["life_lost"]))
      if terminated or truncated:
        out.append(e.reset()[0].tobytes())  # the next game's no-op start too
    return out

  expected = play(env)
  other = atari.make("ALE/Breakout-v5", 99)
  atari.restore(other, blob)
  assert play(other) == expected
  assert any(isinstance(x, bytes) for x in expected)  # a game ended and a new one started


def test_bad_ids_and_kinds_are_refused():
  with pytest.raises(ValueError, match="observation kind"):
    atari.make("ALE/Pong-v5", 0, "rgb")
  with pytest.raises(ValueError, match="ALE id"):
    atari.make("dm_control/manipulator-bring_ball", 0)
  with pytest.raises(ValueError, match="unknown environment"):
    atari.make("ALE/NoSuchGame-v5", 0)
