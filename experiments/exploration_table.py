"""Finished exploration runs side by side: a Markdown table of coverage and a plot of coverage
against agent steps (keypoint explorer vs random, per game).

  python -m experiments.exploration_table --runs_root=runs/explore --out=docs/exploration

Reads each run's explore.json and metrics.csv (`experiments.explore`); writes <out>.md and
<out>.png. Counts are means over the run's seeds, with the range over seeds in brackets.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
from absl import app
from absl import flags

from keypoints import visualize
from rl import exploration

_RUNS = flags.DEFINE_list("runs", None, "Exploration run directories.")
_RUNS_ROOT = flags.DEFINE_string("runs_root", None, "Instead of --runs: every finished run "
                                 "below this folder.")
_OUT = flags.DEFINE_string("out", "docs/exploration", "Output path without suffix (.md, .png).")

COUNTS = ("positions", "rooms", "cells")


def collect(run_dirs: list[pathlib.Path]) -> list[dict]:
  """explore.json of each finished run, with its directory and metrics.csv rows."""
  runs = []
  for run_dir in run_dirs:
    path = run_dir / exploration.SUMMARY
    if not path.is_file():
      raise ValueError(f"{run_dir} has no {exploration.SUMMARY}: not a finished exploration run")
    summary = json.loads(path.read_text())
    summary["run_dir"] = str(run_dir)
    summary["curves"] = np.atleast_1d(np.genfromtxt(run_dir / "metrics.csv", delimiter=",",
                                                    names=True))
    runs.append(summary)
  return sorted(runs, key=lambda r: (r["env_id"], r["explorer"], r["run_dir"]))


def _cell(values) -> str:
  if values is None:
    return "-"
  values = np.asarray(values, np.float64)
  if len(values) == 1:
    return f"{values[0]:.0f}"
  return f"{values.mean():.1f} ({values.min():.0f}-{values.max():.0f})"


def markdown(runs: list[dict]) -> str:
  lines = ["| game | explorer | seeds | agent steps | player positions | rooms | cells | "
           "reward found | hours |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
  for r in runs:
    game = r["env_id"].removeprefix("ALE/").removesuffix("-v5")
    lines.append(f"| {game} | {r['explorer']} | {len(r['seeds'])} | {r['step']:,} | "
                 f"{_cell(r.get('positions'))} | {_cell(r.get('rooms'))} | "
                 f"{_cell(r.get('cells'))} | {_cell(r['reward_found'])} | {r['hours']:.2f} |")
  return "\n".join(lines) + "\n"


def plot(runs: list[dict], path: pathlib.Path) -> None:
  """One panel per (game, count), a line per run."""
  plt = visualize.pyplot()
  panels = [(game, count) for game in sorted({r["env_id"] for r in runs}) for count in COUNTS
            if any(r["env_id"] == game and count in r for r in runs)]
  fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
  for ax, (game, count) in zip(axes[0], panels):
    for r in runs:
      if r["env_id"] == game and count in r["curves"].dtype.names:
        ax.plot(r["curves"]["step"], r["curves"][count], label=r["explorer"])
    ax.set_title(game.removeprefix("ALE/"), fontsize=9)
    ax.set_xlabel("agent steps (per seed)")
    ax.set_ylabel(f"distinct {count}")
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    if bool(_RUNS.value) == bool(_RUNS_ROOT.value):
      raise ValueError("pass exactly one of --runs and --runs_root")
    if _RUNS.value:
      run_dirs = [pathlib.Path(r) for r in _RUNS.value]
    else:
      run_dirs = sorted(p.parent for p in pathlib.Path(_RUNS_ROOT.value).glob(
          f"**/{exploration.SUMMARY}"))
      if not run_dirs:
        raise ValueError(f"no finished exploration run below {_RUNS_ROOT.value}")
    runs = collect(run_dirs)
  except ValueError as e:
    sys.exit(f"error: {e}")
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  table = markdown(runs)
  out.with_suffix(".md").write_text(table)
  plot(runs, out.with_suffix(".png"))
  print(table, end="")


if __name__ == "__main__":
  app.run(main)
