"""Data parallelism over the devices JAX sees, with `jax.sharding` (nothing home-made).

One 1-D mesh with a "data" axis over the devices: parameters, optimiser state, the training
frames and the pair index are replicated on every device; the batch of pairs is split along the
data axis, so each device reconstructs its share of the pairs and XLA all-reduces the gradients
(the loss is the mean over the whole batch, so a step is the same step as on one device, up to
the order of float sums). On one device (a laptop CPU) every sharding here is a no-op.

  mesh = parallel.data_mesh()                       # all devices
  state = parallel.replicate(state, mesh)
  step = jax.jit(functools.partial(train.sample_and_train, batch_size=64,
                                   batch_sharding=parallel.batch_sharding(mesh)))
"""

from __future__ import annotations

import functools
import zlib
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh over `devices` (default: every device of every process) on the data axis."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.array(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  """The same full array on every device of `mesh`."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, axis: int = 0) -> NamedSharding:
  """Arrays split along their batch axis (the leading one; `axis` 1 for a population's
  [members, batch, ...] batches) over the data axis."""
  return NamedSharding(mesh, PartitionSpec(*[None] * axis, DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Every array of `tree` copied onto every device of `mesh`."""
  return jax.device_put(tree, replicated(mesh))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """Raises ValueError (one line) unless the batch splits evenly over the mesh's devices."""
  if batch_size % mesh.size:
    raise ValueError(f"batch size {batch_size} does not split over {mesh.size} devices: use a "
                     f"multiple of {mesh.size} (--config.train.batch_size)")


def local_copy(tree: Any) -> Any:
  """This process's copy of every (replicated) array of `tree`, on its first local device: for
  work only some processes do (pictures), which must not enter a computation over the mesh."""
  return jax.tree.map(lambda x: x.addressable_data(0), tree)


def host_episodes(num_episodes: int) -> range:
  """The training episodes this process samples pairs from in a multi-host run (every
  process_count-th, from its index); all of them for a single process.

  Raises:
    ValueError: fewer episodes than processes (one line).
  """
  count, index = jax.process_count(), jax.process_index()
  if num_episodes < count:
    raise ValueError(f"{num_episodes} training episodes cannot be shared by {count} processes: "
                     "each needs at least one")
  return range(index, num_episodes, count)


def multihost_steps(mesh: Mesh, frames: np.ndarray, pair_index, batch_size: int,
                    pixel_weights: jax.Array | None = None):
  """(state, n) -> (state, metrics of each step [n]): n steps of `train.sample_and_train` in
  one dispatch for a run over several processes, pairs drawn on the devices (no host
  round-trip).

  Each process holds its own episodes (`frames`, `pair_index`: its share, see
  `host_episodes`), copied once onto each of its devices. In every step each process's share
  of the batch, batch_size / process_count pairs, is drawn from its episodes with the step's
  sampling key (that of `sample_and_train`) folded with the process index, and its devices
  each take their slice of it; the slices form one global batch split over the mesh, and the
  step runs on every device. n > 1 runs the steps in a `lax.scan` (for accelerators; see
  `train.sample_and_train`).
  """
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  from keypoints import data  # pylint: disable=g-import-not-at-top
  from keypoints import train  # pylint: disable=g-import-not-at-top
  from keypoints import xla  # pylint: disable=g-import-not-at-top
  process = jax.process_index()
  local = sum(d.process_index == process for d in mesh.devices.flat)
  host_batch, device_batch = batch_size // jax.process_count(), batch_size // mesh.size
  sources = np.asarray(pair_index.sources)
  max_offsets = np.asarray(pair_index.max_offsets)
  min_offset = int(pair_index.min_offset)
  # Every process pads its share to the largest one, so the arrays have one global shape.
  sizes = np.asarray(multihost_utils.process_allgather(
      np.array([len(frames), len(sources)]))).reshape(-1, 2).max(axis=0)
  split = batch_sharding(mesh)

  def on_each_local_device(x: np.ndarray, size: int | None = None) -> jax.Array:
    """[mesh.size, size, ...]: this process's `x` (padded to `size`) on each of its devices."""
    if size is not None:
      x = np.concatenate([x, np.zeros((size - len(x), *x.shape[1:]), x.dtype)])
    return jax.make_array_from_process_local_data(
        split, np.broadcast_to(x[None], (local, *x.shape)), (mesh.size, *x.shape))

  device_frames = on_each_local_device(np.asarray(frames), int(sizes[0]))
  device_sources = on_each_local_device(sources, int(sizes[1]))
  device_offsets = on_each_local_device(max_offsets, int(sizes[1]))
  num_sources = on_each_local_device(np.int32(len(sources)))
  process_index = on_each_local_device(np.int32(process))
  # The rank of each device among its process's devices, in the mesh's order: the order in
  # which a process's rows of the global batch are laid out on its devices.
  rank = jax.make_array_from_process_local_data(split, np.arange(local, dtype=np.int32),
                                                (mesh.size,))

  def draw(key, frames, sources, max_offsets, count, process, rank):
    _, sample_key = jax.random.split(key)
    index = data.PairIndex(sources=sources[0], max_offsets=max_offsets[0],
                           min_offset=jax.numpy.int32(min_offset))
    source, target = data.sample_pair_indices(jax.random.fold_in(sample_key, process[0]), index,
                                              host_batch, count[0])
    mine = lambda x: jax.lax.dynamic_slice_in_dim(x, rank[0] * device_batch, device_batch)
    return {"source": frames[0][mine(source)], "target": frames[0][mine(target)]}

  along = PartitionSpec(DATA_AXIS)
  draw = jax.shard_map(draw, mesh=mesh, in_specs=(PartitionSpec(),) + (along,) * 6,
                       out_specs=along, check_vma=False)
  arrays = (device_frames, device_sources, device_offsets, num_sources, process_index, rank)

  def one(state, arrays):
    return train.train_on_pairs(state, draw(state.key, *arrays), pixel_weights)

  def steps(state, arrays, num_steps):
    if num_steps == 1:
      state, metrics = one(state, arrays)
      return state, jax.tree.map(lambda m: m[None], metrics)
    return jax.lax.scan(lambda s, _: one(s, arrays), state, None, length=num_steps)

  compiled = {}

  def run(state, num_steps: int):
    if num_steps not in compiled:
      compiled[num_steps] = xla.jit(functools.partial(steps, num_steps=num_steps),
                                    donate_argnums=0)
    return compiled[num_steps](state, arrays)

  return run


class ReplicaMismatch(RuntimeError):
  """The processes of a multi-host run hold different copies of what should be replicated."""


def check_replicas_agree(tree: Any, what: str) -> None:
  """Raises ReplicaMismatch (one line) on every process when the processes of a multi-host run
  hold different bytes for `tree`; a no-op for one process. Every process must call it (it
  gathers one checksum per process), and every process raises together, so none is left
  waiting in a collective for one that stopped."""
  if jax.process_count() == 1:
    return
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  checksum = 0
  for leaf in jax.tree.leaves(local_copy(tree)):
    checksum = zlib.crc32(np.ascontiguousarray(np.asarray(leaf)).tobytes(), checksum)
  checksums = np.asarray(multihost_utils.process_allgather(np.array([checksum], np.uint32)))
  if len(set(checksums.ravel().tolist())) > 1:
    raise ReplicaMismatch(f"the processes hold different {what} (checksums "
                          f"{checksums.ravel().tolist()}): the replicas have diverged")
