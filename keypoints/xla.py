"""`jit`: jax.jit with the XLA:CPU options this codebase is measured with.

On CPU, XLA's YNNPACK fusions compute this model's convolution weight gradients several times
slower than XLA's own (Eigen) convolutions, and its small forward convolutions about 2x slower
(`python -m benchmarks.transporter` shows the effect); `CPU_COMPILER_OPTIONS` turns them off.
Options are per compiled function, so nothing global changes. Other backends get plain jax.jit.
Functions of matrix products alone (the Q-networks over keypoint records) keep the fusions,
which are faster there: `jit(fn, convolutional=False)` (KeyQN's update at batch 32: about 4.6
against 6.6 ms with them off, measured in turn on the 2-core AMD EPYC).
"""

from __future__ import annotations

from typing import Any, Callable

import jax

CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def jit(fn: Callable[..., Any], convolutional: bool = True, **kwargs) -> Callable[..., Any]:
  """jax.jit(fn, **kwargs), adding `CPU_COMPILER_OPTIONS` when the default backend is the CPU
  and `fn` runs convolutions (`convolutional`); plain jax.jit otherwise."""
  if convolutional and jax.default_backend() == "cpu":
    kwargs["compiler_options"] = {**CPU_COMPILER_OPTIONS, **kwargs.get("compiler_options", {})}
  return jax.jit(fn, **kwargs)
