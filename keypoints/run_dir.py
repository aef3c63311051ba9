"""The run directory: its config, its checkpoints and who may write to it. The one module that
reads or writes them; training binaries, the detector API and evaluation all come through here.

  <run_dir>/config.json      the resolved config, written atomically when the run starts
  <run_dir>/checkpoints/<step>/  Orbax checkpoints (only finite ones are ever written)
  <run_dir>/lock             held (flock) by the process training into the directory
  <run_dir>/unreadable_checkpoints/<step>/  checkpoints that failed to restore, moved aside by a
                             resuming run (kept, never deleted)

Errors are `RunDirError` with one line that says what is wrong and what to do.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import shutil
from typing import Any, Iterable

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from keypoints import configs

CONFIG = "config.json"
CHECKPOINTS = "checkpoints"
LOCK = "lock"
UNREADABLE = "unreadable_checkpoints"

# Config fields that may change when a run is resumed: they decide how long the run goes on
# and how often it reports, not what the model or its data are.
RESUMABLE_FIELDS = ("train.num_steps", "log_every", "image_every", "checkpoint_every",
                    "gif_frames")


class RunDirError(ValueError):
  """A run directory is missing, in use, or holds nothing usable (one-line message)."""


def _config_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(config.to_json_best_effort(sort_keys=True))


def _write_json_atomically(path: pathlib.Path, value: Any) -> None:
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(value, indent=2, sort_keys=True))
  os.replace(tmp, path)


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for k in sorted(set(a) | set(b)):
      out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
    return out
  return [] if a == b else [prefix.rstrip(".")]


def _lookup(tree: dict, dotted: str) -> Any:
  for part in dotted.split("."):
    tree = tree[part]
  return tree


def _added_keys(saved: dict, new: dict, prefix: str = "") -> list[str]:
  """Keys of `new` that `saved` lacks altogether (options added since a run was started)."""
  out = []
  for k, v in new.items():
    if k not in saved:
      out.append(f"{prefix}{k}")
    elif isinstance(v, dict) and isinstance(saved[k], dict):
      out += _added_keys(saved[k], v, f"{prefix}{k}.")
  return out


def read_config(run_dir: str | os.PathLike) -> ml_collections.ConfigDict:
  """The config a run was started with."""
  path = pathlib.Path(run_dir) / CONFIG
  if not path.is_file():
    raise RunDirError(f"{path} is missing: {run_dir} is not a training run")
  try:
    saved = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise RunDirError(f"{path} is corrupt ({e}); restore it from the command that started "
                      "the run") from None
  return configs.complete(ml_collections.ConfigDict(saved))


def prepare(run_dir: str | os.PathLike, config: ml_collections.ConfigDict,
            write: bool = True, resumable: Iterable[str] = RESUMABLE_FIELDS) -> pathlib.Path:
  """Creates the run directory with its config, or checks a restart's config against it.

  A restart may change only the `resumable` fields (by default `RESUMABLE_FIELDS`, e.g. raise
  train.num_steps to extend a run); config.json is then rewritten with the new values.
  Anything else is refused. `write=False` (processes other than 0) checks without writing.
  """
  run_dir = pathlib.Path(run_dir)
  if run_dir.exists() and not run_dir.is_dir():
    raise RunDirError(f"run directory {run_dir} is a file")
  path = run_dir / CONFIG
  resolved = _config_dict(config)
  if path.exists():
    saved = _config_dict(read_config(run_dir))
    changed = _diff_keys(saved, resolved)
    # A field the saved config lacks is an option added since the run started; new options
    # default to what older code did, so it is taken with its value here (and logged).
    added = _added_keys(saved, resolved)
    is_added = lambda k: any(k == a or k.startswith(a + ".") for a in added)
    fixed = [k for k in changed if k not in tuple(resumable) and not is_added(k)]
    if fixed:
      raise RunDirError(f"{run_dir} was started with a different config (differs in: "
                        f"{', '.join(fixed)}); use a new --run_dir or the same config")
    if added:
      logging.warning("%s was started before the options %s existed; resuming with their "
                      "values %s", run_dir, ", ".join(added),
                      ", ".join(str(_lookup(resolved, a)) for a in added))
    if changed and write:
      logging.info("Resuming %s with new %s", run_dir, ", ".join(changed))
      _write_json_atomically(path, resolved)
  elif write:
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json_atomically(path, resolved)
  return run_dir


class Lock:
  """An exclusive lock on a run directory for as long as a process trains into it.

  The kernel drops an flock when its process dies, so a killed run never leaves a stale lock.
  """

  def __init__(self, run_dir: str | os.PathLike):
    self.path = pathlib.Path(run_dir) / LOCK
    self._file = None

  def __enter__(self) -> "Lock":
    self.path.parent.mkdir(parents=True, exist_ok=True)
    f = open(self.path, "a+")
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      owner = f.read().strip() or "unknown"
      f.close()
      raise RunDirError(f"{self.path.parent} is in use by another process (pid {owner}); "
                        "wait for it to finish or stop it first") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    self._file = f
    return self

  def __exit__(self, *exc) -> None:
    if self._file is not None:
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None


def checkpoint_manager(run_dir: str | os.PathLike, max_to_keep: int = 3,
                       create: bool = True) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      (pathlib.Path(run_dir) / CHECKPOINTS).absolute(),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create))


def checkpoint_steps(run_dir: str | os.PathLike) -> list[int]:
  """The steps of the checkpoints in a run directory, sorted (read from the folder names)."""
  folder = pathlib.Path(run_dir) / CHECKPOINTS
  if not folder.is_dir():
    return []
  return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def non_finite_leaves(pytree: Any) -> list[str]:
  """Paths of the floating-point leaves of `pytree` that hold a NaN or an infinity."""
  bad = []
  for path, leaf in jax.tree_util.tree_leaves_with_path(pytree):
    leaf = np.asarray(leaf)
    if np.issubdtype(leaf.dtype, np.floating) and not np.isfinite(leaf).all():
      bad.append(jax.tree_util.keystr(path))
  return bad


class NonFiniteError(FloatingPointError):
  """Training produced a NaN or an infinity."""


def save(manager: ocp.CheckpointManager, step: int, pytree: Any) -> None:
  """Saves a checkpoint; refuses (NonFiniteError) one that holds a NaN or an infinity."""
  bad = non_finite_leaves(pytree)
  if bad:
    raise NonFiniteError(f"not saving step {step}: {bad[0]} holds NaN or infinity "
                         f"({len(bad)} arrays do)")
  manager.save(step, args=ocp.args.StandardSave(pytree))


def _restore_newest(run_dir: pathlib.Path, steps: Iterable[int], restore_one,
                    on_failure=None) -> tuple[int, Any] | tuple[None, None]:
  """Tries the given steps newest first; warns (one line) for each that cannot be read."""
  steps = sorted(steps, reverse=True)
  for i, step in enumerate(steps):
    try:
      return step, restore_one(step)
    except Exception as e:  # pylint: disable=broad-except
      # Orbax and TensorStore raise many types for a truncated or empty checkpoint.
      reason = " ".join(str(e).split())[:160]
      earlier = f"falling back to step {steps[i + 1]}" if i + 1 < len(steps) else "none left"
      logging.warning("checkpoint of step %d in %s cannot be read (%s: %s); %s", step,
                      run_dir / CHECKPOINTS, type(e).__name__, reason, earlier)
      if on_failure is not None:
        on_failure(step)
  return None, None


def restore_train_state(run_dir: str | os.PathLike, abstract_pytree: Any,
                        max_to_keep: int = 3) -> tuple[ocp.CheckpointManager, int | None, Any]:
  """(manager, step, pytree) of the newest readable checkpoint, for a run that goes on.

  `abstract_pytree` gives the shapes and types to restore; None restores the arrays as saved
  (as numpy arrays), for checkpoints whose shapes vary, such as a growing replay buffer.

  Unreadable checkpoints newer than it are moved to unreadable_checkpoints/ (so the run can
  write those steps again), never deleted. (step, pytree) is (None, None) for a new run, and
  when no checkpoint can be read a RunDirError says so.
  """
  run_dir = pathlib.Path(run_dir)
  manager = checkpoint_manager(run_dir, max_to_keep)
  steps = manager.all_steps()
  if not steps:
    return manager, None, None

  def move_aside(step):
    target = run_dir / UNREADABLE / str(step)
    target.parent.mkdir(exist_ok=True)
    if target.exists():
      shutil.rmtree(target)
    shutil.move(str(run_dir / CHECKPOINTS / str(step)), str(target))

  def restore_one(step):
    logging.info("Restoring checkpoint of step %d from %s", step, run_dir / CHECKPOINTS)
    return manager.restore(step, args=ocp.args.StandardRestore(abstract_pytree))

  step, pytree = _restore_newest(run_dir, steps, restore_one, move_aside)
  if step is None:
    raise RunDirError(f"none of the checkpoints in {run_dir / CHECKPOINTS} (steps "
                      f"{', '.join(map(str, sorted(steps)))}) can be read; they were moved to "
                      f"{run_dir / UNREADABLE}; rerun to start again from step 0")
  if step != max(steps):
    manager = checkpoint_manager(run_dir, max_to_keep)  # forget the steps moved aside
  return manager, step, pytree


def restore_params(run_dir: str | os.PathLike, abstract_params: Any,
                   step: int | None = None) -> tuple[int, dict[str, Any]]:
  """(step, {"params", "batch_stats"}) of the newest readable (or the given) checkpoint.

  Reads only the model's variables (no optimizer state, so no optimizer is needed) and never
  changes the run directory. `abstract_params` is {"params": ..., "batch_stats": ...} of
  jax.ShapeDtypeStruct.
  """
  run_dir = pathlib.Path(run_dir)
  if not (run_dir / CHECKPOINTS).is_dir():
    raise RunDirError(f"{run_dir / CHECKPOINTS} holds no checkpoint yet")
  manager = checkpoint_manager(run_dir, create=False)
  steps = manager.all_steps()
  if step is not None and step not in steps:
    raise RunDirError(f"{run_dir / CHECKPOINTS} has no checkpoint of step {step} (it has "
                      f"{', '.join(map(str, steps)) or 'none'})")
  if not steps:
    raise RunDirError(f"{run_dir / CHECKPOINTS} holds no checkpoint yet")
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  restore_args = jax.tree.map(lambda x: ocp.ArrayRestoreArgs(dtype=x.dtype, sharding=device),
                              abstract_params)

  def restore_one(s):
    return manager.restore(s, args=ocp.args.PyTreeRestore(
        item=abstract_params, restore_args=restore_args, partial_restore=True))

  found, variables = _restore_newest(run_dir, [step] if step is not None else steps,
                                     restore_one)
  if found is None:
    raise RunDirError(f"no readable checkpoint in {run_dir / CHECKPOINTS} (tried steps "
                      f"{', '.join(map(str, sorted(steps, reverse=True)))})")
  bad = non_finite_leaves(variables)
  if bad:
    raise RunDirError(f"checkpoint of step {found} in {run_dir} holds NaN or infinity "
                      f"({bad[0]})")
  return found, variables

