"""Transporter throughput, latency and memory on this machine: a table and JSON.

  python -m benchmarks.transporter                 # default Atari config, batch 32 and 64
  python -m benchmarks.transporter --archs=deepmind,paper --torch  # + a PyTorch twin, side by side
  # an accelerator's fast path: 50 steps per dispatch, bfloat16 convolutions as well
  python -m benchmarks.transporter --batch_sizes=32,64,256,1024 --steps_per_dispatch=50 \
      --compute_dtypes=float32,bfloat16

Rows:
  train/<arch>/b<B>   pairs/s of the jitted train step (sampling included), its achieved GFLOP/s
                      (XLA's own FLOP count of the compiled step / time), ms per step, the
                      process's peak RSS (the maximum so far: earlier rows' memory counts too)
                      and, on an accelerator, the device's peak memory. A "/bf16" suffix: the
                      step with bfloat16 convolutions (configs: compute_dtype).
  ceiling/matmul      GFLOP/s of a 2048^3 float32 matmul: what this CPU can do at best.
  ceiling/conv        GFLOP/s of a 3x3 64->64 conv forward at 40x40, batch 32.
  detect/<arch>/b1    median latency of the detector on one raw 210x160 Atari frame (resize
                      included) and on one frame already at model size.
  torch/<arch>/b<B>   the same model and step written in PyTorch (only with --torch), timed in
                      alternation with the JAX step: this machine's speed drifts by 20% and more.
"""

from __future__ import annotations

import json
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags
from absl import logging

from benchmarks import timing
from keypoints import configs
from keypoints import data as data_lib
from keypoints import inference
from keypoints import train as train_lib
from keypoints import xla

_ARCHS = flags.DEFINE_list("archs", ["deepmind"], "Architectures to time (deepmind, paper).")
_BATCHES = flags.DEFINE_list("batch_sizes", ["32", "64"], "Train-step batch sizes.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed train steps per row (after one warm-up).")
_KEYPOINTS = flags.DEFINE_integer("num_keypoints", 4, "K.")
_SIZE = flags.DEFINE_integer("size", 80, "Model image height and width.")
_TORCH = flags.DEFINE_bool("torch", False, "Also time a PyTorch twin of the model, if installed.")
_JSON = flags.DEFINE_string("json_out", None, "Also write the rows to this JSON file.")
_DTYPES = flags.DEFINE_list("compute_dtypes", ["float32"],
                            "Compute dtypes of the train-step rows (float32, bfloat16).")
_PER_DISPATCH = flags.DEFINE_integer(
    "steps_per_dispatch", 1, "Train steps per jitted call (lax.scan), as train_transporter's "
    "flag; rows report per-step numbers.", lower_bound=1)


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ceiling_rows() -> list[dict]:
  matmul = timing.matmul_ceiling_gflops()
  x = jnp.ones((32, 40, 40, 64), jnp.float32)
  w = jnp.ones((3, 3, 64, 64), jnp.float32) * 0.01
  conv = xla.jit(lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
  tc = timing.median_seconds(lambda: conv(x, w), 5)
  conv_flops = 2 * 32 * 40 * 40 * 9 * 64 * 64
  return [{"name": "ceiling/matmul", "gflops": matmul},
          {"name": "ceiling/conv", "gflops": conv_flops / tc / 1e9}]


def peak_device_mib() -> float | None:
  """The default device's peak memory in use so far (accelerators; None where not reported)."""
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return None if peak is None else peak / 2**20


def _train_step_fn(arch: str, batch: int, dtype: str = "float32", per_dispatch: int = 1):
  """(run one jitted call of `per_dispatch` train steps, XLA's FLOP count of the call) for
  random frames."""
  size = _SIZE.value
  mc = configs.model_config(arch, num_keypoints=_KEYPOINTS.value, image_size=(size, size),
                            compute_dtype=dtype)
  tc = configs.train_config(batch_size=batch)
  model = train_lib.build_model(mc)
  state = train_lib.create_train_state(jax.random.PRNGKey(0), model,
                                       train_lib.build_optimizer(tc), (size, size))
  rng = np.random.default_rng(0)
  frames = jnp.asarray(rng.integers(0, 256, (400, size, size, 3), dtype=np.uint8))
  index = data_lib.make_pair_index(np.full(4, 100), 1, 20)
  one_step = xla.jit(lambda s, f, i: train_lib.sample_and_train(s, f, i, batch),
                     donate_argnums=0)
  lowered = one_step.lower(state, frames, index)
  # The FLOPs of one step; with several steps a call, only the scan is compiled (an
  # accelerator's autotuning makes every compile count).
  if per_dispatch == 1:
    compiled = lowered.compile()
  else:
    compiled = xla.jit(lambda s, f, i: train_lib.sample_and_train_steps(s, f, i, batch,
                                                                        per_dispatch),
                       donate_argnums=0).lower(state, frames, index).compile()
  # One step's FLOPs: the lowered program's count where the backend gives one (the CUDA backend
  # does not), else the compiled call's, which counts a scan's body once, so one step too.
  flops = per_dispatch * timing.xla_flops(lowered, compiled)
  holder = [state]

  def run():
    holder[0], metrics = compiled(holder[0], frames, index)
    return jax.block_until_ready(metrics)

  return run, flops


def _torch_step_fn(arch: str, batch: int):
  try:
    from benchmarks import torch_twin  # pylint: disable=g-import-not-at-top
  except ImportError:
    logging.warning("--torch: PyTorch is not installed, so there are no torch/ rows")
    return None
  return torch_twin.make_train_step(arch, batch, _SIZE.value, _KEYPOINTS.value)


def train_rows(arch: str, batch: int, steps: int, with_torch: bool, dtype: str = "float32",
               per_dispatch: int = 1) -> list[dict]:
  """The JAX step's row and, with `with_torch`, the PyTorch twin's. Their timed steps alternate
  (after one warm-up each), so that drift in the machine's speed slows both alike."""
  jax_step, flops = _train_step_fn(arch, batch, dtype, per_dispatch)
  jax_step()  # warm-up, then the process's peak memory before the twin allocates anything
  rss, device_mib = peak_rss_mib(), peak_device_mib()
  jax_name = f"train/{arch}/b{batch}" + ("/bf16" if dtype == "bfloat16" else "")
  steps_by_name = {jax_name: jax_step}
  torch_step = _torch_step_fn(arch, batch) if with_torch else None
  if torch_step is not None:
    torch_step()
    steps_by_name[f"torch/{arch}/b{batch}"] = torch_step
  times = {name: [] for name in steps_by_name}
  for _ in range(steps):
    for name, fn in steps_by_name.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  rows = []
  for name in steps_by_name:
    t = statistics.median(times[name])
    if name == jax_name:  # a call runs per_dispatch steps
      t, flops_per_step = t / per_dispatch, flops / per_dispatch
    row = {"name": name, "pairs_per_s": batch / t, "ms": t * 1e3}
    if name == jax_name:
      row.update(gflops=flops_per_step / t / 1e9, gflop_per_step=flops_per_step / 1e9,
                 peak_rss_mib=rss, steps_per_dispatch=per_dispatch)
      if device_mib is not None:
        row["peak_device_mib"] = device_mib
    rows.append(row)
  return rows


def detect_rows(arch: str) -> list[dict]:
  size = _SIZE.value
  mc = configs.model_config(arch, num_keypoints=_KEYPOINTS.value, image_size=(size, size))
  model = train_lib.build_model(mc)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3), jnp.uint8),
                      jnp.zeros((1, size, size, 3), jnp.uint8))["params"]
  detector = inference.Detector(model, {"params": params})
  raw = np.random.default_rng(0).integers(0, 256, (1, 210, 160, 3), dtype=np.uint8)
  small = np.random.default_rng(1).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
  rows = []
  for name, frame in (("raw210x160", raw), (f"{size}x{size}", small)):
    t = timing.median_seconds(lambda: detector(frame), 200)
    rows.append({"name": f"detect/{arch}/b1/{name}", "ms": t * 1e3,
                 "peak_rss_mib": peak_rss_mib()})
  return rows


def print_table(rows: list[dict]) -> None:
  cols = ["name", "pairs_per_s", "ms", "gflops", "gflop_per_step", "peak_rss_mib",
          "peak_device_mib"]
  print(" | ".join(f"{c:>22}" if i == 0 else f"{c:>14}" for i, c in enumerate(cols)))
  for r in rows:
    cells = []
    for i, c in enumerate(cols):
      v = r.get(c, "")
      s = f"{v:.2f}" if isinstance(v, float) else str(v)
      cells.append(f"{s:>22}" if i == 0 else f"{s:>14}")
    print(" | ".join(cells))


def main(argv):
  del argv
  print(f"device: {jax.devices()[0].device_kind}  jax {jax.__version__}", flush=True)
  rows = []

  def add(new_rows):
    # Each row is printed and saved as soon as it is measured, so that a run stopped early
    # (a job's time limit on a cluster) keeps what it measured.
    rows.extend(new_rows)
    for r in new_rows:
      print(json.dumps(r), flush=True)
    if _JSON.value:
      with open(_JSON.value, "w") as f:
        json.dump(rows, f, indent=2)

  add(ceiling_rows())
  for arch in _ARCHS.value:
    for b in _BATCHES.value:
      for dtype in _DTYPES.value:
        add(train_rows(arch, int(b), _STEPS.value, _TORCH.value and dtype == "float32",
                       dtype, _PER_DISPATCH.value))
    add(detect_rows(arch))
  print_table(rows)


if __name__ == "__main__":
  app.run(main)
