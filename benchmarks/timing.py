"""The one way the benchmarks time a call."""

import statistics
import time

import jax


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
