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
"""

from __future__ import annotations

import json
import pathlib
import sys

import ml_collections
import numpy as np
from absl import app
from absl import flags
from absl import logging
from tqdm import tqdm

from keypoints import data as data_lib
from keypoints import ground_truth
from keypoints import inference
from keypoints import metrics
from keypoints import visualize

_RUN_DIRS = flags.DEFINE_list(
    "run_dirs", None, "Comma-separated training run directories to evaluate and compare.",
    required=True)
_NAMES = flags.DEFINE_list(
    "names", None, "Labels for the runs, in order (default: each run directory's name).")
_OUT = flags.DEFINE_string("out", None, "Folder for results.json, tracking.png and the GIFs.",
                           required=True)
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
  config_path = run_dir / "config.json"
  if not config_path.is_file():
    raise FileNotFoundError(f"{config_path} is missing: {run_dir} is not a training run")
  config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
  max_episodes = config.dataset.max_episodes
  dataset = data_lib.load_dataset(dataset_path or config.dataset.path,
                                  None if max_episodes < 0 else max_episodes)
  _, heldout = dataset.split(config.dataset.heldout_episodes)
  return config, heldout


def detect_all(detector: inference.Detector, frames: np.ndarray, batch_size: int) -> np.ndarray:
  out = [detector(frames[i:i + batch_size]) for i in range(0, len(frames), batch_size)]
  return np.concatenate(out)


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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
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
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"error: {e}")

  meta = heldout.metadata
  size = heldout.frames.shape[1:3]
  raw_size = (int(meta.get("raw_height", size[0])), int(meta.get("raw_width", size[1])))
  raw_objects = data_lib.resize_points(objects, size, raw_size)
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  logging.info("Evaluating %d runs on %d held-out frames (%d episodes) of %s; objects: %s",
               len(run_dirs), len(heldout.frames), heldout.num_episodes, meta.get("env"),
               ", ".join(object_names))

  results, panels = [], []
  gif_slice = heldout.episode(0)
  gif_frames = heldout.frames[gif_slice][:_GIF_FRAMES.value]
  for name, run_dir, (config, _), detector in tqdm(list(zip(names, run_dirs, runs, detectors)),
                                                  desc="models"):
    keypoints = detect_all(detector, heldout.frames, _BATCH.value)
    raw_keypoints = data_lib.resize_points(keypoints, size, raw_size)
    scores = metrics.tracking(raw_keypoints, raw_objects, _THRESHOLD.value, horizons,
                              heldout.episode_lengths)
    per_object = metrics.object_recall(raw_keypoints, raw_objects, _THRESHOLD.value)
    results.append({
        "name": name, "run_dir": str(run_dir),
        "model_type": config.model.get("model_type", "transporter"), "arch": config.model.arch,
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
  app.run(main)
