"""Scores trained keypoint models against ground-truth object positions on held-out episodes.

  python -m experiments.eval_tracking --run_dirs=runs/pong,runs/pong_jakab,runs/pong_zhang \
      --out=runs/pong_tracking

Every run is evaluated on its dataset's held-out episodes (the last `dataset.heldout_episodes`
of its config, never trained on); the runs compared in one call must share those episodes.
Keypoints and objects are compared in the pixels of the raw frame (210x160 for Atari), so
`--threshold` means the same on every dataset size. See keypoints/metrics.py for the precision,
recall and identity measures. Writes into --out:
  results.json    per model: precision and recall per horizon, track length, switches, per-object
                  recall; plus the threshold, the held-out episodes and frames used
  tracking.png    precision and recall against the horizon, one line per model
  <name>.gif      keypoints (coloured rings) and ground-truth objects (white dots) per model
  comparison.gif  the models side by side

Robustness over seeds: `--sweep_dir` scores every run of a sweep (each subfolder with a
config.json, e.g. from `python -m launch.sweep --grid=config.train.seed=0,1,2,3,4`) on its own
held-out episodes and prints one row of per-object recall per run, and how many runs put a
keypoint on every object in at least `--min_recall` of the frames; it writes recall.json into
--out (default: the sweep folder).

  python -m experiments.eval_tracking --sweep_dir=runs/pong_seeds
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
from absl import app
from absl import flags
from absl import logging
from tqdm import tqdm

from experiments import harness

from keypoints import data as data_lib
from keypoints import evaluation
from keypoints import ground_truth
from keypoints import inference
from keypoints import metrics
from keypoints import run_dir as run_dir_lib
from keypoints import visualize

_RUN_DIRS = flags.DEFINE_list(
    "run_dirs", None, "Comma-separated training run directories to evaluate and compare.")
_SWEEP_DIR = flags.DEFINE_string(
    "sweep_dir", None, "Instead of --run_dirs: a folder of runs (a sweep); prints per-object "
    "recall for every run in it.")
_MIN_RECALL = flags.DEFINE_float(
    "min_recall", 0.9, "With --sweep_dir: a run finds every object when each object's recall "
    "reaches this.")
_NAMES = flags.DEFINE_list(
    "names", None, "Labels for the runs, in order (default: each run directory's name).")
_OUT = flags.DEFINE_string("out", None, "Folder for results.json, tracking.png and the GIFs "
                           "(with --sweep_dir: for recall.json; default the sweep folder).")
_DATASET = flags.DEFINE_string(
    "dataset", None, "Dataset folder to use instead of the one in each run's config (e.g. "
    "after moving it); its held-out split is still the run's.")
_THRESHOLD = flags.DEFINE_float(
    "threshold", 8.0, "A keypoint is on an object within this many pixels of the raw frame.")
_HORIZONS = flags.DEFINE_list(
    "horizons", ["0", "1", "2", "5", "10", "20", "50", "100"],
    "Horizons (frames since a sequence's start) at which to report precision and recall.")
_GIF_FRAMES = flags.DEFINE_integer("gif_frames", 100, "Frames of the first held-out episode "
                                   "in each GIF.")
_BATCH = flags.DEFINE_integer("batch_size", 256, "Frames per detector call.")


def load_run(run_dir: pathlib.Path, dataset_path: str | None):
  """(config, held-out dataset) of a training run."""
  config = run_dir_lib.read_config(run_dir)
  max_episodes = config.dataset.max_episodes
  dataset = data_lib.load_dataset(dataset_path or config.dataset.path,
                                  None if max_episodes < 0 else max_episodes)
  _, heldout = dataset.split(config.dataset.heldout_episodes)
  return config, heldout


def label(frames: np.ndarray, text: str) -> np.ndarray:
  """Adds a black title bar with `text` above uint8 [N, H, W, 3] frames."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  bar = Image.new("RGB", (frames.shape[2], 14))
  ImageDraw.Draw(bar).text((3, 1), text, fill=(255, 255, 255))
  bar = np.broadcast_to(np.asarray(bar), (len(frames), *np.asarray(bar).shape))
  return np.concatenate([bar, frames], axis=1)


def plot(path: pathlib.Path, results: list[dict], threshold: float, title: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  for r in results:
    h = np.asarray(r["horizons"])
    for ax, key in zip(axes, ("precision", "recall")):
      ax.plot(np.maximum(h, 0.5), r[key], marker="o", label=r["name"])
  for ax, key in zip(axes, ("precision", "recall")):
    ax.set_xscale("log")
    ax.set_xlabel("horizon (frames since the sequence start; 0 plotted at 0.5)")
    ax.set_ylabel(key)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
  axes[0].legend()
  fig.suptitle(f"{title}: keypoints held on one object for the whole horizon "
               f"(threshold {threshold:g} raw px)", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _make_out_dir(path: str) -> pathlib.Path:
  out = pathlib.Path(path)
  if out.exists() and not out.is_dir():
    raise ValueError(f"--out {out} is a file, not a folder")
  out.mkdir(parents=True, exist_ok=True)
  return out


def sweep_runs(sweep_dir: pathlib.Path) -> list[pathlib.Path]:
  """The run directories of a sweep: its subfolders that hold a config.json, sorted by name."""
  if not sweep_dir.is_dir():
    raise FileNotFoundError(f"sweep folder {sweep_dir} does not exist")
  runs = sorted(p for p in sweep_dir.iterdir() if (p / "config.json").is_file())
  if not runs:
    raise FileNotFoundError(f"{sweep_dir} holds no runs (subfolders with a config.json)")
  return runs


def evaluate_sweep(sweep_dir: pathlib.Path, out: pathlib.Path | None, threshold: float,
                   min_recall: float, dataset_path: str | None, batch_size: int) -> dict:
  """Per-object recall of every run in `sweep_dir` on its own held-out episodes; prints a table.

  Runs that have not checkpointed their last step are listed as unfinished and left out.
  """
  rows, names = [], None
  for run_dir in tqdm(sweep_runs(sweep_dir), desc="runs"):
    config, heldout = load_run(run_dir, dataset_path)
    steps = run_dir_lib.checkpoint_steps(run_dir)
    if not steps or max(steps) < config.train.num_steps:
      rows.append({"run": run_dir.name, "finished": False,
                   "checkpoint_step": max(steps) if steps else None,
                   "train_steps": config.train.num_steps})
      continue
    detector = inference.load_detector(run_dir)
    scored = evaluation.score_heldout(detector, heldout, threshold, batch_size)
    names = names or scored.object_names
    recall = dict(zip(scored.object_names, (float(v) for v in scored.per_object_recall)))
    rows.append({"run": run_dir.name, "finished": True, "seed": config.train.seed,
                 "env": heldout.metadata.get("env"), "train_steps": config.train.num_steps,
                 "per_object_recall": recall,
                 "finds_every_object": min(recall.values()) >= min_recall})
  done = [r for r in rows if r["finished"]]
  hits = sum(r["finds_every_object"] for r in done)
  summary = {"sweep_dir": str(sweep_dir), "threshold_raw_px": threshold,
             "min_recall": min_recall, "runs": rows, "runs_finding_every_object": hits,
             "finished_runs": len(done)}
  (out or sweep_dir).joinpath("recall.json").write_text(json.dumps(summary, indent=2))
  width = max(12, *(len(r["run"]) for r in rows))
  header = f"{'run':<{width}}" + "".join(f"  {n:>8}" for n in (names or ()))
  print(f"per-object recall on held-out frames (a keypoint within {threshold:g} raw px):")
  print(header + "  every object")
  for r in rows:
    if not r["finished"]:
      print(f"{r['run']:<{width}}  (unfinished: checkpoint {r['checkpoint_step']} of "
            f"{r['train_steps']} steps)")
      continue
    cells = "".join(f"  {r['per_object_recall'][n]:8.2f}" for n in names)
    print(f"{r['run']:<{width}}{cells}  {'yes' if r['finds_every_object'] else 'NO'}")
  print(f"{hits} of {len(done)} runs put a keypoint on every object in >= {min_recall:.0%} of "
        f"held-out frames")
  return summary


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if (_RUN_DIRS.value is None) == (_SWEEP_DIR.value is None):
    sys.exit("error: give either --run_dirs or --sweep_dir")
  if _SWEEP_DIR.value is not None:
    try:
      out = _make_out_dir(_OUT.value) if _OUT.value else None
      evaluate_sweep(pathlib.Path(_SWEEP_DIR.value), out, _THRESHOLD.value, _MIN_RECALL.value,
                     _DATASET.value, _BATCH.value)
    except (ValueError, FileNotFoundError) as e:
      sys.exit(f"error: {e}")
    return
  if _OUT.value is None:
    sys.exit("error: --out is required with --run_dirs")
  run_dirs = [pathlib.Path(p) for p in _RUN_DIRS.value]
  names = _NAMES.value or [p.name for p in run_dirs]
  try:
    if len(names) != len(run_dirs):
      raise ValueError(f"--names has {len(names)} labels for {len(run_dirs)} runs")
    if len(set(names)) != len(names):
      raise ValueError(f"run names must differ, got {names} (set --names)")
    horizons = [int(h) for h in _HORIZONS.value]
    if min(horizons) < 0:
      raise ValueError(f"horizons must be >= 0, got {horizons}")
    if _THRESHOLD.value <= 0:
      raise ValueError(f"--threshold must be > 0, got {_THRESHOLD.value}")
    runs = [load_run(p, _DATASET.value) for p in run_dirs]
    heldout = runs[0][1]
    for p, (_, other) in zip(run_dirs[1:], runs[1:]):
      if (other.metadata != heldout.metadata or other.frames.shape != heldout.frames.shape
          or not np.array_equal(other.frames, heldout.frames)):
        raise ValueError(f"{p} holds out other episodes than {run_dirs[0]}: compare runs "
                         "trained on the same dataset with the same held-out split")
    object_names, objects = ground_truth.dataset_positions(heldout.metadata,
                                                           heldout.ground_truth)
    detectors = [inference.load_detector(p) for p in run_dirs]
    out = _make_out_dir(_OUT.value)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"error: {e}")

  meta = heldout.metadata
  raw_size = evaluation.raw_frame_size(heldout)
  logging.info("Evaluating %d runs on %d held-out frames (%d episodes) of %s; objects: %s",
               len(run_dirs), len(heldout.frames), heldout.num_episodes, meta.get("env"),
               ", ".join(object_names))

  results, panels = [], []
  gif_slice = heldout.episode(0)
  gif_frames = heldout.frames[gif_slice][:_GIF_FRAMES.value]
  for name, run_dir, (config, _), detector in tqdm(list(zip(names, run_dirs, runs, detectors)),
                                                  desc="models"):
    scored = evaluation.score_heldout(detector, heldout, _THRESHOLD.value, _BATCH.value)
    keypoints = scored.frame_keypoints
    scores = metrics.tracking(scored.keypoints, scored.objects, _THRESHOLD.value, horizons,
                              heldout.episode_lengths)
    per_object = scored.per_object_recall
    results.append({
        "name": name, "run_dir": str(run_dir),
        "model_type": config.model.model_type, "arch": config.model.arch,
        "num_keypoints": config.model.num_keypoints, "train_steps": config.train.num_steps,
        "horizons": horizons,
        "precision": [None if np.isnan(v) else float(v) for v in scores["precision"]],
        "recall": [None if np.isnan(v) else float(v) for v in scores["recall"]],
        "sequences": [int(v) for v in scores["sequences"]],
        "mean_track_length": scores["mean_track_length"],
        "switches_per_100_frames": scores["switches_per_100_frames"],
        "per_object_recall": dict(zip(object_names, (float(v) for v in per_object))),
    })
    n = len(gif_frames)
    panel = visualize.overlay(gif_frames, keypoints[gif_slice][:n],
                              objects=objects[gif_slice][:n])
    panel = label(panel, name)
    visualize.write_gif(out / f"{name}.gif", panel)
    panels.append(panel)

  visualize.write_gif(out / "comparison.gif", np.concatenate(panels, axis=2))
  plot(out / "tracking.png", results, _THRESHOLD.value, str(meta.get("env")))
  summary = {"env": meta.get("env"), "threshold_raw_px": _THRESHOLD.value,
             "raw_frame_size": list(raw_size), "objects": list(object_names),
             "heldout_episodes": int(heldout.num_episodes),
             "heldout_frames": int(len(heldout.frames)), "models": results}
  (out / "results.json").write_text(json.dumps(summary, indent=2))

  header = f"{'model':<22}" + "".join(f"  P@{h:<4} R@{h:<4}" for h in horizons)
  print(f"{meta.get('env')}: {len(heldout.frames)} held-out frames, threshold "
        f"{_THRESHOLD.value:g} raw px")
  print(header + "  track len  switches/100")
  for r in results:
    cells = "".join(f"  {_fmt(p)}  {_fmt(q)}" for p, q in zip(r["precision"], r["recall"]))
    print(f"{r['name']:<22}{cells}  {r['mean_track_length']:9.1f}  "
          f"{r['switches_per_100_frames']:12.2f}")
  print(f"wrote {out / 'results.json'}, {out / 'tracking.png'}, {out / 'comparison.gif'}")


def _fmt(v) -> str:
  return "  -  " if v is None else f"{v:.3f}"


if __name__ == "__main__":
  harness.run(main)
