"""A detector on the frames an agent sees: keypoints against the RAM's objects during play.

  python -m experiments.probe_detector --keypoint_run=runs/pong_seeds/seed=0 --policy=chase \
      --steps=3000 --out=runs/probe_pong_chase

The tracking evaluation scores a detector on held-out frames of its own dataset, which random
play collected. An agent sees other frames: the Atari-100k protocol's (no sticky actions, the
max of the last two of four frames), and states its play reaches and random play does not. This
binary plays `--steps` agent steps of the detector's game under that protocol (`rl.atari`),
with the uniform random policy or the chasing one (`rl.envs.chase_action`, Pong and Breakout),
runs the detector on every frame as KeyQN's observer does, and reports for each object the
keypoint that sat on it on the detector's held-out frames (what `--config.network.keypoints`
reads) and how often it is on the object here, overall and, where the RAM map knows the
player's score (Pong), for each score. Writes probe.json, keypoints.npz (every frame's
keypoints and objects in raw pixels, and the score) and misses.gif (frames where a held-out
keypoint is off its object, keypoints as rings, objects as white dots).
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Sequence

import numpy as np
import tqdm
from absl import app
from absl import flags
from absl import logging

from experiments import harness
from keypoints import evaluation
from keypoints import ground_truth
from keypoints import inference
from keypoints import metrics
from keypoints import visualize
from rl import atari
from rl import envs

_KEYPOINT_RUN = flags.DEFINE_string("keypoint_run", None, "The detector's Transporter run "
                                    "directory (its dataset names the game).")
_POLICY = flags.DEFINE_enum("policy", envs.POLICY, list(envs.POLICIES),
                            "Who plays: 'uniform_random', or 'chase' (Pong and Breakout: the "
                            "paddle follows the ball, a random action on "
                            f"{envs.CHASE_RANDOM_FRACTION:.0%} of the steps).")
_STEPS = flags.DEFINE_integer("steps", 3000, "Agent steps to play (4 emulator frames each).",
                              lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the game and the policy.", lower_bound=0)
_THRESHOLD = flags.DEFINE_float("threshold", 8.0, "A keypoint within this many raw pixels of "
                                "an object is on it.")
_OUT = flags.DEFINE_string("out", None, "Folder for probe.json, keypoints.npz and misses.gif.")
_GIF_FRAMES = flags.DEFINE_integer("gif_frames", 40, "Most frames in misses.gif.",
                                   lower_bound=0)
_BATCH = flags.DEFINE_integer("batch_size", 256, "Frames per detector call.", lower_bound=1)


def play(env_id: str, policy: str, steps: int, seed: int):
  """Frames uint8 [T, 210, 160, 3] of `steps` agent steps under the agents' protocol, and the
  RAM after each [T, 128] (a finished game is reset and play goes on)."""
  env = atari.make(env_id, seed, observation="colour")
  observation, _ = env.reset(seed=seed)
  rng = np.random.default_rng(seed)
  frames, rams = [], []
  for _ in tqdm.trange(steps, desc=f"playing {env_id}", file=sys.stderr):
    frames.append(observation)
    rams.append(envs.read_ram(env))
    action = envs.policy_action(env_id, policy, rams[-1], rng, env.action_space.n)
    observation, _, terminated, truncated, _ = env.step(action)
    if terminated or truncated:  # the game is over (a lost life goes on)
      observation, _ = env.reset()
  env.close()
  return np.stack(frames), np.stack(rams)


def on_rate(on: np.ndarray, shown: np.ndarray,
            select: np.ndarray | None = None) -> list[float | None]:
  """Per object, the fraction of the frames (of `select`, bool [T]) it is shown in with its
  keypoint on it; None where it is never shown there. on, shown: bool [T, M]."""
  if select is not None:
    shown = shown & select[:, None]
  return [float(np.mean(on[shown[:, m], m])) if shown[:, m].any() else None
          for m in range(shown.shape[1])]


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _KEYPOINT_RUN.value is None or _OUT.value is None:
    sys.exit("error: --keypoint_run and --out are required")
  try:
    _, heldout = evaluation.load_run(_KEYPOINT_RUN.value)
    env_id = heldout.metadata.get("env")
    names = ground_truth.object_names(env_id)
    envs.check_policy(env_id, _POLICY.value)
    detector = inference.load_detector(_KEYPOINT_RUN.value)
    scored = evaluation.score_heldout(detector, heldout, _THRESHOLD.value, _BATCH.value)
  except (ValueError, FileNotFoundError) as e:  # RunDirError and DatasetError included
    sys.exit(f"error: {e}")
  held = evaluation.object_keypoints(scored, _THRESHOLD.value)
  chosen = np.array([held[n]["keypoint"] for n in names])
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)

  frames, rams = play(env_id, _POLICY.value, _STEPS.value, _SEED.value)
  objects = ground_truth.atari_positions(env_id, rams)
  keypoints = evaluation.detect_all(detector, frames, _BATCH.value)  # raw frames: raw pixels
  score = ground_truth.player_score(env_id, rams)
  here = metrics.object_keypoints(keypoints, objects, _THRESHOLD.value)
  shown = np.isfinite(objects).all(-1)  # [T, M]
  # [T, M]: each object's held-out keypoint within the threshold of it (False where hidden).
  on = metrics.on_object(keypoints, objects, _THRESHOLD.value)[:, chosen, np.arange(len(names))]
  summary = {
      "keypoint_run": str(_KEYPOINT_RUN.value), "env": env_id, "policy": _POLICY.value,
      "steps": _STEPS.value, "seed": _SEED.value, "threshold_raw_px": _THRESHOLD.value,
      "objects": list(names), "shown": [float(v) for v in shown.mean(0)],
      "heldout_keypoints": held,
      "recall_any_keypoint": [float(v) for v in metrics.object_recall(keypoints, objects,
                                                                      _THRESHOLD.value)],
      "recall_heldout_keypoint": on_rate(on, shown),
      "keypoint_here": [int(k) for k in here["keypoint"]],
      "recall_keypoint_here": [float(v) for v in here["recall"]],
  }
  if score is not None:
    summary["by_player_score"] = {
        int(s): {"frames": int(np.sum(score == s)),
                 "recall_heldout_keypoint": on_rate(on, shown, score == s)}
        for s in np.unique(score)}
  (out / "probe.json").write_text(json.dumps(summary, indent=2))
  np.savez_compressed(out / "keypoints.npz", keypoints=keypoints, objects=objects,
                      player_score=score if score is not None else np.zeros(0))

  missed = np.where((shown & ~on).any(-1))[0][:_GIF_FRAMES.value]
  if len(missed):
    visualize.write_gif(out / "misses.gif", visualize.overlay(
        frames[missed], keypoints[missed], scale=2, objects=objects[missed]), fps=4)
  print(f"{env_id}, {_STEPS.value} agent steps of the {_POLICY.value} policy, a keypoint "
        f"within {_THRESHOLD.value:g} raw px; the held-out keypoint on each object: "
        + ", ".join(f"{n} k{k}" for n, k in zip(names, chosen)))
  for m, name in enumerate(names):
    rate = summary["recall_heldout_keypoint"][m]
    print(f"  {name:>8}: shown in {summary['shown'][m]:.0%} of frames; held-out keypoint on it "
          f"{'-' if rate is None else f'{rate:.3f}'}, any keypoint "
          f"{summary['recall_any_keypoint'][m]:.3f}")
  for s, row in summary.get("by_player_score", {}).items():
    cells = ", ".join(f"{n} {'-' if r is None else f'{r:.2f}'}"
                      for n, r in zip(names, row["recall_heldout_keypoint"]))
    print(f"  player's score {s:>2} ({row['frames']:>5} frames): {cells}")
  logging.info("wrote %s", out)


if __name__ == "__main__":
  harness.run(main)
