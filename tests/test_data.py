"""Dataset format, bad-input errors and pair sampling."""

import jax
import numpy as np
import pytest

from keypoints import data as data_lib
from keypoints import sprites


@pytest.fixture
def dataset_dir(tmp_path):
  sprites.write_dataset(tmp_path / "ds", num_episodes=3, episode_length=12, size=16, seed=0)
  return tmp_path / "ds"


def test_round_trip_and_split(dataset_dir):
  ds = data_lib.load_dataset(dataset_dir)
  frames, positions = sprites.generate(3, 12, size=16, seed=0)
  np.testing.assert_array_equal(ds.frames, frames.reshape(-1, 16, 16, 3))
  np.testing.assert_array_equal(ds.ground_truth["positions"], positions.reshape(-1, 3, 2))
  assert list(ds.episode_lengths) == [12, 12, 12] and list(ds.episode_starts) == [0, 12, 24]
  train, held = ds.split(1)
  assert train.num_episodes == 2 and held.num_episodes == 1
  np.testing.assert_array_equal(held.frames, frames[2])


def test_scrolling_background_moves_under_the_sprites():
  size, sprite = 24, 4
  black, positions = sprites.generate(2, 10, size=size, sprite_size=sprite, seed=3)
  frames, scrolled_positions = sprites.generate(2, 10, size=size, sprite_size=sprite, seed=3,
                                                background="scrolling", scroll_speed=2.0)
  # The first episode's sprites are the black video's; only the background differs.
  np.testing.assert_array_equal(scrolled_positions[0], positions[0])
  on_sprite = (black[0] != 0).any(-1)
  np.testing.assert_array_equal(frames[0][on_sprite], black[0][on_sprite])
  background = frames[0][~on_sprite]
  assert background.max() <= 110 and background.std() > 20  # dim, and textured
  # The background moves 2 pixels left a frame: columns of frame t+1 are those of frame t
  # shifted, wherever no sprite covers either.
  for t in range(9):
    a, b = frames[0, t, :, 2:], frames[0, t + 1, :, :-2]
    free = ~on_sprite[t, :, 2:] & ~on_sprite[t + 1, :, :-2]
    np.testing.assert_array_equal(a[free], b[free])
    assert (frames[0, t] != frames[0, t + 1])[~on_sprite[t] & ~on_sprite[t + 1]].any()
  with pytest.raises(ValueError, match="background must be one of"):
    sprites.generate(1, 2, background="stars")


def test_missing_dataset_is_one_clear_error(tmp_path):
  with pytest.raises(data_lib.DatasetError, match="does not exist"):
    data_lib.load_dataset(tmp_path / "nope")
  (tmp_path / "empty").mkdir()
  with pytest.raises(data_lib.DatasetError, match="metadata.json is missing"):
    data_lib.load_dataset(tmp_path / "empty")


def test_corrupt_episode_is_one_clear_error(dataset_dir):
  data_lib.episode_path(dataset_dir, 1).write_bytes(b"not a zip file")
  with pytest.raises(data_lib.DatasetError, match="episode_000001.npz is corrupt") as e:
    data_lib.load_dataset(dataset_dir)
  assert "\n" not in str(e.value)


def test_wrong_frame_shape_is_rejected(dataset_dir):
  data_lib.write_episode(dataset_dir, 5, np.zeros((4, 8, 8, 3), np.uint8))
  with pytest.raises(data_lib.DatasetError, match=r"expected uint8 \[T, 16, 16, 3\]"):
    data_lib.load_dataset(dataset_dir)
  with pytest.raises(data_lib.DatasetError, match="must be uint8"):
    data_lib.write_episode(dataset_dir, 6, np.zeros((4, 8, 8, 3), np.float32))


def test_inverted_offset_range_is_rejected():
  with pytest.raises(ValueError, match="inverted"):
    data_lib.make_pair_index(np.array([30]), min_offset=5, max_offset=2)


def test_pairs_never_cross_episodes_and_respect_offsets():
  lengths = np.array([5, 1, 30, 7, 2])
  episode_of = np.repeat(np.arange(len(lengths)), lengths)
  index = data_lib.make_pair_index(lengths, min_offset=2, max_offset=6)
  # The index carries its min_offset: samplers are not told it again.
  assert int(index.min_offset) == 2
  src, tgt = jax.jit(data_lib.sample_pair_indices, static_argnums=(2,))(
      jax.random.PRNGKey(0), index, 20000)
  src, tgt = np.asarray(src), np.asarray(tgt)
  np.testing.assert_array_equal(episode_of[src], episode_of[tgt])
  offsets = tgt - src
  assert offsets.min() == 2 and offsets.max() == 6
  # Offsets are uniform where the episode leaves room: within episode 2, away from its end.
  mid = (episode_of[src] == 2) & (src - 6 <= 30 - 1 - 6)
  counts = np.bincount(offsets[mid], minlength=7)[2:]
  assert counts.min() > 0.8 * counts.mean()
  # Episodes too short for min_offset (lengths 1 and 2) never appear.
  assert not np.isin(episode_of[src], [1, 4]).any()


def test_pair_sampling_is_deterministic_given_key():
  index = data_lib.make_pair_index(np.array([10, 10]), 1, 3)
  a = data_lib.sample_pair_indices(jax.random.PRNGKey(3), index, 64)
  b = data_lib.sample_pair_indices(jax.random.PRNGKey(3), index, 64)
  c = data_lib.sample_pair_indices(jax.random.PRNGKey(4), index, 64)
  np.testing.assert_array_equal(a[0], b[0])
  assert not np.array_equal(a[0], c[0])
