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

Seeds: runs given the same label in --names are seeds of one model. They are scored one by one
(results.json's "runs") and reported together ("models", the table and the plot): the mean over
the seeds with its standard deviation (a band in the plot); the GIFs show the first seed.

  python -m experiments.eval_tracking --run_dirs=runs/t0,runs/t1,runs/t2,runs/jakab \
      --names=transporter,transporter,transporter,jakab --out=runs/eval

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

from keypoints import evaluation
from keypoints import ground_truth
from keypoints import inference
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
    "names", None, "Labels for the runs, in order (default: each run directory's name); runs "
    "with the same label are seeds of one model, reported as mean and std.")
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


def _make_out_dir(path: str) -> pathlib.Path:
  out = pathlib.Path(path)
  if out.exists() and not out.is_dir():
    raise ValueError(f"--out {out} is a file, not a folder")
  out.mkdir(parents=True, exist_ok=True)
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if (_RUN_DIRS.value is None) == (_SWEEP_DIR.value is None):
    sys.exit("error: give either --run_dirs or --sweep_dir")
  if _SWEEP_DIR.value is not None:
    try:
      out = _make_out_dir(_OUT.value) if _OUT.value else None
      sweep_dir = pathlib.Path(_SWEEP_DIR.value)
      summary = evaluation.sweep_recall(sweep_dir, _THRESHOLD.value, _MIN_RECALL.value,
                                        _DATASET.value, _BATCH.value,
                                        lambda xs: tqdm(xs, desc="runs"))
    except (ValueError, FileNotFoundError) as e:
      sys.exit(f"error: {e}")
    (out or sweep_dir).joinpath("recall.json").write_text(json.dumps(summary, indent=2))
    print(evaluation.sweep_table(summary))
    return
  if _OUT.value is None:
    sys.exit("error: --out is required with --run_dirs")
  run_dirs = [pathlib.Path(p) for p in _RUN_DIRS.value]
  names = _NAMES.value or [p.name for p in run_dirs]
  try:
    if len(names) != len(run_dirs):
      raise ValueError(f"--names has {len(names)} labels for {len(run_dirs)} runs")
    if _NAMES.value is None and len(set(names)) != len(names):
      raise ValueError(f"run folders share names {names}: set --names (runs given one label "
                       "are taken as seeds of one model)")
    horizons = [int(h) for h in _HORIZONS.value]
    if min(horizons) < 0:
      raise ValueError(f"horizons must be >= 0, got {horizons}")
    if _THRESHOLD.value <= 0:
      raise ValueError(f"--threshold must be > 0, got {_THRESHOLD.value}")
    runs = [evaluation.load_run(p, _DATASET.value) for p in run_dirs]
    heldout = runs[0][1]
    for p, (_, other) in zip(run_dirs[1:], runs[1:]):
      if (other.metadata != heldout.metadata or other.frames.shape != heldout.frames.shape
          or not np.array_equal(other.frames, heldout.frames)):
        raise ValueError(f"{p} holds out other episodes than {run_dirs[0]}: compare runs "
                         "trained on the same dataset with the same held-out split")
    object_names, objects = ground_truth.dataset_positions(
        heldout.metadata, heldout.ground_truth, frames=heldout.frames)
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
                                                  desc="runs"):
    scored = evaluation.score_heldout(detector, heldout, _THRESHOLD.value, _BATCH.value)
    results.append(evaluation.tracking_result(name, run_dir, config, scored, heldout,
                                              _THRESHOLD.value, horizons))
    if any(r["name"] == name for r in results[:-1]):
      continue  # a further seed of a model: the GIF shows the first
    keypoints = scored.frame_keypoints
    n = len(gif_frames)
    panel = visualize.overlay(gif_frames, keypoints[gif_slice][:n],
                              objects=objects[gif_slice][:n])
    panel = visualize.label(panel, name)
    visualize.write_gif(out / f"{name}.gif", panel)
    panels.append(panel)

  models = evaluation.group_seeds(results)
  visualize.write_gif(out / "comparison.gif", np.concatenate(panels, axis=2))
  visualize.plot_tracking(out / "tracking.png", models, _THRESHOLD.value, str(meta.get("env")))
  summary = {"env": meta.get("env"), "threshold_raw_px": _THRESHOLD.value,
             "raw_frame_size": list(raw_size), "objects": list(object_names),
             "heldout_episodes": int(heldout.num_episodes),
             "heldout_frames": int(len(heldout.frames)), "models": models, "runs": results}
  (out / "results.json").write_text(json.dumps(summary, indent=2))

  print(f"{meta.get('env')}: {len(heldout.frames)} held-out frames, threshold "
        f"{_THRESHOLD.value:g} raw px")
  print(evaluation.tracking_table(models, horizons))
  for r in results:
    print(f"{r['name']} ({r['run_dir']}): {evaluation.object_keypoints_line(r['object_keypoints'])}")
  print(f"wrote {out / 'results.json'}, {out / 'tracking.png'}, {out / 'comparison.gif'}")


if __name__ == "__main__":
  harness.run(main)
