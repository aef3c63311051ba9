"""Keypoints of a detector against ground-truth objects on held-out frames, in raw-frame pixels.

Shared by the tracking comparison (experiments/eval_tracking.py) and the seed studies
(experiments/seed_study.py): both score the same way.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Sequence

import numpy as np

from keypoints import data as data_lib
from keypoints import ground_truth
from keypoints import inference
from keypoints import metrics
from keypoints import run_dir as run_dir_lib


@dataclasses.dataclass(frozen=True)
class HeldoutScores:
  """Keypoints and objects of held-out frames in raw-frame pixels, and per-object recall.

  Attributes:
    object_names: names of the M objects.
    frame_keypoints: float [T, K, 2] (x, y) pixels of the stored frames (for drawing on them).
    keypoints: float [T, K, 2] (x, y) raw-frame pixels.
    objects: float [T, M, 2] raw-frame pixels, NaN where not visible.
    per_object_recall: float [M], fraction of visible frames with a keypoint within threshold.
    raw_size: (H, W) of the raw frames.
  """
  object_names: tuple[str, ...]
  frame_keypoints: np.ndarray
  keypoints: np.ndarray
  objects: np.ndarray
  per_object_recall: np.ndarray
  raw_size: tuple[int, int]

  def recall_by_object(self) -> dict[str, float]:
    """{object: recall} (JSON-ready)."""
    return dict(zip(self.object_names, (float(v) for v in self.per_object_recall)))


def raw_frame_size(dataset: data_lib.Dataset) -> tuple[int, int]:
  """(H, W) of the frames the dataset's stored frames were resized from."""
  return ground_truth.raw_frame_size(dataset.metadata)


def detect_all(detector: inference.Detector, frames: np.ndarray,
               batch_size: int = 256) -> np.ndarray:
  """Keypoints [N, K, 2] (pixels of `frames`), `batch_size` frames per detector call."""
  out = [detector(frames[i:i + batch_size]) for i in range(0, len(frames), batch_size)]
  return np.concatenate(out)


def score_heldout(detector: inference.Detector, heldout: data_lib.Dataset, threshold: float,
                  batch_size: int = 256) -> HeldoutScores:
  """Runs `detector` on every held-out frame and scores it against the dataset's objects.

  Raises:
    keypoints.data.DatasetError: the dataset has no object ground truth.
  """
  names, raw_objects = ground_truth.dataset_positions(heldout.metadata, heldout.ground_truth,
                                                      raw=True, frames=heldout.frames)
  size = heldout.frames.shape[1:3]
  raw_size = raw_frame_size(heldout)
  frame_keypoints = detect_all(detector, heldout.frames, batch_size)
  keypoints = data_lib.resize_points(frame_keypoints, size, raw_size)
  recall = metrics.object_recall(keypoints, raw_objects, threshold)
  return HeldoutScores(tuple(names), frame_keypoints, keypoints, raw_objects, recall, raw_size)


def object_keypoints(scored: HeldoutScores, threshold: float) -> dict[str, dict[str, Any]]:
  """{object: {"keypoint", "recall", "offset_px", "scatter_px"}} (JSON-ready): the detector's
  keypoint that sits on each object most often, in raw pixels (`metrics.object_keypoints`).
  The keypoints, in object order, are what `--config.network.keypoints` of the agents takes."""
  found = metrics.object_keypoints(scored.keypoints, scored.objects, threshold)
  rounded = lambda xy: [None if np.isnan(v) else round(float(v), 3) for v in xy]
  return {name: {"keypoint": int(found["keypoint"][m]), "recall": float(found["recall"][m]),
                 "offset_px": rounded(found["offset"][m]),
                 "scatter_px": rounded(found["scatter"][m])}
          for m, name in enumerate(scored.object_names)}


def load_run(run_dir: str | os.PathLike, dataset_path: str | None = None):
  """(config, held-out dataset) of a training run (`dataset_path` overrides the config's)."""
  config = run_dir_lib.read_config(run_dir)
  _, heldout = data_lib.load_split(dataset_path or config.dataset.path,
                                   config.dataset.max_episodes, config.dataset.heldout_episodes)
  return config, heldout


def tracking_result(name: str, run_dir, config, scored: HeldoutScores, heldout: data_lib.Dataset,
                    threshold: float, horizons: Sequence[int]) -> dict[str, Any]:
  """One model's entry of the tracking comparison (JSON-ready)."""
  scores = metrics.tracking(scored.keypoints, scored.objects, threshold, horizons,
                            heldout.episode_lengths)
  nan_to_none = lambda values: [None if np.isnan(v) else float(v) for v in values]
  return {
      "name": name, "run_dir": str(run_dir),
      "model_type": config.model.model_type, "arch": config.model.arch,
      "num_keypoints": config.model.num_keypoints, "train_steps": config.train.num_steps,
      "horizons": list(horizons),
      "precision": nan_to_none(scores["precision"]),
      "recall": nan_to_none(scores["recall"]),
      "sequences": [int(v) for v in scores["sequences"]],
      "mean_track_length": scores["mean_track_length"],
      "switches_per_100_frames": scores["switches_per_100_frames"],
      "per_object_recall": scored.recall_by_object(),
      "object_keypoints": object_keypoints(scored, threshold),
  }


_GROUPED = ("precision", "recall", "mean_track_length", "switches_per_100_frames")


def _mean_std(values: list) -> tuple[Any, Any]:
  """Mean and (population) std over seeds of numbers or lists of numbers; None where a seed has
  None (a horizon without sequences), and the std None for a single seed."""
  if isinstance(values[0], list):
    pairs = [_mean_std([v[i] for v in values]) for i in range(len(values[0]))]
    return [m for m, _ in pairs], [s for _, s in pairs]
  if any(v is None for v in values):
    return None, None
  return float(np.mean(values)), (float(np.std(values)) if len(values) > 1 else None)


def group_seeds(results: list[dict]) -> list[dict]:
  """Entries of `tracking_result` with the same name are seeds of one model: one entry per name
  (in order of first appearance) with the mean over its seeds of precision, recall, track
  length, switches and per-object recall, each with a "<key>_std" beside it (None for one seed),
  "seeds" and the seeds' "run_dirs" (not "object_keypoints", which differ from seed to seed)."""
  groups: dict[str, list[dict]] = {}
  for r in results:
    groups.setdefault(r["name"], []).append(r)
  grouped = []
  for name, runs in groups.items():
    # Which keypoint sits on which object is a seed's own: it stays in the runs' entries.
    entry = {k: v for k, v in runs[0].items()
             if k not in _GROUPED + ("run_dir", "object_keypoints")}
    entry.update(seeds=len(runs), run_dirs=[r["run_dir"] for r in runs])
    for key in _GROUPED:
      entry[key], entry[f"{key}_std"] = _mean_std([r[key] for r in runs])
    objects = list(runs[0]["per_object_recall"])
    means, stds = _mean_std([[r["per_object_recall"][o] for o in objects] for r in runs])
    entry["per_object_recall"] = dict(zip(objects, means))
    entry["per_object_recall_std"] = dict(zip(objects, stds))
    grouped.append(entry)
  return grouped


def tracking_table(results: list[dict], horizons: Sequence[int]) -> str:
  """The comparison as text: precision / recall per horizon, track length, switches; a model
  of several seeds (`group_seeds`) shows mean+-std."""
  def fmt(value, std=None, digits=3):
    if value is None:
      return "-"
    return f"{value:.{digits}f}" + ("" if std is None else f"+-{std:.{digits}f}")

  rows = []
  for r in results:
    n = len(r["precision"])
    p_std = r.get("precision_std") or [None] * n
    r_std = r.get("recall_std") or [None] * n
    label = r["name"] + (f" ({r['seeds']} seeds)" if r.get("seeds", 1) > 1 else "")
    rows.append([label] + [fmt(v, s) for pair in zip(zip(r["precision"], p_std),
                                                     zip(r["recall"], r_std))
                           for v, s in pair]
                + [fmt(r["mean_track_length"], r.get("mean_track_length_std"), 1),
                   fmt(r["switches_per_100_frames"], r.get("switches_per_100_frames_std"), 2)])
  header = ["model"] + [f"{k}@{h}" for h in horizons for k in ("P", "R")] + [
      "track len", "switches/100"]
  widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
  lines = ["  ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
                     for i, (c, w) in enumerate(zip(row, widths))) for row in [header] + rows]
  return "\n".join(lines)


def sweep_runs(sweep_dir: pathlib.Path) -> list[pathlib.Path]:
  """The run directories of a sweep: its subfolders that hold a config.json, sorted by name."""
  if not sweep_dir.is_dir():
    raise FileNotFoundError(f"sweep folder {sweep_dir} does not exist")
  runs = sorted(p for p in sweep_dir.iterdir() if (p / "config.json").is_file())
  if not runs:
    raise FileNotFoundError(f"{sweep_dir} holds no runs (subfolders with a config.json)")
  return runs


def run_recall(run_dir, threshold: float, dataset_path: str | None = None,
               batch_size: int = 256) -> dict[str, float]:
  """{object: recall} of a run's detector on its held-out episodes (a keypoint within
  `threshold` raw pixels)."""
  _, heldout = load_run(run_dir, dataset_path)
  scored = score_heldout(inference.load_detector(run_dir), heldout, threshold, batch_size)
  return scored.recall_by_object()


def sweep_recall(sweep_dir: pathlib.Path, threshold: float, min_recall: float,
                 dataset_path: str | None = None, batch_size: int = 256,
                 progress=lambda xs: xs) -> dict[str, Any]:
  """Per-object recall of every finished run in `sweep_dir`, each on its own held-out episodes.

  Runs that have not checkpointed their last step are listed as unfinished and left out.
  """
  rows, names = [], None
  for run_dir in progress(sweep_runs(sweep_dir)):
    config, heldout = load_run(run_dir, dataset_path)
    steps = run_dir_lib.checkpoint_steps(run_dir)
    if not steps or max(steps) < config.train.num_steps:
      rows.append({"run": run_dir.name, "finished": False,
                   "checkpoint_step": max(steps) if steps else None,
                   "train_steps": config.train.num_steps})
      continue
    scored = score_heldout(inference.load_detector(run_dir), heldout, threshold, batch_size)
    recall = scored.recall_by_object()
    names = names or tuple(recall)
    rows.append({"run": run_dir.name, "finished": True, "seed": config.train.seed,
                 "env": heldout.metadata.get("env"), "train_steps": config.train.num_steps,
                 "per_object_recall": recall,
                 "finds_every_object": min(recall.values()) >= min_recall,
                 "object_keypoints": object_keypoints(scored, threshold)})
  done = [r for r in rows if r["finished"]]
  return {"sweep_dir": str(sweep_dir), "threshold_raw_px": threshold, "min_recall": min_recall,
          "objects": list(names or ()), "runs": rows,
          "runs_finding_every_object": sum(r["finds_every_object"] for r in done),
          "finished_runs": len(done)}


def object_keypoints_line(found: dict[str, dict[str, Any]]) -> str:
  """`object_keypoints` as one line: "player k1 (-0.7, -1.7; 0.1, 1.0); ..." (the keypoint on
  each object, then its x, y offset and x, y scatter in raw pixels)."""
  def describe(f):
    if f["offset_px"][0] is None:
      return f"none (k{f['keypoint']} is never on it)"
    (dx, dy), (sx, sy) = f["offset_px"], f["scatter_px"]
    return f"k{f['keypoint']} ({dx:+.1f}, {dy:+.1f}; {sx:.1f}, {sy:.1f})"
  return ("keypoint on each object (x, y offset; x, y scatter, raw px): "
          + "; ".join(f"{name} {describe(f)}" for name, f in found.items()))


def sweep_table(summary: dict[str, Any]) -> str:
  """`sweep_recall`'s summary as text: a row of per-object recall per run, then the count."""
  rows, names = summary["runs"], summary["objects"]
  width = max(12, *(len(r["run"]) for r in rows))
  lines = [f"per-object recall on held-out frames (a keypoint within "
           f"{summary['threshold_raw_px']:g} raw px):",
           f"{'run':<{width}}" + "".join(f"  {n:>8}" for n in names) + "  every object"]
  for r in rows:
    if not r["finished"]:
      lines.append(f"{r['run']:<{width}}  (unfinished: checkpoint {r['checkpoint_step']} of "
                   f"{r['train_steps']} steps)")
      continue
    cells = "".join(f"  {r['per_object_recall'][n]:8.2f}" for n in names)
    lines.append(f"{r['run']:<{width}}{cells}  {'yes' if r['finds_every_object'] else 'NO'}")
    lines.append(" " * width + "  " + object_keypoints_line(r["object_keypoints"]))
  lines.append(f"{summary['runs_finding_every_object']} of {summary['finished_runs']} runs put a "
               f"keypoint on every object in >= {summary['min_recall']:.0%} of held-out frames")
  return "\n".join(lines)
