"""End-to-end tests of experiments/collect_frames.py, run as a subprocess like a user would."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from keypoints import data

_ROOT = pathlib.Path(__file__).resolve().parents[1]
_PONG_FLAGS = ("--env=ALE/Pong-v5", "--max_episode_frames=30", "--height=32", "--width=32",
               "--seed=7")


def _collect(out, *flags, check=True):
  result = subprocess.run(
      [sys.executable, "-m", "experiments.collect_frames", f"--out={out}", *flags],
      cwd=_ROOT, capture_output=True, text=True, timeout=120)
  if check and result.returncode != 0:
    raise AssertionError(f"collect_frames failed ({result.returncode}):\n{result.stderr}")
  return result


def _episodes(root):
  episodes = {}
  for i in data.complete_episodes(root):
    with np.load(data.episode_path(root, i)) as f:
      episodes[i] = {k: f[k] for k in f.files}
  return episodes


@pytest.fixture(scope="module")
def pong_reference(tmp_path_factory):
  """An uninterrupted 3-episode Pong collection."""
  out = tmp_path_factory.mktemp("reference") / "pong"
  _collect(out, *_PONG_FLAGS, "--episodes=3")
  return out


def test_collects_a_loadable_ale_dataset(pong_reference):
  dataset = data.load_dataset(pong_reference)
  assert dataset.num_episodes == 3
  assert dataset.frames.shape == (90, 32, 32, 3) and dataset.frames.dtype == np.uint8
  assert dataset.ground_truth["ram"].shape == (90, 128)
  np.testing.assert_array_equal(dataset.episode_lengths, [30, 30, 30])
  metadata = dataset.metadata
  assert metadata["source"] == "ale" and metadata["env"] == "ALE/Pong-v5"
  assert (metadata["height"], metadata["width"]) == (32, 32)
  assert (metadata["raw_height"], metadata["raw_width"]) == (210, 160)
  assert metadata["ground_truth"] == ["ram"] and metadata["seed"] == 7
  assert metadata["frameskip"] == 4 and metadata["policy"] == "uniform_random"
  # Episodes are seeded apart.
  assert not np.array_equal(dataset.frames[dataset.episode(0)], dataset.frames[dataset.episode(1)])


def test_resumed_collection_equals_an_uninterrupted_one(tmp_path, pong_reference):
  out = tmp_path / "pong"
  _collect(out, *_PONG_FLAGS, "--episodes=2")
  # Simulate an interruption while episode 1 was being written.
  data.episode_path(out, 1).unlink()
  stale = out / "episode_000001.npz.tmp"
  stale.write_bytes(b"half an episode")
  first = data.episode_path(out, 0).stat().st_mtime_ns
  _collect(out, *_PONG_FLAGS, "--episodes=3")
  assert not stale.exists()
  assert data.episode_path(out, 0).stat().st_mtime_ns == first, "complete episodes are kept"
  resumed, reference = _episodes(out), _episodes(pong_reference)
  assert sorted(resumed) == sorted(reference) == [0, 1, 2]
  for i in reference:
    assert sorted(resumed[i]) == sorted(reference[i]) == ["frames", "ram"]
    for k in reference[i]:
      np.testing.assert_array_equal(resumed[i][k], reference[i][k], err_msg=f"episode {i} {k}")
  assert data.read_metadata(out) == data.read_metadata(pong_reference)


def test_resuming_with_other_flags_is_refused(tmp_path, pong_reference):
  out = tmp_path / "pong"
  _collect(out, *_PONG_FLAGS, "--episodes=1")
  result = _collect(out, "--env=ALE/Pong-v5", "--max_episode_frames=30", "--height=32",
                    "--width=32", "--seed=8", "--episodes=2", check=False)
  assert result.returncode != 0
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "seed=7 (flags give 8)" in lines[0], result.stderr
  assert data.complete_episodes(out) == [0]


def test_unknown_env_fails_with_one_line(tmp_path):
  result = _collect(tmp_path / "foo", "--env=ALE/Foo-v5", check=False)
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "unknown environment 'ALE/Foo-v5'" in lines[0], result.stderr
  assert not (tmp_path / "foo").exists()


@pytest.mark.parametrize("flag", ["--height=0", "--width=-1", "--episodes=0"])
def test_bad_sizes_are_rejected(tmp_path, flag):
  result = _collect(tmp_path / "bad", "--env=ALE/Pong-v5", flag, check=False)
  assert result.returncode != 0
  assert "Traceback" not in result.stderr and flag.split("=")[0] in result.stderr


def test_collects_a_loadable_manipulator_dataset(tmp_path):
  out = tmp_path / "manipulator"
  _collect(out, "--env=dm_control/manipulator-bring_ball", "--episodes=2",
           "--max_episode_frames=8", "--height=32", "--width=32")
  dataset = data.load_dataset(out)
  metadata = dataset.metadata
  names = metadata["position_names"]
  assert dataset.frames.shape == (16, 32, 32, 3)
  assert dataset.ground_truth["positions"].shape == (16, len(names), 2)
  assert dataset.ground_truth["positions"].dtype == np.float32
  assert metadata["source"] == "dm_control" and metadata["ground_truth"] == ["positions"]
  assert (metadata["raw_height"], metadata["raw_width"]) == (32, 32)
  assert metadata["camera_id"] == 0 and "ball" in names and "upper_arm" in names


@pytest.mark.parametrize("game, axis", [("Pong", 1), ("Breakout", 0)])
def test_chase_policy_keeps_the_paddle_on_the_ball(tmp_path, game, axis):
  # Through the binary: the dataset says who played, and its RAM shows the paddle following
  # the ball along its axis, where random play leaves it wherever it drifted.
  from keypoints import ground_truth  # pylint: disable=g-import-not-at-top
  env_id = f"ALE/{game}-v5"
  gaps = {}
  for policy in ("uniform_random", "chase"):
    out = tmp_path / policy
    _collect(out, f"--env={env_id}", "--max_episode_frames=300", "--height=32", "--width=32",
             "--episodes=1", "--seed=3", f"--policy={policy}")
    assert data.read_metadata(out)["policy"] == policy
    xy = ground_truth.atari_positions(env_id, _episodes(out)[0]["ram"])
    names = ground_truth.object_names(env_id)
    gap = np.abs(xy[:, names.index("player"), axis] - xy[:, names.index("ball"), axis])
    gaps[policy] = np.nanmean(gap)
  assert gaps["chase"] < 0.3 * gaps["uniform_random"], gaps


def test_chase_policy_on_a_game_it_does_not_know_is_one_line(tmp_path):
  result = _collect(tmp_path / "mspacman", "--env=ALE/MsPacman-v5", "--policy=chase",
                    check=False)
  assert result.returncode != 0 and "Traceback" not in result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "policy 'chase' knows Pong, Breakout" in lines[0], result.stderr
