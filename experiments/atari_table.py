"""Finished agent runs -> the Atari-100k table: our KeyQN and pixel DQN beside published scores.

  python -m experiments.atari_table --runs_root=runs/agents --keep=docs/agents --out=docs/atari100k

Every run directory under --runs_root (or given by --runs) that holds final_eval.json counts;
the seeds of all runs of one (game, agent) are pooled. `--keep` copies each finished run's
small result files (config.json, final_eval.json, metrics.csv, the learning curve) into
<keep>/<run name>/ and counts the runs kept there before, so results outlive their run
directories (a run kept and still present counts once). Writes <out>.md (raw scores: mean (std
over seeds), seeds, training hours; the same human-normalised) and <out>.png (a bar plot of
human-normalised scores). Beside every KeyQN row stands its detector's per-object recall on
held-out frames (a keypoint within --threshold raw pixels), so that a bad detector is never
mistaken for a bad agent.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import sys

import numpy as np
from absl import app
from absl import flags

from experiments import harness
from keypoints import evaluation
from keypoints import run_dir as run_dir_lib
from keypoints import visualize

_RUNS = flags.DEFINE_list("runs", [], "Agent run directories.")
_RUNS_ROOT = flags.DEFINE_string("runs_root", None,
                                 "A folder whose sub-folders are agent run directories.")
_OUT = flags.DEFINE_string("out", "atari100k", "Output path without extension (.md and .png).")
_KEEP = flags.DEFINE_string("keep", None, "A folder (e.g. docs/agents) that keeps the result "
                            "files of finished runs; its runs count too.")
_THRESHOLD = flags.DEFINE_float("threshold", 8.0, "Detector recall: a keypoint within this "
                                "many raw pixels of an object counts.")

# Kulkarni et al. 2019, Table 1 (100k agent steps; mean (std)); random and human as the
# Atari-100k literature gives them (the source table's random Seaquest score, -20.7, is Pong's).
PUBLISHED = {
    "breakout": {"KeyQN": (19.3, 4.5), "SimPLe": (12.7, 3.8), "Rainbow": (3.3, 0.1),
                 "PPO": (5.9, 3.3), "Human": 31.8, "Random": 1.7},
    "frostbite": {"KeyQN": (388.3, 142.1), "SimPLe": (254.7, 4.9), "Rainbow": (140.1, 2.7),
                  "PPO": (174.0, 40.7), "Human": 4334.7, "Random": 65.2},
    "ms_pacman": {"KeyQN": (999.4, 145.4), "SimPLe": (762.8, 331.5), "Rainbow": (364.3, 20.4),
                  "PPO": (496.0, 379.8), "Human": 15693.0, "Random": 307.3},
    "pong": {"KeyQN": (10.8, 5.7), "SimPLe": (5.2, 9.7), "Rainbow": (-19.5, 0.2),
             "PPO": (-20.5, 0.6), "Human": 9.3, "Random": -20.7},
    "seaquest": {"KeyQN": (236.7, 22.2), "SimPLe": (370.9, 128.2), "Rainbow": (206.3, 17.1),
                 "PPO": (370.0, 103.3), "Human": 20182.0, "Random": 68.4},
}
GAMES = {"ALE/Breakout-v5": "breakout", "ALE/Frostbite-v5": "frostbite",
         "ALE/MsPacman-v5": "ms_pacman", "ALE/Pong-v5": "pong", "ALE/Seaquest-v5": "seaquest"}
AGENT_NAMES = {"keyqn": "KeyQN (ours)", "pixel_dqn": "pixel DQN (ours)",
               "keyqn_ram": "KeyQN on RAM objects (ours, oracle)"}


def human_normalised(score: float, game: str) -> float:
  ref = PUBLISHED[game]
  return (score - ref["Random"]) / (ref["Human"] - ref["Random"])


def collect(run_dirs: list[pathlib.Path], threshold: float) -> dict:
  """{(game, agent): {"scores": per-seed means, "hours": [...], "recall": {...} | None}}.
  Raises ValueError (one line) when two runs of one (game, agent) share a seed: pooled, that
  seed would count twice."""
  groups: dict = {}
  seen: dict = {}  # (game, agent, seed) -> the run holding it
  recalls: dict = {}
  for run_dir in run_dirs:
    final = json.loads((run_dir / "final_eval.json").read_text())
    config = run_dir_lib.read_config(run_dir)
    game = GAMES.get(config.env_id, config.env_id)
    entry = groups.setdefault((game, config.agent), {"scores": [], "hours": [], "runs": [],
                                                     "recall": None, "episodes": []})
    for seed in harness.member_seeds(config):
      other = seen.setdefault((game, config.agent, seed), run_dir)
      if other != run_dir:
        raise ValueError(f"{other} and {run_dir} both hold seed {seed} of {game} / "
                         f"{config.agent}: keep one of them")
    entry["scores"] += [s for s in final["mean_per_seed"] if s is not None]
    entry["hours"].append(final.get("train_hours"))
    entry["episodes"].append(final["episodes_per_seed"])
    entry["runs"].append(str(run_dir))
    if (final.get("detector_recall")  # measured when the run finished, at this threshold
        and final.get("detector_recall_threshold_raw_px") == threshold):
      entry["recall"] = final["detector_recall"]
    elif config.agent == "keyqn" and config.keypoint_run:
      if config.keypoint_run not in recalls:
        try:
          recalls[config.keypoint_run] = evaluation.run_recall(config.keypoint_run, threshold)
        except (ValueError, FileNotFoundError) as e:
          print(f"warning: no detector recall for {config.keypoint_run}: {e}", file=sys.stderr)
          recalls[config.keypoint_run] = None
      entry["recall"] = recalls[config.keypoint_run]
  return groups


KEPT_FILES = ("config.json", "final_eval.json", "metrics.csv", "images/learning_curve.png")


def keep(run_dirs: list[pathlib.Path], folder: pathlib.Path) -> list[pathlib.Path]:
  """Copies the result files of the finished `run_dirs` into folder/<run name>/ and returns
  every run kept there (those copied now and earlier). Raises ValueError (one line) when two
  different runs share a name."""
  for run_dir in run_dirs:
    target = folder / run_dir.name
    if target.resolve() == run_dir.resolve():
      continue
    final = target / "final_eval.json"
    if final.is_file() and final.read_bytes() != (run_dir / "final_eval.json").read_bytes():
      raise ValueError(f"{target} keeps another run named {run_dir.name}: rename one")
    for name in KEPT_FILES:
      if (run_dir / name).is_file():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / name, target / name)
  return sorted(p for p in folder.iterdir() if (p / "final_eval.json").is_file()) \
      if folder.is_dir() else []


def _count(n: int, noun: str) -> str:
  return f"{n} {noun}" + ("" if n == 1 else "s")


def _cell(values: list[float]) -> str:
  if not values:
    return "-"
  if len(values) == 1:  # no spread to show
    return f"{values[0]:.1f} (1 seed)"
  return f"{np.mean(values):.1f} ({np.std(values):.1f})"


def markdown(groups: dict, threshold: float) -> str:
  games = sorted({g for g, _ in groups} | set(PUBLISHED))
  ours = [a for a in AGENT_NAMES if any(k[1] == a for k in groups)]
  header = (["game"] + [AGENT_NAMES[a] for a in ours] +
            ["KeyQN (paper)", "SimPLe", "Rainbow", "PPO", "Human", "Random"])
  lines = ["Raw scores at 100k agent steps: mean (std over seeds).", "",
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  notes = []
  for game in games:
    ref = PUBLISHED.get(game)
    row = [game]
    for agent in ours:
      entry = groups.get((game, agent))
      row.append(_cell(entry["scores"]) if entry else "-")
      if entry:
        hours = [h for h in entry["hours"] if h is not None]
        note = (f"{game} / {AGENT_NAMES[agent]}: {_count(len(entry['scores']), 'seed')}, "
                f"{min(entry['episodes'])}+ evaluation games per seed")
        if hours:
          note += f", {sum(hours):.2f} h of training ({_count(len(hours), 'run')})"
        if entry["recall"]:
          note += ("; detector recall on held-out frames: " +
                   ", ".join(f"{k} {v:.2f}" for k, v in entry["recall"].items()))
        notes.append(note)
    if ref:
      row += [f"{m} ({s})" for m, s in (ref["KeyQN"], ref["SimPLe"], ref["Rainbow"], ref["PPO"])]
      row += [str(ref["Human"]), str(ref["Random"])]
    else:
      row += ["-"] * 6
    lines.append("| " + " | ".join(row) + " |")
  lines += ["", "Human-normalised ((score - random) / (human - random)):", "",
            "| game | " + " | ".join([AGENT_NAMES[a] for a in ours] + ["KeyQN (paper)"]) + " |",
            "|" + "---|" * (len(ours) + 2)]
  for game in games:
    if game not in PUBLISHED:
      continue
    row = [game]
    for agent in ours:
      entry = groups.get((game, agent))
      row.append(f"{human_normalised(np.mean(entry['scores']), game):.3f}"
                 if entry and entry["scores"] else "-")
    row.append(f"{human_normalised(PUBLISHED[game]['KeyQN'][0], game):.3f}")
    lines.append("| " + " | ".join(row) + " |")
  lines += ["", f"Detector recall: a keypoint within {threshold:g} raw pixels of the object.", ""]
  lines += [f"- {n}" for n in notes]
  return "\n".join(lines) + "\n"


def bar_plot(groups: dict, path: pathlib.Path) -> None:
  plt = visualize.pyplot()
  games = sorted(PUBLISHED)
  series = [("KeyQN (paper)", [human_normalised(PUBLISHED[g]["KeyQN"][0], g) for g in games])]
  for agent, label in AGENT_NAMES.items():
    if any(k[1] == agent for k in groups):
      series.append((label, [human_normalised(np.mean(groups[(g, agent)]["scores"]), g)
                             if (g, agent) in groups and groups[(g, agent)]["scores"]
                             else np.nan for g in games]))
  fig, ax = plt.subplots(figsize=(7, 3.5))
  width = 0.8 / len(series)
  for i, (label, values) in enumerate(series):
    ax.bar(np.arange(len(games)) + i * width, values, width, label=label)
  ax.set_xticks(np.arange(len(games)) + width * (len(series) - 1) / 2, games)
  ax.axhline(0, color="black", linewidth=0.5)
  ax.set_ylabel("human-normalised score")
  ax.set_title("Atari 100k")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  run_dirs = [pathlib.Path(r) for r in _RUNS.value]
  if _RUNS_ROOT.value:
    root = pathlib.Path(_RUNS_ROOT.value)
    if not root.is_dir():
      sys.exit(f"error: --runs_root {root} is not a folder")
    run_dirs += sorted(p for p in root.iterdir() if (p / "config.json").is_file())
  finished = [r for r in run_dirs if (r / "final_eval.json").is_file()]
  unfinished = [r for r in run_dirs if r not in finished]
  for r in unfinished:
    print(f"skipping {r}: no final_eval.json (unfinished)", file=sys.stderr)
  if _KEEP.value:
    try:
      finished = keep(finished, pathlib.Path(_KEEP.value))
    except ValueError as e:
      sys.exit(f"error: {e}")
  if not finished:
    sys.exit("error: no finished agent run (a run directory with final_eval.json) was given")
  try:
    groups = collect(finished, _THRESHOLD.value)
  except ValueError as e:
    sys.exit(f"error: {e}")
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  text = markdown(groups, _THRESHOLD.value)
  out.with_suffix(".md").write_text(text)
  bar_plot(groups, out.with_suffix(".png"))
  print(text)
  print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.png')}")


if __name__ == "__main__":
  harness.run(main)
