"""Replay: n-step windows (rewards, discounts, episode ends, terminals), histories, sampling
per member, wrap-around and checkpoint round trips, all against hand-computed values."""

import numpy as np
import pytest

from rl import replay as replay_lib

GAMMA = 0.5


def _fill(replay, steps):
  """steps: list of (obs value, action, reward, terminal, end) for a 1-member replay."""
  for value, action, reward, terminal, end in steps:
    replay.add(np.full((1, 2), value, np.float32), np.array([action]), np.array([reward]),
               np.array([terminal]), np.array([end]))


def _windows(replay, indices):
  return replay._windows(0, np.array(indices))  # pylint: disable=protected-access


def _episode_of_six():
  # Episode A: slots 0-3, a life lost at slot 1 (terminal, not an end), game over at slot 3.
  # Episode B: slots 4-6, still running.
  return [(10, 0, 1.0, False, False), (11, 1, 2.0, True, False), (12, 2, 4.0, False, False),
          (13, 0, 8.0, True, True), (20, 1, 1.0, False, False), (21, 2, 1.0, False, False),
          (22, 0, 1.0, False, False)]


def test_n_step_returns_stop_at_terminals_and_need_written_slots():
  replay = replay_lib.Replay(1, 16, (2,), np.float32, history=2, n_step=2, discount=GAMMA)
  _fill(replay, _episode_of_six())
  valid, returns, discount, length = _windows(replay, [0, 1, 2, 3, 4, 5, 6])
  # 0: r0 + g r1, and slot 1 is terminal -> discount 0, window length 2.
  # 1: terminal at once -> R = 2, discount 0, length 1.
  # 2: 4 + 0.5 * 8, terminal at slot 3.
  # 3: 8, terminal.
  # 4: 1 + 0.5 * 1, bootstraps from slot 6 with gamma^2.
  # 5: needs slot 7 for its bootstrap: not written yet -> invalid.
  np.testing.assert_array_equal(valid, [True, True, True, True, True, False, False])
  np.testing.assert_allclose(returns[:5], [2.0, 2.0, 8.0, 8.0, 1.5])
  np.testing.assert_allclose(discount[:5], [0.0, 0.0, 0.0, 0.0, 0.25])
  np.testing.assert_array_equal(length[:5], [2, 1, 2, 1, 2])


def test_window_across_a_time_limit_end_is_not_sampled():
  replay = replay_lib.Replay(1, 16, (2,), np.float32, history=1, n_step=3, discount=GAMMA)
  # Slot 1 ends the episode by the time limit (end, not terminal).
  _fill(replay, [(1, 0, 1.0, False, False), (2, 0, 1.0, False, True),
                 (3, 0, 1.0, False, False), (4, 0, 1.0, False, False),
                 (5, 0, 1.0, False, False), (6, 0, 1.0, False, False)])
  valid, _, _, _ = _windows(replay, [0, 1, 2])
  np.testing.assert_array_equal(valid, [False, False, True])


def test_histories_pad_with_the_episode_first_observation():
  replay = replay_lib.Replay(1, 16, (2,), np.float32, history=3, n_step=1, discount=GAMMA)
  _fill(replay, _episode_of_six())
  histories = replay._histories(np.zeros(4, int), np.array([0, 2, 4, 6]))  # pylint: disable=protected-access
  np.testing.assert_array_equal(histories[..., 0], [[10, 10, 10], [10, 11, 12],
                                                   [20, 20, 20], [20, 21, 22]])


def test_sample_builds_batches_from_valid_windows_only():
  replay = replay_lib.Replay(1, 16, (2,), np.float32, history=2, n_step=2, discount=GAMMA)
  _fill(replay, _episode_of_six())
  batch = replay.sample([np.random.default_rng(0)], 64)
  assert batch.observation.shape == (1, 64, 2, 2)
  by_start = {10: (0, 2.0, 0.0), 11: (1, 2.0, 0.0), 12: (2, 8.0, 0.0), 13: (0, 8.0, 0.0),
              20: (1, 1.5, 0.25)}
  seen = set()
  for obs, action, reward, discount, nxt in zip(batch.observation[0], batch.action[0],
                                                batch.reward[0], batch.discount[0],
                                                batch.next_observation[0]):
    start = int(obs[-1, 0])
    assert start in by_start  # slots 5 and 6 are never a window's start
    assert (action, reward, discount) == pytest.approx(by_start[start])
    if start == 20:
      np.testing.assert_array_equal(nxt[:, 0], [21, 22])  # bootstraps from slot 6
    seen.add(start)
  assert seen == set(by_start)


def test_members_sample_with_their_own_generators():
  one = replay_lib.Replay(1, 32, (2,), np.float32, history=2, n_step=3, discount=0.9)
  two = replay_lib.Replay(2, 32, (2,), np.float32, history=2, n_step=3, discount=0.9)
  rng = np.random.default_rng(5)
  for t in range(20):
    end = np.array([t % 7 == 6, t % 5 == 4])
    obs = rng.normal(size=(2, 2)).astype(np.float32)
    action, reward = rng.integers(4, size=2), rng.normal(size=2)
    two.add(obs, action, reward, end, end)
    one.add(obs[1:], action[1:], reward[1:], end[1:], end[1:])
  a = two.sample([np.random.default_rng(1), np.random.default_rng(2)], 8)
  b = one.sample([np.random.default_rng(2)], 8)
  for field in ("observation", "action", "reward", "discount", "next_observation"):
    np.testing.assert_array_equal(getattr(a, field)[1], getattr(b, field)[0])


def test_wrap_around_keeps_the_newest_slots_and_round_trips():
  replay = replay_lib.Replay(1, 8, (2,), np.float32, history=2, n_step=2, discount=GAMMA)
  _fill(replay, [(v, 0, float(v), False, v % 5 == 4) for v in range(13)])
  assert len(replay) == 8
  for _ in range(5):
    batch = replay.sample([np.random.default_rng(3)], 16)
    # Only slots 5..12 are kept; starts go up to 10 (11 and 12 lack a bootstrap slot).
    assert batch.observation[0, :, -1, 0].min() >= 5
    assert batch.observation[0, :, -1, 0].max() <= 10
    assert batch.observation[0, :, 0, 0].min() >= 5  # histories never reach overwritten slots
  restored = replay_lib.Replay(1, 8, (2,), np.float32, history=2, n_step=2, discount=GAMMA)
  other = replay_lib.Replay(1, 8, (3,), np.float32, history=2, n_step=2, discount=GAMMA)
  with pytest.raises(ValueError, match=r"observations of shape \[2\], this run stores \[3\]"):
    other.load_state_dict(replay.state_dict())  # made with other settings: refused
  restored.load_state_dict(replay.state_dict())
  x = replay.sample([np.random.default_rng(9)], 32)
  y = restored.sample([np.random.default_rng(9)], 32)
  for field in ("observation", "action", "reward", "discount", "next_observation"):
    np.testing.assert_array_equal(getattr(x, field), getattr(y, field))
  # Both go on identically after the round trip.
  _fill(replay, [(50, 1, 1.0, False, False)])
  _fill(restored, [(50, 1, 1.0, False, False)])
  np.testing.assert_array_equal(replay.sample([np.random.default_rng(4)], 16).observation,
                                restored.sample([np.random.default_rng(4)], 16).observation)


def test_history_stacks_like_the_replay():
  history = replay_lib.History(np.array([[1.0], [5.0]]), 3)
  history.push(np.array([[2.0], [6.0]]), np.array([False, True]))
  stack = history.push(np.array([[3.0], [7.0]]), np.array([False, False]))
  np.testing.assert_array_equal(stack[..., 0], [[1, 2, 3], [6, 6, 7]])


def test_bad_settings_are_refused():
  with pytest.raises(ValueError, match="too small"):
    replay_lib.Replay(1, 4, (2,), np.float32, history=2, n_step=3, discount=0.9)
  replay = replay_lib.Replay(1, 16, (2,), np.float32, history=1, n_step=3, discount=0.9)
  with pytest.raises(ValueError, match="at least"):
    replay.sample([np.random.default_rng(0)], 4)
