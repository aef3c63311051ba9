r"""Collects a frame dataset from an environment with a uniform random policy.

Writes the format of `keypoints.data`: metadata.json first, then one episode_XXXXXX.npz per
episode, each written atomically. Episode i is a pure function of (--seed, i) and the settings in
metadata.json, so an interrupted collection is resumed by running the same command again: the
complete episodes on disk are kept, leftovers of a half-written one are removed and the missing
episodes are collected, giving exactly the dataset an uninterrupted run would have.

Examples:

  python -m experiments.collect_frames --env=ALE/Pong-v5 --out=data/pong
  python -m experiments.collect_frames --env=dm_control/manipulator-bring_ball \
      --out=data/manipulator --episodes=50 --height=64 --width=64
  python -m experiments.collect_frames --env=dm_control/stacker-stack_4 \
      --out=data/stack_4 --episodes=50 --height=64 --width=64
"""

from __future__ import annotations

import pathlib
import sys
from typing import Any, Mapping, Sequence

from absl import app
from absl import flags
from absl import logging
import tqdm

from experiments import harness

from keypoints import data
from rl import envs

_ENV = flags.DEFINE_string(
    "env", "ALE/Pong-v5",
    "Environment to collect from: any gymnasium ALE id (e.g. 'ALE/Pong-v5') or one of the "
    "dm_control arm's ids: " + ", ".join(envs.DM_CONTROL_IDS) + ".")
_OUT = flags.DEFINE_string(
    "out", None,
    "Dataset folder to write (created if missing). If it already holds a dataset collected with "
    "the same settings, the collection resumes where it stopped.")
_EPISODES = flags.DEFINE_integer(
    "episodes", 20, "Number of episodes the dataset should hold when done.", lower_bound=1)
_MAX_EPISODE_FRAMES = flags.DEFINE_integer(
    "max_episode_frames", 1000,
    "Most frames stored per episode; an episode also ends when the environment terminates or "
    "truncates it.", lower_bound=1)
_HEIGHT = flags.DEFINE_integer(
    "height", 80, "Height in pixels of the stored frames (ALE screens are resized to it, "
    "dm_control frames rendered at it).", lower_bound=1)
_WIDTH = flags.DEFINE_integer(
    "width", 80, "Width in pixels of the stored frames (ALE screens are resized to it, "
    "dm_control frames rendered at it).", lower_bound=1)
_POLICY = flags.DEFINE_enum(
    "policy", envs.POLICY, list(envs.POLICIES),
    "Who plays: 'uniform_random' (every action equally likely), or 'chase' (Pong and Breakout: "
    f"the paddle moves towards the ball, read from the RAM; a random action on "
    f"{envs.CHASE_RANDOM_FRACTION:.0%} of the steps), whose frames reach rallies and scores "
    "that random play never shows.")
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seed of the whole collection; episode i is seeded from (seed, i).",
    lower_bound=0)


def prepare_output(out: pathlib.Path, metadata: Mapping[str, Any]) -> list[int]:
  """Makes `out` ready to receive episodes; returns the complete episodes already there.

  Raises:
    ValueError: (one line) if `out` holds something other than a dataset with this metadata.
  """
  if out.exists() and not out.is_dir():
    raise ValueError(f"--out={out} exists and is not a folder")
  if (out / data.METADATA).exists():
    existing = data.read_metadata(out)
    differences = [f"{k}={existing.get(k)!r} (flags give {v!r})"
                   for k, v in metadata.items() if existing.get(k) != v]
    if differences:
      raise ValueError(f"{out} holds a dataset collected with other settings: "
                       f"{'; '.join(differences)}; pass the same flags to resume it, or choose "
                       "another --out")
  elif out.is_dir() and data.complete_episodes(out):
    raise ValueError(f"{out} holds episodes but no {data.METADATA}, so they cannot be resumed; "
                     "choose another --out")
  # Left by a run interrupted while writing; never complete, so safe to drop.
  if out.is_dir():
    for stale in out.glob("*.tmp"):
      logging.info("removing %s, left by an interrupted run", stale)
      stale.unlink()
  data.write_metadata(out, metadata)
  return data.complete_episodes(out)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  out = pathlib.Path(_OUT.value)
  try:
    metadata = envs.dataset_metadata(_ENV.value, _HEIGHT.value, _WIDTH.value, _SEED.value,
                                     _MAX_EPISODE_FRAMES.value, _POLICY.value)
    done = set(prepare_output(out, metadata))
  except ValueError as e:  # DatasetError included.
    sys.exit(f"collect_frames: error: {e}")
  todo = [i for i in range(_EPISODES.value) if i not in done]
  if done:
    logging.info("resuming %s: %d episodes on disk, %d to collect", out, len(done), len(todo))
  frames_written = 0
  progress = tqdm.tqdm(todo, desc=f"collecting {_ENV.value}", unit="episode", file=sys.stderr)
  for i in progress:
    frames, ground_truth = envs.collect_episode(
        _ENV.value, envs.episode_seed(_SEED.value, i), _MAX_EPISODE_FRAMES.value, _HEIGHT.value,
        _WIDTH.value, _POLICY.value)
    data.write_episode(out, i, frames, **ground_truth)
    frames_written += len(frames)
    progress.set_postfix(frames=frames_written)
  logging.info("%s holds episodes %s", out, data.complete_episodes(out))


if __name__ == "__main__":
  flags.mark_flag_as_required("out")
  harness.run(main)
