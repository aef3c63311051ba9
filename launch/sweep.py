"""Hyperparameter sweeps: expand a grid over flags and run one process per grid point.

  python -m launch.sweep --binary=experiments.train_transporter --run_root=runs/sweep_k \
      --flags=--config=experiments/configs/pong.py \
      --grid=config.model.num_keypoints=4,6 --grid=config.model.gauss_std=0.1,0.15

runs the 4 points of the cartesian product one after another on this machine (`--parallel`
for several at once), each as `python -m <binary> <flags> --<flag>=<value> ...
--<dir_flag>=<run_root>/<point>`, where <point> names the values (`num_keypoints=4,gauss_std=0.1`).
Each point's output is appended to `<run_root>/<point>.log` (a rerun keeps the earlier
log); `<run_root>/sweep.json` records the
points, commands and exit codes. Rerunning the same sweep reruns every point, and the training
binary resumes each from its own checkpoints, so an interrupted sweep continues where it was.
`--dry_run` prints the commands only.
"""

from __future__ import annotations

import itertools
import json
import pathlib
import subprocess
import sys
import time

from absl import app
from absl import flags
from tqdm import tqdm

_BINARY = flags.DEFINE_string("binary", "experiments.train_transporter",
                              "Python module to run for every grid point (python -m BINARY).")
_RUN_ROOT = flags.DEFINE_string("run_root", None, "Folder that receives one run per point.")
_GRID = flags.DEFINE_multi_string(
    "grid", [], "One axis of the grid: FLAG=V1,V2,... (repeat for more axes; the flag without "
    "its leading dashes, e.g. config.train.learning_rate=1e-3,2e-3).")
_FLAGS = flags.DEFINE_multi_string("flags", [], "A flag passed unchanged to every point, e.g. "
                                   "--flags=--config=experiments/configs/pong.py (repeatable).")
_DIR_FLAG = flags.DEFINE_string("dir_flag", "run_dir",
                                "The binary's flag that receives each point's own folder.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Points run at the same time.", lower_bound=1)
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands and run nothing.")


def parse_grid(specs: list[str]) -> dict[str, list[str]]:
  """["a=1,2", "b=x"] -> {"a": ["1", "2"], "b": ["x"]}; ValueError (one line) on a bad spec."""
  grid = {}
  for spec in specs:
    name, sep, values = spec.partition("=")
    name = name.strip().lstrip("-")
    items = [v.strip() for v in values.split(",")]
    if not sep or not name or not all(items):
      raise ValueError(f"bad --grid {spec!r}: expected FLAG=V1,V2,... with no empty value")
    if name in grid:
      raise ValueError(f"--grid names {name!r} twice")
    grid[name] = items
  return grid


def expand(grid: dict[str, list[str]]) -> list[dict[str, str]]:
  """The cartesian product, the last axis varying fastest; one empty point for no axes."""
  names = list(grid)
  return [dict(zip(names, values)) for values in itertools.product(*grid.values())]


def short_names(flag_names: list[str]) -> dict[str, str]:
  """Each flag's shortest dotted suffix that no other flag of the grid ends with
  (config.model.seed and config.train.seed -> model.seed and train.seed; lone seed -> seed)."""
  out = {}
  for flag in flag_names:
    parts = flag.split(".")
    for k in range(1, len(parts) + 1):
      suffix = ".".join(parts[-k:])
      if not any(other != flag and (other == suffix or other.endswith("." + suffix))
                 for other in flag_names):
        break
    out[flag] = suffix
  return out


def point_name(point: dict[str, str]) -> str:
  """A folder name for a point: each flag's short name (`short_names`) and its value."""
  if not point:
    return "run"
  names = short_names(list(point))
  name = ",".join(f"{names[flag]}={value}" for flag, value in point.items())
  return name.replace("/", "_").replace(" ", "_")


def command(binary: str, base_flags: list[str], point: dict[str, str], dir_flag: str,
            run_dir: pathlib.Path) -> list[str]:
  return ([sys.executable, "-m", binary, *base_flags] +
          [f"--{flag}={value}" for flag, value in point.items()] + [f"--{dir_flag}={run_dir}"])


def run(commands: dict[str, list[str]], root: pathlib.Path, parallel: int) -> dict[str, int]:
  """Runs the commands (at most `parallel` at once), each logging to root/<name>.log."""
  pending, running, codes = list(commands.items()), {}, {}
  with tqdm(total=len(commands), desc="sweep", unit="run") as bar:
    while pending or running:
      while pending and len(running) < parallel:
        name, cmd = pending.pop(0)
        # Appended to, so the log of an earlier (interrupted) attempt is kept.
        log = open(root / f"{name}.log", "a")  # pylint: disable=consider-using-with
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
        log.flush()
        running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
      for name, (proc, log) in list(running.items()):
        if proc.poll() is not None:
          log.close()
          codes[name] = proc.returncode
          del running[name]
          bar.update(1)
          bar.set_postfix(failed=sum(c != 0 for c in codes.values()))
      time.sleep(0.2)
  return codes


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _RUN_ROOT.value:
    raise app.UsageError("--run_root is required")
  try:
    points = expand(parse_grid(_GRID.value))
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  root = pathlib.Path(_RUN_ROOT.value)
  commands = {point_name(p): command(_BINARY.value, _FLAGS.value, p, _DIR_FLAG.value,
                                     root / point_name(p)) for p in points}
  if _DRY_RUN.value:
    for cmd in commands.values():
      print(" ".join(cmd))
    return
  root.mkdir(parents=True, exist_ok=True)
  codes = run(commands, root, _PARALLEL.value)
  record = [{"name": name, "point": p, "command": commands[name], "exit_code": codes[name]}
            for name, p in zip(commands, points)]
  (root / "sweep.json").write_text(json.dumps(record, indent=2))
  for r in record:
    failed = f"FAILED ({r['exit_code']}), see {root / r['name']}.log"
    print(f"{r['name']}: {'ok' if r['exit_code'] == 0 else failed}")
  if any(r["exit_code"] != 0 for r in record):
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
