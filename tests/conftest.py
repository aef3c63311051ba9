"""Shared fixtures: tiny datasets made in temporary folders."""

import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

from keypoints import sprites  # pylint: disable=g-import-not-at-top


@pytest.fixture(scope="session")
def sprites_dir(tmp_path_factory):
  """A 16x16 sprites video of 4 episodes."""
  root = tmp_path_factory.mktemp("data") / "sprites"
  sprites.write_dataset(root, num_episodes=4, episode_length=20, size=16, num_sprites=2,
                        sprite_size=3, seed=0)
  return root
