"""The run harness shared by every binary: flag errors, metrics, signals, multi-host start-up.

The run directory itself (config.json, checkpoints, restore with fallback, the lock) belongs to
`keypoints.run_dir`; a run directory holds besides:
  metrics.csv            one row per logged step (rows past a resumed checkpoint are dropped)
  events.out.tfevents.*  the same scalars for TensorBoard (purged past a resumed checkpoint)
  images/                keypoint overlays and GIFs
Only process 0 writes metrics and pictures (`make_writer` gives the others a `NullWriter`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib
import signal
import sys
import time
from typing import Callable, Mapping

import jax
import ml_collections
import numpy as np
from absl import app
from absl import flags
from absl import logging


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, but a bad flag or config override is one line, not a traceback."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"error: {' '.join(str(e).split())}")
  except (AttributeError, KeyError, TypeError, ValueError, OSError, SyntaxError) as e:
    # ml_collections' --config=<file> and --config.<field>=<value> raise these while parsing.
    message = " ".join(str(e).replace("\\n", " ").split()).strip("'\"")
    sys.exit(f"error: bad --config or --config.<field> flag: {message}")


def run(main: Callable[[list[str]], None]) -> None:
  """`absl.app.run(main)` with one-line errors for bad flags."""
  app.run(main, flags_parser=_parse_flags)


def initialize_distributed(coordinator_address: str | None, num_processes: int | None,
                           process_id: int | None, auto: bool = False) -> None:
  """Joins a multi-host job (TPU pods, GPU clusters); a no-op for a single process.

  Explicit: the coordinator's address, the number of processes and this one's index. `auto`:
  JAX detects the cluster (TPU pod metadata, SLURM's environment, ...) and gets all three
  from it. Bad or half-given flags end in one `error: ...` line."""
  explicit = coordinator_address or (num_processes or 1) > 1 or process_id is not None
  if auto and explicit:
    sys.exit("error: give either --auto_distributed or --coordinator_address / --num_processes "
             "/ --process_id, not both")
  if explicit and (not coordinator_address or num_processes is None or process_id is None):
    sys.exit("error: multi-host training needs all of --coordinator_address, --num_processes "
             "and --process_id")
  if explicit and not 0 <= process_id < num_processes:
    sys.exit(f"error: --process_id must be in [0, {num_processes}), got {process_id}")
  try:
    if auto:
      jax.distributed.initialize()
    elif explicit:
      jax.distributed.initialize(coordinator_address, num_processes, process_id)
  except (RuntimeError, ValueError) as e:
    sys.exit(f"error: could not join the multi-host job: {' '.join(str(e).split())[:300]}")


def steps_per_dispatch(requested: int, periods: Mapping[str, int],
                       backend: str | None = None) -> int:
  """Training steps per jitted call (`--steps_per_dispatch`): `requested`, or for 0 one on the
  CPU (XLA:CPU runs convolutions inside a loop more than ten times slower than at the top
  level) and, elsewhere, the largest divisor of 50 that divides every period (so that logs,
  pictures and checkpoints fall on whole dispatches). ValueError (one line) for a requested
  count that does not divide a period; `periods` maps each period's flag name to its value."""
  if requested < 0:
    raise ValueError(f"--steps_per_dispatch must be >= 0, got {requested}")
  if requested == 0:
    if (backend or jax.default_backend()) == "cpu":
      return 1
    return max(n for n in range(1, 51) if 50 % n == 0 and all(p % n == 0
                                                              for p in periods.values()))
  for name, period in periods.items():
    if period % requested:
      raise ValueError(f"{name} ({period}) is not a multiple of --steps_per_dispatch "
                       f"({requested})")
  return requested


def validate_cadence(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError (one line) for a logging / picture / checkpoint period that is not > 0."""
  for field in ("log_every", "image_every", "checkpoint_every", "gif_frames"):
    if field in config and int(config[field]) < 1:
      raise ValueError(f"{field} must be >= 1, got {config[field]}")


def start_game_run(config: ml_collections.ConfigDict, run_dir: str, resumable: tuple[str, ...],
                   validate: Callable[[ml_collections.ConfigDict], None], uses_keypoints: bool,
                   body: Callable[..., None]) -> None:
  """How the binaries that play a game (train_agent, explore) start: check the config, the
  cadence and the game; load the keypoint detector when one is used (refusing one trained on
  another game); then lock and prepare `run_dir` and call body(config, run_dir, detector).
  Bad input of any kind ends in one `error: ...` line before the run directory is touched."""
  from keypoints import inference  # pylint: disable=g-import-not-at-top
  from keypoints import run_dir as run_dir_lib  # pylint: disable=g-import-not-at-top
  from rl import actors  # pylint: disable=g-import-not-at-top
  from rl import agents  # pylint: disable=g-import-not-at-top
  try:
    validate(config)
    validate_cadence(config)
    actors.num_actions(config.env_id)  # an unknown game fails here, before the run dir
    detector = None
    if uses_keypoints:
      agents.check_keypoint_run(config.keypoint_run, config.env_id)
      detector = inference.load_detector(config.keypoint_run)
    with run_dir_lib.Lock(run_dir):
      body(config, run_dir_lib.prepare(run_dir, config, resumable=resumable), detector)
  except (ValueError, FileNotFoundError, FloatingPointError) as e:
    sys.exit(f"error: {e}")


def member_seeds(config: ml_collections.ConfigDict, offset: int = 0) -> list[int]:
  """The seeds of a population's members: config.seed + i + offset, i < config.num_seeds."""
  return [config.seed + i + offset for i in range(config.num_seeds)]


class GameLoop:
  """The step loop of the binaries that play a game (train_agent, explore), minus what a step
  does: restore from the newest readable checkpoint, wall time summed over the processes that
  worked on the run, the progress bar, SIGTERM / Ctrl-C, checkpoints every
  `config.checkpoint_every` steps and where the loop stops, closing, and the one-time finish.

    loop = GameLoop(run_dir, config, desc)   # loop.restored: the checkpoint pytree or None
    ... rebuild state from loop.restored ...
    loop.run(advance, state, closables, done_file, finish)
  """

  def __init__(self, run_dir: pathlib.Path, config: ml_collections.ConfigDict, desc: str):
    from keypoints import run_dir as run_dir_lib  # pylint: disable=g-import-not-at-top
    self._run_dir_lib = run_dir_lib
    self.run_dir, self.config, self.desc = run_dir, config, desc
    self.manager, restored_step, self.restored = run_dir_lib.restore_train_state(
        run_dir, None, max_to_keep=2)
    self.step, self._seconds_before = 0, 0.0
    if self.restored is not None:
      self.step = int(self.restored["step"])
      self._seconds_before = float(self.restored.get("train_seconds", 0.0))
      if self.step != restored_step:
        raise run_dir_lib.RunDirError(
            f"checkpoint {restored_step} in {run_dir} holds step {self.step}")
    self.writer = make_writer(run_dir, restored_step)
    self.bar = None
    self._process_start = time.perf_counter()

  def seconds(self) -> float:
    """Wall time spent on this run, over every process that worked on it."""
    return self._seconds_before + time.perf_counter() - self._process_start

  def run(self, advance: Callable[[int], None], state: Callable[[], dict],
          closables: tuple, done_file: str, finish: Callable[[], None]) -> None:
    """Calls advance(t) for t = step, step + 1, ... (t steps already made; the loop counts
    t + 1 once it returns) up to config.num_steps or a stop request. state() is the checkpoint
    pytree (it must hold "step" and "train_seconds"). On the way out the checkpoints are
    waited for and the writer and `closables` closed; once num_steps is reached, finish() is
    called unless run_dir/done_file exists."""
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    config, save = self.config, self._run_dir_lib.save
    first_step = saved_step = self.step
    try:
      with StopRequest() as stop, tqdm(total=config.num_steps, initial=self.step,
                                       desc=self.desc, unit="step") as self.bar:
        while self.step < config.num_steps and not stop.requested:
          advance(self.step)
          self.step += 1
          self.bar.update(1)
          if self.step % config.checkpoint_every == 0:
            save(self.manager, self.step, state())
            saved_step = self.step
        if saved_step != self.step:
          save(self.manager, self.step, state())
    finally:
      self.manager.wait_until_finished()
      self.writer.close()
      for closable in closables:
        closable.close()
    logging.info("Stopped at step %d after %d steps in this process; run directory %s",
                 self.step, self.step - first_step, self.run_dir)
    if self.step >= config.num_steps and not (self.run_dir / done_file).exists():
      finish()


def rng_state(rngs: list[np.random.Generator]) -> np.ndarray:
  """numpy Generators' states as one uint8 array, to checkpoint with a run."""
  return np.frombuffer(json.dumps([r.bit_generator.state for r in rngs]).encode(), np.uint8)


def load_rng_state(rngs: list[np.random.Generator], blob: np.ndarray) -> None:
  """Puts the states of `rng_state` back into the same number of Generators."""
  for rng, state in zip(rngs, json.loads(np.asarray(blob, np.uint8).tobytes().decode())):
    rng.bit_generator.state = state


class NullWriter:
  """Writes nothing (processes other than 0)."""

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    del step, scalars

  def close(self) -> None:
    pass


class MetricWriter:
  """Appends scalars to metrics.csv and to TensorBoard event files.

  `resume_step`: the step a resumed run restarts from; rows of later steps (logged before the
  run was stopped, and about to be logged again) are dropped from metrics.csv and purged from
  TensorBoard, so each step appears once.
  """

  def __init__(self, run_dir: pathlib.Path, resume_step: int | None = None):
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._csv_path = run_dir / "metrics.csv"
    self._fields: list[str] | None = None
    if self._csv_path.exists():
      with open(self._csv_path, newline="") as f:
        rows = list(csv.reader(f))
      self._fields = rows[0] if rows else None
      if rows:
        keep = [rows[0]] + [r for r in rows[1:] if r and int(float(r[0])) <= (resume_step or 0)]
        if len(keep) != len(rows):
          tmp = self._csv_path.with_name("metrics.csv.tmp")
          with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(keep)
          os.replace(tmp, self._csv_path)
    purge = None if resume_step is None else resume_step + 1
    self._tb = SummaryWriter(str(run_dir), purge_step=purge)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    row = {"step": step, **{k: float(v) for k, v in scalars.items()}}
    if self._fields is None:
      self._fields = list(row)
      with open(self._csv_path, "w", newline="") as f:
        csv.writer(f).writerow(self._fields)
    with open(self._csv_path, "a", newline="") as f:
      csv.writer(f).writerow([row.get(k, "") for k in self._fields])
    for k, v in scalars.items():
      if math.isfinite(float(v)):  # NaN marks "nothing this time" (e.g. no evaluation)
        self._tb.add_scalar(k, float(v), step)
    self._tb.flush()

  def close(self) -> None:
    self._tb.close()


def make_writer(run_dir: pathlib.Path,
                resume_step: int | None = None) -> MetricWriter | NullWriter:
  return MetricWriter(run_dir, resume_step) if jax.process_index() == 0 else NullWriter()


class StopRequest:
  """Turns SIGTERM and Ctrl-C into a flag that the training loop polls, so it can checkpoint."""

  def __init__(self):
    self.requested = False
    self._previous = {}

  def __enter__(self) -> "StopRequest":
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame) -> None:
    del frame
    logging.warning("Received signal %d: saving a checkpoint and stopping.", signum)
    self.requested = True

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
