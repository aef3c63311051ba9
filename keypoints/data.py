"""Frame datasets on disk and (source, target) pair sampling.

On-disk format (one folder per dataset)::

  <dataset>/metadata.json       {"format": "keypoint-frames/1", "source": "ale" | "dm_control" |
                                 "sprites", "env": ..., "height": H, "width": W,
                                 "raw_height": ..., "raw_width": ..., "ground_truth": [...], ...}
  <dataset>/episode_000000.npz  frames    uint8   [T, H, W, 3]  (always)
                                ram       uint8   [T, 128]      (ALE: console RAM per frame)
                                positions float32 [T, N, 2]     (dm_control, sprites: object
                                                                  centres as (x, y) pixels of
                                                                  the raw frame; NaN = unseen)

Episodes are written to a temporary name and renamed when complete, so an interrupted collection
leaves only whole episodes behind. Pixel coordinates everywhere in the project are (x, y) with
(0, 0) the centre of the top-left pixel, x to the right and y down.

Pair sampling is a pure JAX function of a PRNG key: a source frame is drawn uniformly among frames
that have at least `min_offset` successors in their episode, and the target lies a uniform
offset in [min_offset, max_offset] after it, truncated at the episode's end, so a pair never
crosses an episode boundary.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import zipfile
import zlib
from typing import Any, Mapping

import chex
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

FORMAT = "keypoint-frames/1"
METADATA = "metadata.json"


class DatasetError(ValueError):
  """A dataset folder is missing, corrupt or not of the expected shape."""


@dataclasses.dataclass(frozen=True)
class Dataset:
  """All frames of a dataset in memory, episodes concatenated along the first axis.

  Attributes:
    frames: uint8 [N, H, W, 3].
    episode_starts: int32 [E], index of each episode's first frame in `frames`.
    episode_lengths: int32 [E].
    ground_truth: arrays concatenated like `frames` (e.g. "ram" [N, 128], "positions" [N, M, 2]).
    metadata: the dataset's metadata.json.
  """
  frames: np.ndarray
  episode_starts: np.ndarray
  episode_lengths: np.ndarray
  ground_truth: Mapping[str, np.ndarray]
  metadata: Mapping[str, Any]

  @property
  def num_episodes(self) -> int:
    return len(self.episode_lengths)

  def episode(self, i: int) -> slice:
    start = int(self.episode_starts[i])
    return slice(start, start + int(self.episode_lengths[i]))

  def mean_frame(self) -> np.ndarray:
    """float32 [H, W, 3] in [0, 1]: the average frame (a static background shows up here)."""
    total = np.zeros(self.frames.shape[1:], np.float64)
    for chunk in np.array_split(self.frames, max(1, len(self.frames) // 4096)):
      total += chunk.sum(0, dtype=np.float64)
    return (total / len(self.frames) / 255.0).astype(np.float32)

  def pixel_std(self) -> np.ndarray:
    """float32 [H, W] in [0, 1] units: how much each pixel varies over the frames (the root of
    its variance averaged over the colour channels); 0 where nothing ever changes."""
    mean = self.mean_frame().astype(np.float64)
    total = np.zeros(self.frames.shape[1:], np.float64)
    for chunk in np.array_split(self.frames, max(1, len(self.frames) // 4096)):
      total += np.square(chunk / 255.0 - mean).sum(0)
    return np.sqrt((total / len(self.frames)).mean(-1)).astype(np.float32)

  def select_episodes(self, indices) -> "Dataset":
    """A new dataset holding only the given episodes, in the given order."""
    slices = [self.episode(i) for i in indices]
    if not slices:
      raise DatasetError("selecting no episodes leaves an empty dataset")
    lengths = np.array([s.stop - s.start for s in slices], np.int32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)
    take = lambda a: np.concatenate([a[s] for s in slices])
    return Dataset(take(self.frames), starts, lengths,
                   {k: take(v) for k, v in self.ground_truth.items()}, self.metadata)

  def split(self, num_heldout: int) -> tuple["Dataset", "Dataset"]:
    """(train, heldout): the last `num_heldout` episodes are held out, never trained on."""
    if not 0 < num_heldout < self.num_episodes:
      raise DatasetError(f"cannot hold out {num_heldout} of {self.num_episodes} episodes: "
                         "need at least one episode on each side")
    cut = self.num_episodes - num_heldout
    return (self.select_episodes(range(cut)),
            self.select_episodes(range(cut, self.num_episodes)))


def episode_path(root: os.PathLike, index: int) -> pathlib.Path:
  return pathlib.Path(root) / f"episode_{index:06d}.npz"


def write_metadata(root: os.PathLike, metadata: Mapping[str, Any]) -> None:
  root = pathlib.Path(root)
  root.mkdir(parents=True, exist_ok=True)
  tmp = root / (METADATA + ".tmp")
  tmp.write_text(json.dumps({"format": FORMAT, **metadata}, indent=2, sort_keys=True))
  os.replace(tmp, root / METADATA)


def read_metadata(root: os.PathLike) -> dict[str, Any]:
  root = pathlib.Path(root)
  if not root.is_dir():
    raise DatasetError(f"dataset folder {root} does not exist")
  path = root / METADATA
  if not path.is_file():
    raise DatasetError(f"{path} is missing: {root} is not a frame dataset "
                       "(make one with experiments/collect_frames.py)")
  try:
    metadata = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise DatasetError(f"{path} is corrupt: {e}") from None
  if metadata.get("format") != FORMAT:
    raise DatasetError(f"{path} has format {metadata.get('format')!r}, expected {FORMAT!r}")
  return metadata


def write_episode(root: os.PathLike, index: int, frames: np.ndarray,
                  **ground_truth: np.ndarray) -> pathlib.Path:
  """Writes one complete episode atomically; returns its path."""
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
    raise DatasetError(f"episode frames must be uint8 [T, H, W, 3], got {frames.dtype} "
                       f"{list(frames.shape)}")
  for name, value in ground_truth.items():
    if len(value) != len(frames):
      raise DatasetError(f"ground truth {name!r} has {len(value)} rows for {len(frames)} frames")
  path = episode_path(root, index)
  tmp = path.with_suffix(".npz.tmp")
  with open(tmp, "wb") as f:
    np.savez_compressed(f, frames=frames, **ground_truth)
  os.replace(tmp, path)
  return path


def complete_episodes(root: os.PathLike) -> list[int]:
  """Indices of the complete episodes on disk, sorted."""
  names = sorted(pathlib.Path(root).glob("episode_*.npz"))
  return [int(p.stem.split("_")[1]) for p in names]


def load_dataset(root: os.PathLike, max_episodes: int | None = None) -> Dataset:
  """Reads a whole dataset into memory, checking it as it goes.

  Raises:
    DatasetError: with one line saying what is missing or corrupt.
  """
  root = pathlib.Path(root)
  metadata = read_metadata(root)
  indices = complete_episodes(root)
  if max_episodes is not None:
    indices = indices[:max_episodes]
  if not indices:
    raise DatasetError(f"{root} holds no episodes (episode_*.npz)")
  expected = (int(metadata["height"]), int(metadata["width"]), 3)
  frames, lengths, truth = [], [], {}
  for i in indices:
    path = episode_path(root, i)
    try:
      with np.load(path) as f:
        episode = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError) as e:
      raise DatasetError(f"{path} is corrupt ({type(e).__name__}: {e}); delete it and "
                         "re-run the collection to rewrite it") from None
    if "frames" not in episode:
      raise DatasetError(f"{path} has no 'frames' array")
    ep_frames = episode.pop("frames")
    if ep_frames.dtype != np.uint8 or ep_frames.shape[1:] != expected or not len(ep_frames):
      raise DatasetError(f"{path}: frames are {ep_frames.dtype} {list(ep_frames.shape)}, "
                         f"expected uint8 [T, {expected[0]}, {expected[1]}, 3] with T > 0")
    frames.append(ep_frames)
    lengths.append(len(ep_frames))
    for k, v in episode.items():
      truth.setdefault(k, []).append(v)
  lengths = np.array(lengths, np.int32)
  starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)
  truth = {k: np.concatenate(v) for k, v in truth.items() if len(v) == len(indices)}
  return Dataset(np.concatenate(frames), starts, lengths, truth, metadata)


def load_split(root: os.PathLike, max_episodes: int, heldout_episodes: int
               ) -> tuple[Dataset, Dataset]:
  """(train, held-out) of a dataset as a run config names it (`max_episodes` < 0: all)."""
  dataset = load_dataset(root, None if max_episodes < 0 else max_episodes)
  return dataset.split(heldout_episodes)


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
  """Resizes uint8 [N, H, W, 3] frames to [N, height, width, 3] (area averaging).

  The one resize used both when collecting datasets and inside the detector, so that a detector
  sees raw frames exactly as the model saw them in training.
  """
  frames = np.asarray(frames)
  if frames.shape[1:3] == (height, width):
    return frames
  out = np.empty((len(frames), height, width, 3), np.uint8)
  for i, frame in enumerate(frames):
    out[i] = np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BOX))
  return out


def resize_points(points: np.ndarray, size: tuple[int, int],
                  new_size: tuple[int, int]) -> np.ndarray:
  """(x, y) pixels [..., 2] of a frame of `size` (H, W) -> pixels of it resized to `new_size`.

  `resize_frames` scales edge to edge, so a pixel centre p (edge coordinate p + 0.5) goes to
  (p + 0.5) * new / old - 0.5 per axis. Returns float64; NaN stays NaN.
  """
  points = np.asarray(points, np.float64)
  scale = np.array([new_size[1] / size[1], new_size[0] / size[0]])
  return (points + 0.5) * scale - 0.5


# --------------------------------------------------------------------------------------------
# Pair sampling (pure JAX).


@chex.dataclass(frozen=True)
class PairIndex:
  """Where pairs can be drawn from, as device arrays.

  Attributes:
    sources: int32 [M], global indices of frames with at least `min_offset` successors.
    max_offsets: int32 [M], the largest allowed offset from each source (<= max_offset).
    min_offset: int32 scalar, the smallest offset; the index was built for it, so samplers
      read it from here rather than being told it again.
  """
  sources: jax.Array
  max_offsets: jax.Array
  min_offset: jax.Array


def check_offsets(min_offset: int, max_offset: int) -> None:
  """Raises ValueError (one line) for a temporal offset range that cannot work."""
  if min_offset < 1:
    raise ValueError(f"min_offset must be >= 1, got {min_offset}")
  if max_offset < min_offset:
    raise ValueError(f"temporal offset range is inverted: min_offset={min_offset} > "
                     f"max_offset={max_offset}")


def make_pair_index(episode_lengths: np.ndarray, min_offset: int = 1,
                    max_offset: int = 20) -> PairIndex:
  """Builds the table that `sample_pairs` draws from."""
  check_offsets(min_offset, max_offset)
  sources, max_offsets = [], []
  start = 0
  for length in np.asarray(episode_lengths):
    t = np.arange(length)
    room = length - 1 - t  # frames after t in this episode
    ok = room >= min_offset
    sources.append(start + t[ok])
    max_offsets.append(np.minimum(room[ok], max_offset))
    start += int(length)
  sources = np.concatenate(sources).astype(np.int32)
  if not len(sources):
    raise ValueError(f"no episode is longer than min_offset={min_offset} frames: no pairs exist")
  return PairIndex(sources=jnp.asarray(sources),
                   max_offsets=jnp.asarray(np.concatenate(max_offsets).astype(np.int32)),
                   min_offset=jnp.asarray(min_offset, jnp.int32))


def sample_pair_indices(key: jax.Array, index: PairIndex, batch_size: int,
                        num_sources: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Draws `batch_size` (source, target) global frame indices; int32 [B] each.

  `num_sources`: how many leading entries of an index padded at its end are real (default: all
  of them)."""
  pick_key, offset_key = jax.random.split(key)
  count = index.sources.shape[0] if num_sources is None else num_sources
  i = jax.random.randint(pick_key, (batch_size,), 0, count)
  source = index.sources[i]
  span = index.max_offsets[i] - index.min_offset + 1
  u = jax.random.uniform(offset_key, (batch_size,))
  offset = index.min_offset + jnp.minimum(jnp.floor(u * span).astype(jnp.int32), span - 1)
  return source, source + offset


def sample_pairs(key: jax.Array, frames: jax.Array, index: PairIndex,
                 batch_size: int) -> dict[str, jax.Array]:
  """A batch {"source", "target"} of uint8 [B, H, W, 3] frames drawn from `frames` [N, H, W, 3]."""
  source, target = sample_pair_indices(key, index, batch_size)
  return {"source": frames[source], "target": frames[target]}
