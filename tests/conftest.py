"""Shared fixtures: tiny datasets made in temporary folders."""

import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

# Many tests start the binaries in fresh interpreters that compile the same small programs
# again; JAX's persistent compilation cache, shared by this process and its children through
# the environment, compiles each once per test session (a tiny training run: 25 s -> 7 s).
# A cached executable is the compiled one, so results are bit-identical. Set before JAX loads.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix="jax_cache_")
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

# The suite compiles several hundred small programs that each run a few steps, in this process
# and in the binaries it starts (which inherit the environment): there LLVM's optimisation of
# the generated code costs more than it saves (a 10-step training binary, cold: 37 s -> 17 s on
# the 2-core CPU). HLO optimisation and fusion are untouched, so only the machine code differs,
# and every numerical comparison in the suite is between programs compiled alike. Tests whose
# time goes into running rather than compiling (the learning tests) ask for the optimised
# code per function with `OPTIMISED` (compiler options override these flags).
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
OPTIMISED = {"xla_backend_optimization_level": 3, "xla_llvm_disable_expensive_passes": False}
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE_FLAGS}".strip()

from keypoints import sprites  # pylint: disable=g-import-not-at-top


@pytest.fixture(scope="session")
def optimised():
  """Compiler options for a jit whose time goes into running, not compiling (see above)."""
  return dict(OPTIMISED)


@pytest.fixture(scope="session")
def sprites_dir(tmp_path_factory):
  """A 16x16 sprites video of 4 episodes."""
  root = tmp_path_factory.mktemp("data") / "sprites"
  sprites.write_dataset(root, num_episodes=4, episode_length=20, size=16, num_sprites=2,
                        sprite_size=3, seed=0)
  return root


def _kill_9_after_checkpoint(cmd, run_dir, step, cwd, timeout=300.0):
  """Starts `cmd`, waits until checkpoint `step` of `run_dir` exists and kills it (SIGKILL).

  Checkpoints the run got further to before the kill landed (whole or half written) are
  deleted, as if the kill had come right after `step`'s: a rerun must resume from `step`.
  """
  import pathlib  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
  start = time.time()
  while not (pathlib.Path(run_dir) / "checkpoints" / str(step)).is_dir():
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    assert time.time() - start < timeout
    time.sleep(0.02)
  proc.kill()
  proc.wait()
  for path in (pathlib.Path(run_dir) / "checkpoints").iterdir():
    later = re.match(r"\d+", path.name)
    if later and int(later[0]) > step:
      shutil.rmtree(path)


def _restore_checkpoint(run_dir, step):
  """Checkpoint `step` of a run, as the pytree of arrays it was saved as."""
  import pathlib  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  manager = ocp.CheckpointManager(pathlib.Path(run_dir, "checkpoints").absolute())
  return manager.restore(step, args=ocp.args.StandardRestore())


def _assert_same_checkpoint(run_a, run_b, step):
  """Checkpoint `step` of two runs holds the same arrays, all but the wall clock (the agents'
  checkpoints keep their training seconds; the Transporter's keep none)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  a, b = _restore_checkpoint(run_a, step), _restore_checkpoint(run_b, step)
  assert ("train_seconds" in a) == ("train_seconds" in b)
  if "train_seconds" in a:
    assert a.pop("train_seconds") > 0 and b.pop("train_seconds") > 0
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(x, y)


@pytest.fixture
def kill_9_after_checkpoint():
  """(cmd, run_dir, step, cwd): runs a training command and kill -9s it after that checkpoint."""
  return _kill_9_after_checkpoint


@pytest.fixture
def restore_checkpoint():
  """(run_dir, step) -> that checkpoint's pytree."""
  return _restore_checkpoint


@pytest.fixture
def assert_same_checkpoint():
  """(run_a, run_b, step): the two runs' checkpoints at `step` are equal bit for bit."""
  return _assert_same_checkpoint


def _train_tiny_detector(root, env_id):
  """A (barely trained) Transporter on 2 short random episodes of an ALE game, through the
  binaries: the detector the agent and exploration tests read. Returns its run directory."""
  import pathlib  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  repo = pathlib.Path(__file__).resolve().parents[1]
  data, run_dir = root / "data", root / "transporter"
  for cmd in ([sys.executable, "-m", "experiments.collect_frames", f"--env={env_id}",
               f"--out={data}", "--episodes=2", "--max_episode_frames=30"],
              [sys.executable, "-m", "experiments.train_transporter",
               "--config=experiments/configs/pong.py", f"--config.dataset.path={data}",
               f"--run_dir={run_dir}", "--config.train.num_steps=4",
               "--config.train.batch_size=2", "--config.checkpoint_every=4",
               "--config.image_every=4", "--config.log_every=2", "--config.gif_frames=4"]):
    result = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
  return run_dir


@pytest.fixture(scope="session")
def train_tiny_detector():
  """(root, env_id) -> the run directory of a barely trained detector for that game."""
  return _train_tiny_detector
