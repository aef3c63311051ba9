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


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Arrays split along their leading (batch) axis over the data axis."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Every array of `tree` copied onto every device of `mesh`."""
  return jax.device_put(tree, replicated(mesh))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """Raises ValueError (one line) unless the batch splits evenly over the mesh's devices."""
  if batch_size % mesh.size:
    raise ValueError(f"batch size {batch_size} does not split over {mesh.size} devices: use a "
                     f"multiple of {mesh.size} (--config.train.batch_size)")
