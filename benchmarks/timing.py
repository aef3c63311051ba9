"""The one way the benchmarks time a call."""

import math
import statistics
import time

import jax
import jax.numpy as jnp


def median_seconds(fn, steps: int) -> float:
  """Seconds per call of `fn()`: one warm-up call (compilation), then the median of `steps`
  timed calls, each waiting for its result."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def median_ms(fn, steps: int) -> float:
  """`median_seconds` in milliseconds."""
  return 1e3 * median_seconds(fn, steps)


def xla_flops(*sources) -> float:
  """XLA's FLOP count of a jitted call: the first of `sources` (lowered or compiled programs,
  `jax.jit(f).lower(...)` and its `.compile()`) that gives a positive count (the CUDA backend
  counts only compiled programs), else nan."""
  for source in sources:
    cost = source.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    if cost and cost.get("flops", -1) > 0:
      return float(cost["flops"])
  return math.nan


def matmul_ceiling_gflops(size: int = 2048) -> float:
  """GFLOP/s of a float32 [size, size] matmul: about what this machine can do at best."""
  a = jnp.ones((size, size), jnp.float32)
  mm = jax.jit(lambda a: a @ a)
  return 2 * size**3 / median_seconds(lambda: mm(a), 5) / 1e9
