"""Object positions for evaluating keypoints: Atari objects read from the console RAM.

Conventions. Positions are (x, y) pixels with (0, 0) the centre of the top-left pixel, x to the
right and y down, like every coordinate in the project. For Atari they are first computed in the
raw 210x160 ALE screen, as the centre of the object's sprite; `dataset_positions` converts them
to the pixels of a dataset's stored (resized) frames. An object that is not on the screen in a
frame is NaN there. A sprite partly hidden behind a wall or the edge of the playing field is
placed at the centre of its visible part.

Sources. Which RAM byte holds which coordinate comes from the AtariARI annotations (Anand et al.
2019, "Unsupervised State Representation Learning in Atari", file
atariari/benchmark/ram_annotations.py of mila-iqia/atari-representation-learning). Those are raw
RAM values. The maps from RAM to pixels below (offsets, the constant coordinates of objects that
only move along one axis, and when an object is off the screen) were measured on frames rendered
by ale-py 0.12 with the v5 settings of `rl.envs` (frameskip 4, RAM read after each observation),
by locating each object's colour; tests/test_ground_truth.py re-checks them on the emulator.

Accuracy. Measured against the bounding box of the drawn sprite, positions are within a pixel
except where a sprite changes shape or is drawn an emulator frame behind its RAM position: the
ghosts of Ms. Pac-Man (up to 2.5 pixels), Panama Joe while he jumps, climbs or dies (up to 3
pixels in x, 4.5 in y) and Seaquest's submarine at and just below the surface, where the game
draws only part of it (2 to 4 pixels). A sprite that changes shape keeps the centre of its main
pose.

Per game (objects in order):

* Pong: "player" (right, green paddle), "enemy" (left, orange paddle), "ball". A paddle wholly
  behind the top or bottom wall is NaN; so is the ball between points, when the game parks it
  (RAM x or y is 0).
* Breakout: "player" (the paddle), "ball". The ball is NaN before it is served and once it has
  dropped below the paddle out of sight.
* Frostbite: "player" (the man). While he sinks into the water the game draws less of him
  from the top down (the RAM holds a sinking counter): he is placed at the centre of the part
  still drawn, and is NaN once none is, until the next life starts.
* Ms. Pac-Man: "pacman" and the four ghosts "blinky" (red), "pinky" (pink), "inky" (cyan) and
  "sue" (orange). The 2600 does not draw every ghost in every frame (they flicker: with a random
  policy blinky shows in about 85% of frames, the others in 40-60%), and no RAM byte was found
  to say which ghosts a frame draws. `atari_positions` (RAM only) gives a ghost's position in
  every frame; `dataset_positions` with the stored frames gives it only in the frames that draw
  the ghost in its own colour (a frightened, blue ghost is NaN). Ghosts are NaN while Ms.
  Pac-Man's death animation hides them.
* Seaquest: "player" (the submarine). NaN while it explodes and waits to respawn, and after the
  game is over.
* Montezuma's Revenge: "player" (Panama Joe), and "skull" in the first room (the only room
  whose skull was measured; NaN in every other room, and once the skull has killed Panama Joe
  and vanished).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from keypoints import data as data_lib

RAW_HEIGHT = 210
RAW_WIDTH = 160
RAM_SIZE = 128


@dataclasses.dataclass(frozen=True)
class _Coord:
  """One pixel coordinate as an affine function of a RAM byte: offset + scale * ram[byte].

  With `byte` None the coordinate is the constant `offset` (a paddle that only moves up and down).
  """
  offset: float
  byte: int | None = None
  scale: float = 1.0

  def __call__(self, ram: np.ndarray) -> np.ndarray:
    if self.byte is None:
      return np.full(len(ram), self.offset, np.float64)
    return self.offset + self.scale * ram[:, self.byte].astype(np.float64)


def _always(ram: np.ndarray) -> np.ndarray:
  return np.ones(len(ram), bool)


@dataclasses.dataclass(frozen=True)
class _Object:
  """An object's sprite in raw pixels, and when it is on the screen.

  Attributes:
    name: the object's name in `object_names`.
    x, y: the centre of the sprite's main pose, in raw-screen pixels.
    half_size: (x, y) from the centre to the outermost pixel centres of the sprite, e.g. (1.5,
      7.5) for a 4x16 sprite; used to find the part of a sprite that the screen's field shows.
    visible: ram int [T, 128] -> bool [T]; False where the game does not draw the object.
    colour: for a sprite that flickers (drawn in some frames only, which the RAM does not say),
      its RGB colour: a frame draws it where a pixel of its box is this colour (`_drawn`).
    rows_hidden_above: for a sprite that the game draws shorter from the top (Frostbite's man
      sinking), how many of its top rows are not drawn; a sprite with all its rows hidden is
      not on the screen.
  """
  name: str
  x: _Coord
  y: _Coord
  half_size: tuple[float, float] = (0.0, 0.0)
  visible: Callable[[np.ndarray], np.ndarray] = _always
  colour: tuple[int, int, int] | None = None
  rows_hidden_above: _Coord | None = None


@dataclasses.dataclass(frozen=True)
class _Game:
  """A game's objects and the field of the screen where they can be seen.

  The field (x_min, y_min, x_max, y_max), in pixel centres, leaves out walls and score bars that
  are drawn over sprites. A sprite partly outside it is reported at the centre of its part inside
  (a paddle half under a wall), and one wholly outside it is NaN.
  """
  objects: tuple[_Object, ...]
  field: tuple[float, float, float, float] = (0.0, 0.0, RAW_WIDTH - 1.0, RAW_HEIGHT - 1.0)
  player_score_byte: int | None = None  # the RAM byte of the player's score (plain binary)


# Pong: the field between the two white walls is rows 34-193. Paddles are 4x16 sprites in fixed
# columns (left 16-19, right 140-143); the ball is 2x4.
def _pong_ball_in_play(ram: np.ndarray) -> np.ndarray:
  # Between points the game parks the ball with its x or y byte at 0 and draws no ball.
  return (ram[:, 49] != 0) & (ram[:, 54] != 0)


_PONG = _Game(
    objects=(
        _Object("player", _Coord(141.5), _Coord(-6.0, 51), (1.5, 7.5)),
        _Object("enemy", _Coord(17.5), _Coord(-7.5, 50), (1.5, 7.5)),
        _Object("ball", _Coord(-48.5, 49), _Coord(-13.0, 54), (0.5, 1.5), _pong_ball_in_play),
    ),
    field=(0, 34, RAW_WIDTH - 1, 193), player_score_byte=14)  # the enemy's is byte 13


# Breakout: inside the grey walls (columns 8-151, from row 32 down). The paddle is a 16x4 sprite
# on rows 189-192 whose right part slides under the right wall at the end of its range; the ball
# is 2x4 and is drawn down to row 195.
def _breakout_ball_served(ram: np.ndarray) -> np.ndarray:
  # The ball's y byte is 0 until it is served (FIRE) and after it is lost.
  return ram[:, 101] != 0


_BREAKOUT = _Game(
    objects=(
        _Object("player", _Coord(-39.5, 72), _Coord(190.5), (7.5, 1.5)),
        _Object("ball", _Coord(-48.5, 99), _Coord(10.5, 101), (0.5, 1.5), _breakout_ball_served),
    ),
    field=(8, 32, 151, 195))


# Frostbite: the man is an 8x18 sprite when standing. Byte 107 counts up from 0 while he sinks
# into the water, and the game draws him one row shorter from the top per count, his feet where
# they were: at 17 only his bottom row is left, at 18 he is gone until the next life starts, when
# the byte is back to 0.
_FROSTBITE = _Game(objects=(
    _Object("player", _Coord(3.5, 102), _Coord(37.5, 100), (3.5, 8.5),
            rows_hidden_above=_Coord(0.0, 107)),
))


# Ms. Pac-Man: 8x10 sprites (Ms. Pac-Man herself is 6 to 8 wide as her mouth opens) in the maze,
# rows 0-171.
def _mspacman_ghosts_shown(ram: np.ndarray) -> np.ndarray:
  # Byte 33 is 255 exactly while Ms. Pac-Man's death animation plays, when no ghost is drawn.
  return ram[:, 33] != 255


def _mspacman_ghost(name: str, x_byte: int, y_byte: int,
                    colour: tuple[int, int, int]) -> _Object:
  return _Object(name, _Coord(-8.5, x_byte), _Coord(5.5, y_byte), (3.5, 4.5),
                 _mspacman_ghosts_shown, colour)


# A ghost that is drawn shows at least 12 pixels of its colour in its box and one that is not
# shows none (measured on 1,500 random-policy frames); no maze, dot or Ms. Pac-Man pixel is
# within `_COLOUR_TOLERANCE` of a ghost's colour.
_MSPACMAN = _Game(
    objects=(
        _Object("pacman", _Coord(-8.5, 10), _Coord(5.5, 16), (3.5, 4.5)),
        _mspacman_ghost("blinky", 9, 15, (200, 72, 72)),
        _mspacman_ghost("pinky", 8, 14, (198, 89, 179)),
        _mspacman_ghost("inky", 7, 13, (84, 184, 153)),
        _mspacman_ghost("sue", 6, 12, (180, 122, 48)),
    ),
    field=(0, 0, RAW_WIDTH - 1, 171))


# Seaquest: the submarine is a 16x11 sprite (only its top shows while it is at the surface).
def _seaquest_player_shown(ram: np.ndarray) -> np.ndarray:
  # Byte 105 counts down while the submarine explodes and until it respawns (0 otherwise); once
  # the game is over the y byte is 0 and nothing is drawn.
  return (ram[:, 105] == 0) & (ram[:, 97] != 0)


_SEAQUEST = _Game(objects=(
    _Object("player", _Coord(7.5, 70), _Coord(38.0, 97), (7.5, 5.0), _seaquest_player_shown),
))


# Montezuma's Revenge: Panama Joe is an 8x20 sprite and his y byte grows upwards. The skull is
# 8x11 to 8x13 as it bounces; its y byte does not change within the first room (room byte 3 is
# 1), where the offset was measured.
def _montezuma_skull_shown(ram: np.ndarray) -> np.ndarray:
  # Byte 25 is 210 while the first room draws its skull and 253 once the skull is gone (it
  # vanishes when it kills Panama Joe).
  return (ram[:, 3] == 1) & (ram[:, 25] == 210)


_MONTEZUMA = _Game(objects=(
    _Object("player", _Coord(2.5, 42), _Coord(317.5, 43, -1.0), (3.5, 9.5)),
    _Object("skull", _Coord(35.5, 47), _Coord(412.5, 46, -1.0), (3.5, 5.5),
            _montezuma_skull_shown),
))

_GAMES: dict[str, _Game] = {
    "ALE/Pong-v5": _PONG,
    "ALE/Breakout-v5": _BREAKOUT,
    "ALE/Frostbite-v5": _FROSTBITE,
    "ALE/MsPacman-v5": _MSPACMAN,
    "ALE/Seaquest-v5": _SEAQUEST,
    "ALE/MontezumaRevenge-v5": _MONTEZUMA,
}

SUPPORTED_GAMES: tuple[str, ...] = tuple(_GAMES)


def _game(env_id: str) -> _Game:
  if env_id not in _GAMES:
    raise ValueError(f"no object ground truth for {env_id!r}: supported games are "
                     f"{', '.join(SUPPORTED_GAMES)}")
  return _GAMES[env_id]


def object_names(env_id: str) -> tuple[str, ...]:
  """The objects `atari_positions` returns for a game, in order.

  Raises:
    ValueError: for a game not in `SUPPORTED_GAMES` (one line).
  """
  return tuple(o.name for o in _game(env_id).objects)


def field(env_id: str) -> tuple[float, float, float, float]:
  """The part of the raw screen where the game's objects can be seen, (x_min, y_min, x_max,
  y_max) in raw pixels; ValueError (one line) for a game not in `SUPPORTED_GAMES`."""
  return _game(env_id).field


def player_score(env_id: str, ram: np.ndarray) -> np.ndarray | None:
  """The player's score shown on the screen, int [T] for RAM [T, 128] (Pong); None for a game
  whose score byte is not mapped."""
  byte = _game(env_id).player_score_byte
  return None if byte is None else np.asarray(ram)[..., byte].astype(np.int64)


def atari_positions(env_id: str, ram: np.ndarray) -> np.ndarray:
  """Object centres on the raw ALE screen, read from the console RAM.

  Args:
    env_id: a gymnasium id in `SUPPORTED_GAMES`, e.g. "ALE/Pong-v5".
    ram: uint8 [T, 128], the RAM after each observation (a dataset's "ram"); [128] is one frame.

  Returns:
    float32 [T, M, 2] (x, y) pixels of the raw 210x160 screen, objects in `object_names(env_id)`
    order; NaN where an object is not on the screen.

  Raises:
    ValueError: for a game not in `SUPPORTED_GAMES`, or RAM of the wrong shape (one line).
  """
  game = _game(env_id)
  ram = np.asarray(ram)
  if ram.ndim == 1:
    return atari_positions(env_id, ram[None])[0]
  if ram.ndim != 2 or ram.shape[1] != RAM_SIZE:
    raise ValueError(f"RAM must be [T, {RAM_SIZE}], got {list(ram.shape)}")
  ram = ram.astype(np.int64)
  x_min, y_min, x_max, y_max = game.field
  positions = np.empty((len(ram), len(game.objects), 2), np.float64)
  for m, obj in enumerate(game.objects):
    (x, y), (hx, hy) = (obj.x(ram), obj.y(ram)), obj.half_size
    # The sprite's extent clipped to the field: its centre is that of the part one can see.
    left, right = np.maximum(x - hx, x_min), np.minimum(x + hx, x_max)
    if obj.rows_hidden_above is not None:
      top_row = y - hy + obj.rows_hidden_above(ram)
    else:
      top_row = y - hy
    top, bottom = np.maximum(top_row, y_min), np.minimum(y + hy, y_max)
    shown = obj.visible(ram) & (left <= right) & (top <= bottom)
    positions[:, m, 0] = np.where(shown, (left + right) / 2, np.nan)
    positions[:, m, 1] = np.where(shown, (top + bottom) / 2, np.nan)
  return positions.astype(np.float32)


# How far (Euclidean, in RGB levels) a stored frame's pixel may be from a flickering sprite's
# colour and still count: resizing to 80x80 blends a ghost's edge with the maze.
_COLOUR_TOLERANCE = 40.0


def _drawn(frames: np.ndarray, raw_size: tuple[int, int], centres: np.ndarray,
           half_size: tuple[float, float], colour: tuple[int, int, int]) -> np.ndarray:
  """bool [T]: whether each stored frame [T, h, w, 3] shows `colour` within the sprite's box
  (raw-screen centres [T, 2] and half size, one stored pixel of margin)."""
  height, width = frames.shape[1:3]
  centres = data_lib.resize_points(centres, raw_size, (height, width))
  half = np.array(half_size) * (width / raw_size[1], height / raw_size[0]) + 1.0
  colour = np.array(colour, np.float32)
  drawn = np.zeros(len(frames), bool)
  for t in np.flatnonzero(np.isfinite(centres).all(axis=1)):
    (x0, y0), (x1, y1) = np.floor(centres[t] - half), np.ceil(centres[t] + half)
    box = frames[t, max(int(y0), 0):max(int(y1) + 1, 0), max(int(x0), 0):max(int(x1) + 1, 0)]
    drawn[t] = (np.linalg.norm(box.astype(np.float32) - colour, axis=-1)
                <= _COLOUR_TOLERANCE).any()
  return drawn


def raw_frame_size(metadata: Mapping[str, Any]) -> tuple[int, int]:
  """(H, W) of the frames a dataset's stored frames were resized from: the metadata's raw size,
  else the ALE screen for ALE datasets, else the stored size (rendered at that size)."""
  ale = metadata.get("source") == "ale"
  return (int(metadata.get("raw_height", RAW_HEIGHT if ale else metadata["height"])),
          int(metadata.get("raw_width", RAW_WIDTH if ale else metadata["width"])))


def dataset_positions(metadata: Mapping[str, Any], ground_truth: Mapping[str, np.ndarray],
                      raw: bool = False, frames: np.ndarray | None = None,
                      ) -> tuple[tuple[str, ...], np.ndarray]:
  """Named object positions of a dataset, in pixels of its stored frames (`raw`: of the raw
  frames they were resized from, where evaluation compares; computed there, not converted back).

  Args:
    metadata: the dataset's metadata.json (`keypoints.data.Dataset.metadata`).
    ground_truth: its per-frame arrays (`keypoints.data.Dataset.ground_truth`): "ram" uint8
      [T, 128] for "source" "ale"; "positions" float [T, N, 2] for "dm_control" and "sprites",
      which render at the stored size, so their positions are already stored-frame pixels.
    raw: positions in raw-frame pixels instead of stored-frame ones.
    frames: the stored frames uint8 [T, h, w, 3] (`keypoints.data.Dataset.frames`). Given,
      objects that flicker (Ms. Pac-Man's ghosts) are NaN in the frames that do not draw them;
      without them such objects are given in every frame. Evaluation always passes them.

  Returns:
    (names, positions float32 [T, M, 2]): (x, y) pixels of the stored [height, width] frames,
    NaN where an object is not visible. Names are `object_names(env)` for ALE, else the metadata's
    "position_names" when it has them, else "object_0", "object_1", ...

  Raises:
    keypoints.data.DatasetError: when the dataset has no usable ground truth (one line).
  """
  source = metadata.get("source")
  env = metadata.get("env")
  if source == "ale":
    if env not in _GAMES:
      raise data_lib.DatasetError(f"no object ground truth for ALE game {env!r}: supported games "
                                  f"are {', '.join(SUPPORTED_GAMES)}")
    if "ram" not in ground_truth:
      raise data_lib.DatasetError(f"the {env} dataset has no 'ram' ground truth to read object "
                                  "positions from")
    size = (int(metadata["height"]), int(metadata["width"]))
    positions = atari_positions(env, ground_truth["ram"])
    if frames is not None:
      if np.shape(frames)[:1] + np.shape(frames)[3:] != (len(positions), 3):
        raise data_lib.DatasetError(f"frames must be [{len(positions)}, H, W, 3] like the RAM, "
                                    f"got {list(np.shape(frames))}")
      for m, obj in enumerate(_GAMES[env].objects):
        if obj.colour is not None:
          drawn = _drawn(np.asarray(frames), raw_frame_size(metadata), positions[:, m],
                         obj.half_size, obj.colour)
          positions[~drawn, m] = np.nan
    if not raw:
      positions = data_lib.resize_points(positions, raw_frame_size(metadata),
                                         size).astype(np.float32)
    return object_names(env), positions
  if "positions" not in ground_truth:
    raise data_lib.DatasetError(f"the {source or 'unknown-source'} dataset {env!r} has no "
                                "'positions' ground truth")
  positions = np.asarray(ground_truth["positions"], np.float32)
  if positions.ndim != 3 or positions.shape[-1] != 2:
    raise data_lib.DatasetError(f"'positions' ground truth must be [T, N, 2], got "
                                f"{list(positions.shape)}")
  names = metadata.get("position_names")
  if names is None:
    names = [f"object_{i}" for i in range(positions.shape[1])]
  if len(names) != positions.shape[1]:
    raise data_lib.DatasetError(f"metadata names {len(names)} objects but 'positions' holds "
                                f"{positions.shape[1]}")
  size = (int(metadata["height"]), int(metadata["width"]))
  raw_size = raw_frame_size(metadata)
  if raw and raw_size != size:  # rendered at the stored size: their "raw" frame is larger
    positions = data_lib.resize_points(positions, size, raw_size).astype(np.float32)
  return tuple(names), positions
