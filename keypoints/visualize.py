"""Pictures of keypoints: overlays on frames and GIFs. Keypoints are (x, y) pixels."""

from __future__ import annotations

import os
import pathlib

import imageio.v3 as iio
import numpy as np

from keypoints import inference

# Distinct colours for keypoint indices (cycled for K > 10).
PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 128, 255], [255, 255, 0], [255, 0, 255],
                    [0, 255, 255], [255, 128, 0], [128, 0, 255], [255, 255, 255],
                    [128, 255, 128]], np.uint8)


def pyplot():
  """matplotlib.pyplot drawing to files (the Agg backend: no display needed), imported on first
  use so that code which never plots does not load matplotlib."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def overlay(frames: np.ndarray, keypoints: np.ndarray, scale: int = 4,
            radius: float = 1.5, objects: np.ndarray | None = None) -> np.ndarray:
  """Draws keypoints as coloured rings on upscaled frames (and objects as white dots).

  Args:
    frames: uint8 [N, H, W, 3].
    keypoints: [N, K, 2] (x, y) pixel positions in `frames`.
    scale: integer upscaling (nearest) so that small frames stay readable.
    radius: ring radius in input pixels.
    objects: optional ground truth [N, M, 2] in the same pixels (NaN: not visible), drawn as
      small white dots with a black rim.

  Returns:
    uint8 [N, H * scale, W * scale, 3].
  """
  frames = np.repeat(np.repeat(np.asarray(frames), scale, axis=1), scale, axis=2).copy()
  n, h, w, _ = frames.shape
  ys, xs = np.mgrid[0:h, 0:w]
  for i in range(n):
    for k, (x, y) in enumerate(np.asarray(keypoints[i])):
      if not np.isfinite([x, y]).all():
        continue
      cx, cy = (x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5
      d = np.hypot(xs - cx, ys - cy)
      ring = np.abs(d - radius * scale) <= max(scale / 2, 1.0)
      frames[i][ring] = PALETTE[k % len(PALETTE)]
    for x, y in ([] if objects is None else np.asarray(objects[i])):
      if not np.isfinite([x, y]).all():
        continue
      d = np.hypot(xs - ((x + 0.5) * scale - 0.5), ys - ((y + 0.5) * scale - 0.5))
      frames[i][d <= max(scale * 0.6, 1.5)] = 0
      frames[i][d <= max(scale * 0.35, 1.0)] = 255
  return frames


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: float = 10.0) -> None:
  """Writes uint8 [N, H, W, 3] frames as a looping GIF."""
  iio.imwrite(path, np.asarray(frames), extension=".gif", duration=1000.0 / fps, loop=0)


def write_png(path: str | os.PathLike, frame: np.ndarray) -> None:
  iio.imwrite(path, np.asarray(frame), extension=".png")


def tile(frames: np.ndarray, columns: int) -> np.ndarray:
  """[N, H, W, 3] -> one image of the frames in a grid, `columns` wide."""
  n, h, w, c = frames.shape
  rows = -(-n // columns)
  grid = np.zeros((rows * h, columns * w, c), np.uint8)
  for i in range(n):
    r, col = divmod(i, columns)
    grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = frames[i]
  return grid


def label(frames: np.ndarray, text: str) -> np.ndarray:
  """Adds a black title bar with `text` above uint8 [N, H, W, 3] frames."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  bar = Image.new("RGB", (frames.shape[2], 14))
  ImageDraw.Draw(bar).text((3, 1), text, fill=(255, 255, 255))
  bar = np.broadcast_to(np.asarray(bar), (len(frames), *np.asarray(bar).shape))
  return np.concatenate([bar, frames], axis=1)


def plot_tracking(path: str | os.PathLike, results: list[dict], threshold: float,
                  title: str) -> None:
  """Precision and recall against the horizon, one line per model (`evaluation` results); a
  model of several seeds (`evaluation.group_seeds`) is its mean with a band of +-1 std."""
  plt = pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  as_float = lambda values: np.array([np.nan if v is None else v for v in values], np.float64)
  for r in results:
    h = np.maximum(np.asarray(r["horizons"]), 0.5)
    seeds = r.get("seeds", 1)
    label = r["name"] + (f" ({seeds} seeds)" if seeds > 1 else "")
    for ax, key in zip(axes, ("precision", "recall")):
      line, = ax.plot(h, as_float(r[key]), marker="o", label=label)
      if r.get(f"{key}_std") is not None and seeds > 1:
        mean, std = as_float(r[key]), as_float(r[f"{key}_std"])
        ax.fill_between(h, mean - std, mean + std, color=line.get_color(), alpha=0.2)
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


def write_training_pictures(images_dir: pathlib.Path, step: int, detector, reconstruct,
                            episode: np.ndarray, pairs: dict) -> None:
  """Keypoint GIF on a held-out episode and a source | target | reconstruction strip.

  Args:
    detector: an `inference.Detector` bound to the current variables.
    reconstruct: (variables, source, target) -> the model's outputs.
    episode: uint8 [T, H, W, 3] held-out frames for the GIF; pairs: {"source", "target"}.
  """
  images_dir.mkdir(exist_ok=True)
  gif = overlay(episode, detector(episode))
  write_gif(images_dir / f"keypoints_{step:07d}.gif", gif)
  write_gif(images_dir / "keypoints_latest.gif", gif)
  out = reconstruct(detector.variables, pairs["source"], pairs["target"])
  recon = np.asarray(out["reconstruction"] + out["frame_mean"])
  recon = np.clip(recon * 255, 0, 255).astype(np.uint8)
  kp_t = inference.to_pixels(np.asarray(out["target"]["keypoints"]), detector.feature_size,
                             detector.image_size)
  kp_s = detector(np.asarray(pairs["source"]))
  rows = np.concatenate([overlay(np.asarray(pairs["source"]), kp_s),
                         overlay(np.asarray(pairs["target"]), kp_t),
                         overlay(recon, kp_t)])
  write_png(images_dir / f"reconstruction_{step:07d}.png", tile(rows, len(pairs["source"])))
