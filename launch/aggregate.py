"""One table and one plot of a sweep's runs: the last logged value of each metric per run.

  python -m launch.aggregate --run_root=runs/sweep_k                    # every metric
  python -m launch.aggregate --run_root=runs/pong_seeds --metrics=loss,heldout_loss --over=seed

The runs are the points of `<run_root>/sweep.json` (written by `launch.sweep`), or else every
folder of run_root holding a metrics.csv. Each run's row has its point's values, the last
logged step and the metrics' values there; `--over=<flag>` (e.g. seed) also folds the runs that
differ only in that flag into mean (std) rows. Prints the table as Markdown and writes
`<run_root>/aggregate.md`, `aggregate.json` and `aggregate.png` (`--plot` against the step, one
curve per run). Runs without a metrics.csv yet are listed as not started.
"""

from __future__ import annotations

import csv
import json
import math
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

_RUN_ROOT = flags.DEFINE_string("run_root", None, "The sweep's folder (launch.sweep's "
                                "--run_root).", required=True)
_METRICS = flags.DEFINE_list("metrics", [], "Columns of metrics.csv to tabulate (default: all).")
_OVER = flags.DEFINE_string("over", None, "A grid flag (its last name, e.g. seed) to average "
                            "over: runs differing only in it become one mean (std) row.")
_PLOT = flags.DEFINE_string("plot", None, "The metric plotted against the step (default: loss, "
                            "else the first metric).")


def read_metrics(run_dir: pathlib.Path) -> dict[str, list[float]] | None:
  """metrics.csv as columns of floats (empty cells NaN), or None where there is none yet."""
  path = run_dir / "metrics.csv"
  if not path.is_file():
    return None
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  if not rows:
    return None
  return {name: [float(r[name]) if r.get(name) not in (None, "") else math.nan for r in rows]
          for name in rows[0]}


def find_runs(root: pathlib.Path) -> list[tuple[str, dict[str, str]]]:
  """(name, point) of every run: sweep.json's points, or folders holding a metrics.csv."""
  record = root / "sweep.json"
  if record.is_file():
    return [(r["name"], r["point"]) for r in json.loads(record.read_text())]
  return [(p.name, {}) for p in sorted(root.iterdir()) if (p / "metrics.csv").is_file()]


def _last_finite(values: list[float]) -> float:
  finite = [v for v in values if not math.isnan(v)]
  return finite[-1] if finite else math.nan


def aggregate(root: pathlib.Path, metrics: list[str], over: str | None) -> dict:
  """{"runs": [{name, point, step, values}], "groups": [...], "not_started": [...], "metrics"}."""
  runs, not_started, names = [], [], list(metrics)
  for name, point in find_runs(root):
    columns = read_metrics(root / name)
    if columns is None:
      not_started.append(name)
      continue
    if not metrics:
      names += [c for c in columns if c != "step" and c not in names]
    runs.append({"name": name, "point": point, "step": int(columns["step"][-1]),
                 "values": {m: _last_finite(columns[m]) for m in columns if m != "step"},
                 "curves": columns})
  missing = [m for m in names if runs and all(m not in r["values"] for r in runs)]
  if missing:
    raise ValueError(f"no run of {root} logs {', '.join(missing)}")
  groups = []
  if over:
    by_rest = {}
    for r in runs:
      keys = [k for k in r["point"] if k == over or k.endswith("." + over)]
      if not keys:
        raise ValueError(f"--over={over} names no flag of the sweep's points")
      rest = tuple(sorted((k, v) for k, v in r["point"].items() if k not in keys))
      by_rest.setdefault(rest, []).append(r)
    for rest, members in by_rest.items():
      stats = {}
      for m in names:
        vals = [r["values"][m] for r in members if not math.isnan(r["values"].get(m, math.nan))]
        mean = sum(vals) / len(vals) if vals else math.nan
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals)) if vals else math.nan
        stats[m] = {"mean": mean, "std": std}
      groups.append({"point": dict(rest), "runs": [r["name"] for r in members], "values": stats})
  return {"metrics": names, "runs": runs, "groups": groups, "not_started": not_started}


def _cell(v: float) -> str:
  return "" if math.isnan(v) else f"{v:.4g}"


def markdown(summary: dict, over: str | None) -> str:
  names = summary["metrics"]
  lines = ["| run | step | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
  for r in summary["runs"]:
    lines.append(f"| {r['name']} | {r['step']} | " +
                 " | ".join(_cell(r["values"].get(m, math.nan)) for m in names) + " |")
  if summary["groups"]:
    lines += ["", f"| mean (std) over {over} | runs | " + " | ".join(names) + " |",
              "|---|---:|" + "---:|" * len(names)]
    for g in summary["groups"]:
      label = ",".join(f"{k}={v}" for k, v in g["point"].items()) or "all"
      lines.append(f"| {label} | {len(g['runs'])} | " + " | ".join(
          f"{_cell(g['values'][m]['mean'])} ({_cell(g['values'][m]['std'])})" for m in names)
                   + " |")
  if summary["not_started"]:
    lines += ["", "Not started (no metrics.csv yet): " + ", ".join(summary["not_started"])]
  return "\n".join(lines)


def plot(summary: dict, metric: str, path: pathlib.Path) -> None:
  fig, ax = plt.subplots(figsize=(7, 4))
  for r in summary["runs"]:
    if metric in r["curves"]:
      ax.plot(r["curves"]["step"], r["curves"][metric], label=r["name"])
  ax.set_xlabel("step")
  ax.set_ylabel(metric)
  if all(v > 0 for r in summary["runs"] for v in r["curves"].get(metric, [])
         if not math.isnan(v)):
    ax.set_yscale("log")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  root = pathlib.Path(_RUN_ROOT.value)
  try:
    if not root.is_dir():
      raise ValueError(f"{root} is not a folder")
    summary = aggregate(root, _METRICS.value, _OVER.value)
    if not summary["runs"]:
      raise ValueError(f"{root} holds no run with a metrics.csv yet")
  except ValueError as e:
    sys.exit(f"error: {e}")
  table = markdown(summary, _OVER.value)
  print(table)
  (root / "aggregate.md").write_text(table + "\n")
  metric = _PLOT.value or ("loss" if "loss" in summary["metrics"] else summary["metrics"][0])
  plot(summary, metric, root / "aggregate.png")
  for r in summary["runs"]:
    del r["curves"]
  (root / "aggregate.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
  app.run(main)
