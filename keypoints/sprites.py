"""A synthetic sprites video with exact ground truth, for tests and quick demos.

A few coloured squares move with constant velocity on a black background and bounce off the
walls. Positions are the sprites' centres as (x, y) pixels ((0, 0) = centre of the top-left
pixel), the same convention as every dataset's ground truth.

With `background="scrolling"` the squares move over a textured background that scrolls
sideways at `scroll_speed` pixels a frame (wrapping round), the moving background the
Transporter paper names as a case it cannot handle: every pixel of the frame then changes
between frames, not only the objects'. The texture is dim blocks of random
colour (each channel at most `_TEXTURE_MAX`), so the bright squares stay the only saturated
colours on the screen.
"""

from __future__ import annotations

import os

import numpy as np

from keypoints import data as data_lib

COLOURS = np.array([[255, 60, 60], [60, 255, 60], [80, 120, 255], [255, 255, 60],
                    [255, 60, 255], [60, 255, 255]], np.uint8)
BACKGROUNDS = ("black", "scrolling")
_TEXTURE_MAX = 110
_TEXTURE_BLOCK = 4  # pixels per side of the texture's blocks


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
  """uint8 [size, 2 * size, 3]: a background twice as wide as the frame, in blocks of random
  dim colour, to scroll through."""
  blocks = -(-size // _TEXTURE_BLOCK)
  colours = rng.integers(0, _TEXTURE_MAX + 1, (blocks, 2 * blocks, 3), dtype=np.uint8)
  texture = np.repeat(np.repeat(colours, _TEXTURE_BLOCK, 0), _TEXTURE_BLOCK, 1)
  return texture[:size, :2 * size]


def generate(num_episodes: int, episode_length: int, size: int = 32, num_sprites: int = 3,
             sprite_size: int = 4, max_speed: float = 1.5, seed: int = 0,
             background: str = "black",
             scroll_speed: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
  """Renders episodes of bouncing sprites.

  Args:
    background: "black", or "scrolling" (a texture moving left by `scroll_speed` pixels a
      frame, drawn from the episode's randomness).

  Returns:
    frames: uint8 [E, T, size, size, 3]; positions: float32 [E, T, num_sprites, 2] (x, y).
  """
  if not 1 <= num_sprites <= len(COLOURS):
    raise ValueError(f"num_sprites must be in [1, {len(COLOURS)}], got {num_sprites}")
  if background not in BACKGROUNDS:
    raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {background!r}")
  rng = np.random.default_rng(seed)
  lo, hi = sprite_size / 2 - 0.5, size - sprite_size / 2 - 0.5  # centre range inside the frame
  frames = np.zeros((num_episodes, episode_length, size, size, 3), np.uint8)
  positions = np.zeros((num_episodes, episode_length, num_sprites, 2), np.float32)
  for e in range(num_episodes):
    pos = rng.uniform(lo, hi, (num_sprites, 2))
    # Every sprite moves (at least half max_speed per axis): a still sprite needs no keypoint.
    vel = rng.uniform(max_speed / 2, max_speed, (num_sprites, 2))
    vel *= rng.choice([-1.0, 1.0], (num_sprites, 2))
    texture = _texture(rng, size) if background == "scrolling" else None
    for t in range(episode_length):
      positions[e, t] = pos
      if texture is not None:
        shift = int(np.floor(t * scroll_speed)) % texture.shape[1]
        frames[e, t] = np.roll(texture, -shift, axis=1)[:, :size]
      for n in range(num_sprites):
        x0, y0 = np.round(pos[n] - sprite_size / 2 + 0.5).astype(int)
        frames[e, t, y0:y0 + sprite_size, x0:x0 + sprite_size] = COLOURS[n]
      pos = pos + vel
      # Reflect off the walls.
      over, under = pos > hi, pos < lo
      pos = np.where(over, 2 * hi - pos, np.where(under, 2 * lo - pos, pos))
      vel = np.where(over | under, -vel, vel)
  return frames, positions


def write_dataset(root: os.PathLike, num_episodes: int, episode_length: int, size: int = 32,
                  num_sprites: int = 3, seed: int = 0, background: str = "black",
                  scroll_speed: float = 1.0, **kwargs) -> None:
  """Writes a sprites video in the on-disk dataset format (see keypoints.data)."""
  frames, positions = generate(num_episodes, episode_length, size, num_sprites, seed=seed,
                               background=background, scroll_speed=scroll_speed, **kwargs)
  scrolling = {"scroll_speed": scroll_speed} if background == "scrolling" else {}
  data_lib.write_metadata(root, dict(source="sprites", env="sprites", height=size, width=size,
                                     raw_height=size, raw_width=size, seed=seed,
                                     background=background, **scrolling,
                                     ground_truth=["positions"],
                                     position_names=[f"sprite_{i}" for i in range(num_sprites)]))
  for e in range(num_episodes):
    data_lib.write_episode(root, e, frames[e], positions=positions[e])
