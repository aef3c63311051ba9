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


def multihost_step(mesh: Mesh, frames: np.ndarray, pair_index, batch_size: int,
                   pixel_weights: jax.Array | None = None):
  """state -> (state, metrics): `train.sample_and_train`'s step for a run over several
  processes. Each process draws its batch_size / process_count pairs from its own episodes
  (`frames`, `pair_index`: its share, see `host_episodes`) with `train.host_pairs`; the shares
  form one global batch split over the mesh, and the step runs on every device."""
  from keypoints import train  # pylint: disable=g-import-not-at-top
  from keypoints import xla  # pylint: disable=g-import-not-at-top
  sample = xla.jit(functools.partial(train.host_pairs, batch_size=batch_size // jax.process_count(),
                                     process_index=jax.process_index()))
  train_fn = xla.jit(train.train_on_pairs, donate_argnums=0)
  sharding = batch_sharding(mesh)
  frames = jax.device_put(frames, jax.local_devices()[0])

  def step(state):
    pairs = sample(state.key.addressable_data(0), frames, pair_index)
    batch = {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
             for k, v in pairs.items()}
    return train_fn(state, batch, pixel_weights)

  return step


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
