"""The run harness shared by every binary: run directory, config, metrics, checkpoints, signals.

A run directory holds everything about a run:
  config.json         the resolved config (written once; a restart must use the same config)
  metrics.csv         one row per logged step
  events.out.tfevents.*  the same scalars for TensorBoard
  checkpoints/<step>/ Orbax checkpoints of the whole training state
  images/             keypoint overlays and GIFs
Restarting a binary with the same run directory resumes from the latest checkpoint. Only
process 0 writes metrics and pictures (`make_writer` gives the others a `NullWriter`).
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import signal
from typing import Any, Mapping

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging


def initialize_distributed(coordinator_address: str | None, num_processes: int | None,
                           process_id: int | None) -> None:
  """Joins a multi-host job (TPU pods, GPU clusters); a no-op for a single process."""
  if coordinator_address or (num_processes or 1) > 1:
    jax.distributed.initialize(coordinator_address, num_processes, process_id)


def prepare_run_dir(run_dir: str | os.PathLike, config: ml_collections.ConfigDict) -> pathlib.Path:
  """Creates the run directory and saves the config; on restart checks the config matches."""
  run_dir = pathlib.Path(run_dir)
  path = run_dir / "config.json"
  resolved = json.loads(config.to_json_best_effort(sort_keys=True))
  if path.exists():
    saved = json.loads(path.read_text())
    if saved != resolved:
      changed = sorted(_diff_keys(saved, resolved))
      raise ValueError(f"{run_dir} was started with a different config (differs in: "
                       f"{', '.join(changed)}); use a new --run_dir or the same config")
  elif jax.process_index() == 0:
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(resolved, indent=2, sort_keys=True))
  return run_dir


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for k in set(a) | set(b):
      out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
    return out
  return [] if a == b else [prefix.rstrip(".")]


class NullWriter:
  """Writes nothing (processes other than 0)."""

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    del step, scalars

  def close(self) -> None:
    pass


class MetricWriter:
  """Appends scalars to metrics.csv and to TensorBoard event files."""

  def __init__(self, run_dir: pathlib.Path):
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._csv_path = run_dir / "metrics.csv"
    self._fields: list[str] | None = None
    if self._csv_path.exists():
      with open(self._csv_path) as f:
        self._fields = next(csv.reader(f), None)
    self._tb = SummaryWriter(str(run_dir))

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    row = {"step": step, **{k: float(v) for k, v in scalars.items()}}
    if self._fields is None:
      self._fields = list(row)
      with open(self._csv_path, "w", newline="") as f:
        csv.writer(f).writerow(self._fields)
    with open(self._csv_path, "a", newline="") as f:
      csv.writer(f).writerow([row.get(k, "") for k in self._fields])
    for k, v in scalars.items():
      self._tb.add_scalar(k, float(v), step)
    self._tb.flush()

  def close(self) -> None:
    self._tb.close()


def make_writer(run_dir: pathlib.Path) -> MetricWriter | NullWriter:
  return MetricWriter(run_dir) if jax.process_index() == 0 else NullWriter()


def make_checkpoint_manager(run_dir: pathlib.Path, max_to_keep: int = 3) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      (run_dir / "checkpoints").absolute(),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))


def save_checkpoint(manager: ocp.CheckpointManager, step: int, pytree: Any) -> None:
  manager.save(step, args=ocp.args.StandardSave(pytree))


def restore_latest(manager: ocp.CheckpointManager, abstract_pytree: Any) -> tuple[int | None, Any]:
  """(step, pytree) of the latest complete checkpoint, or (None, None) if there is none."""
  step = manager.latest_step()
  if step is None:
    return None, None
  logging.info("Restoring checkpoint of step %d from %s", step, manager.directory)
  return step, manager.restore(step, args=ocp.args.StandardRestore(abstract_pytree))


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
