"""Hyperparameter sweeps: expand a grid (or a random set) over flags into runs, and start them
here, on a TPU VM pod or on a SLURM cluster.

  python -m launch.sweep --binary=experiments.train_transporter --run_root=runs/sweep_k \
      --flags=--config=experiments/configs/pong.py \
      --grid=config.model.num_keypoints=4,6 --grid=config.model.gauss_std=0.1,0.15

runs the 4 points of the cartesian product one after another on this machine (`--parallel`
for several at once; `--random=N` draws N of the points instead of all), each as
`python -m <binary> <flags> --<flag>=<value> ... --<dir_flag>=<run_root>/<point>`, where
<point> names the values (`num_keypoints=4,gauss_std=0.1`). Each point's output is appended to
`<run_root>/<point>.log` (a rerun keeps the earlier log); `<run_root>/sweep.json` records the
points, commands and exit codes. Rerunning the same sweep (here or on a pod) skips the points
that finished (exit code 0, same command; `--rerun_finished` runs them again) and reruns the
others, which the training binaries resume from their own checkpoints, so an interrupted sweep
continues where it was. `--dry_run` prints the commands only.

Elsewhere (`--target`; each run joins its hosts with the binary's `--auto_distributed`):
  tpu     one `gcloud compute tpus tpu-vm ssh <--tpu> --zone=<--zone> --worker=all
          --command=...` per point, run one after another (a pod trains one run at a time);
          the repository must sit at `--remote_dir` on every worker.
  slurm   one sbatch script per point, `<run_root>/<point>.sbatch` (`--nodes` nodes,
          `--gpus_per_node` GPUs, one task per node), submitted with `sbatch`.
`python -m launch.aggregate --run_root=<run_root>` tabulates and plots finished runs.
"""

from __future__ import annotations

import itertools
import json
import pathlib
import shlex
import shutil
import subprocess
import sys
import time

from absl import app
from absl import flags
import numpy as np
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
_RANDOM = flags.DEFINE_integer("random", 0, "Run N points drawn at random (without "
                               "replacement, --random_seed) from the grid instead of all of it; "
                               "0: the whole grid.", lower_bound=0)
_RANDOM_SEED = flags.DEFINE_integer("random_seed", 0, "Seed of --random's draw.")
_RERUN_FINISHED = flags.DEFINE_bool("rerun_finished", False, "Also rerun points that finished "
                                    "(exit code 0) in an earlier run of the same sweep.")
_TARGET = flags.DEFINE_enum("target", "local", ["local", "tpu", "slurm"],
                            "Where the runs go: this machine, a TPU VM pod, a SLURM cluster.")
_TPU = flags.DEFINE_string("tpu", None, "--target=tpu: the TPU VM's name.")
_ZONE = flags.DEFINE_string("zone", None, "--target=tpu: its zone.")
_REMOTE_DIR = flags.DEFINE_string("remote_dir", "~/keypoints", "--target=tpu / slurm: the "
                                  "repository on the workers (run directories are relative to "
                                  "it unless --run_root is absolute).")
_DISTRIBUTED_FLAG = flags.DEFINE_string(
    "distributed_flag", "auto_distributed", "--target=tpu / slurm: the binary's flag that "
    "makes it join the job's other hosts (train_transporter's --auto_distributed); empty for "
    "a binary that runs on one host.")
_NODES = flags.DEFINE_integer("nodes", 1, "--target=slurm: nodes per run.", lower_bound=1)
_GPUS_PER_NODE = flags.DEFINE_integer("gpus_per_node", 8, "--target=slurm: GPUs per node.",
                                      lower_bound=0)
_TIME = flags.DEFINE_string("time", "24:00:00", "--target=slurm: each run's time limit.")
_PARTITION = flags.DEFINE_string("partition", None, "--target=slurm: the partition (default: "
                                 "the cluster's).")


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


def draw(points: list[dict[str, str]], n: int, seed: int) -> list[dict[str, str]]:
  """n of the points at random (without replacement, in grid order); all for n = 0 or more."""
  if n == 0 or n >= len(points):
    return points
  chosen = np.random.default_rng(seed).choice(len(points), n, replace=False)
  return [points[i] for i in sorted(chosen)]


def finished(root: pathlib.Path, commands: dict[str, list[str]]) -> set[str]:
  """Points that an earlier run of this sweep (root/sweep.json) finished with the same command."""
  path = root / "sweep.json"
  if not path.is_file():
    return set()
  done = {r["name"]: r["command"] for r in json.loads(path.read_text()) if r["exit_code"] == 0}
  # The interpreter may differ between machines; the module and flags must not.
  return {name for name, cmd in commands.items() if name in done and done[name][1:] == cmd[1:]}


def remote_command(cmd: list[str], remote_dir: str, distributed_flag: str) -> str:
  """The shell line a worker runs, from the repository: python (the worker's own) -m <binary>
  ... --<distributed_flag>."""
  extra = [f"--{distributed_flag}"] if distributed_flag else []
  return f"cd {remote_dir} && " + shlex.join(["python", *cmd[1:], *extra])


def tpu_command(cmd: list[str], tpu: str, zone: str, remote_dir: str,
                distributed_flag: str = "auto_distributed") -> list[str]:
  """Starts `cmd` on every worker of a TPU VM pod (JAX finds the pod's hosts by itself)."""
  return ["gcloud", "compute", "tpus", "tpu-vm", "ssh", tpu, f"--zone={zone}", "--worker=all",
          f"--command={remote_command(cmd, remote_dir, distributed_flag)}"]


def sbatch_script(name: str, cmd: list[str], log: pathlib.Path, remote_dir: str, nodes: int,
                  gpus_per_node: int, time_limit: str, partition: str | None,
                  distributed_flag: str = "auto_distributed") -> str:
  """A SLURM batch script for one run: one task per node, each seeing the node's GPUs; srun
  starts them and JAX reads the job's layout from SLURM's environment."""
  lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --nodes={nodes}",
           "#SBATCH --ntasks-per-node=1", f"#SBATCH --time={time_limit}",
           f"#SBATCH --output={log}", "#SBATCH --open-mode=append"]
  if gpus_per_node:
    lines.append(f"#SBATCH --gpus-per-node={gpus_per_node}")
  if partition:
    lines.append(f"#SBATCH --partition={partition}")
  lines += ["set -euo pipefail",
            f"srun bash -c {shlex.quote(remote_command(cmd, remote_dir, distributed_flag))}"]
  return "\n".join(lines) + "\n"


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
  if _TARGET.value == "tpu" and not (_TPU.value and _ZONE.value):
    raise app.UsageError("--target=tpu needs --tpu and --zone")
  try:
    points = draw(expand(parse_grid(_GRID.value)), _RANDOM.value, _RANDOM_SEED.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  root = pathlib.Path(_RUN_ROOT.value)
  commands = {point_name(p): command(_BINARY.value, _FLAGS.value, p, _DIR_FLAG.value,
                                     root / point_name(p)) for p in points}
  if _TARGET.value == "tpu":
    commands = {name: tpu_command(cmd, _TPU.value, _ZONE.value, _REMOTE_DIR.value,
                                  _DISTRIBUTED_FLAG.value) for name, cmd in commands.items()}
  elif _TARGET.value == "slurm":
    scripts = {name: sbatch_script(name, cmd, root / f"{name}.log", _REMOTE_DIR.value,
                                   _NODES.value, _GPUS_PER_NODE.value, _TIME.value,
                                   _PARTITION.value, _DISTRIBUTED_FLAG.value)
               for name, cmd in commands.items()}
    commands = {name: ["sbatch", str(root / f"{name}.sbatch")] for name in commands}
  # sbatch's exit code says a job was queued, not that it finished: SLURM reruns are the user's.
  skip = (set() if _RERUN_FINISHED.value or _TARGET.value == "slurm"
          else finished(root, commands))
  if _DRY_RUN.value:
    for name, cmd in commands.items():
      if _TARGET.value == "slurm":
        print(f"# {root / name}.sbatch\n{scripts[name]}")
      print(("# finished: " if name in skip else "") + shlex.join(cmd))
    return
  tool = next(iter(commands.values()))[0]  # gcloud or sbatch
  if _TARGET.value != "local" and shutil.which(tool) is None:
    sys.exit(f"error: {tool} is not on this machine's PATH (--dry_run prints the commands)")
  root.mkdir(parents=True, exist_ok=True)
  if _TARGET.value == "slurm":
    for name, script in scripts.items():
      (root / f"{name}.sbatch").write_text(script)
  for name in skip:
    print(f"{name}: finished earlier, skipped (--rerun_finished runs it again)")
  codes = run({n: c for n, c in commands.items() if n not in skip}, root,
              1 if _TARGET.value == "tpu" else _PARALLEL.value)
  codes.update({name: 0 for name in skip})
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
