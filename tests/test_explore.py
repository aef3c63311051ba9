"""The exploration binary on real ALE games: coverage counts, pictures, kill -9 and resume, bad
configs; rl.exploration.Coverage on hand-made RAM."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from rl import exploration

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(cmd):
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _explore_cmd(run_dir, *extra):
  return [sys.executable, "-m", "experiments.explore", f"--run_dir={run_dir}",
          "--config.log_every=60", *extra]


@pytest.fixture(scope="module")
def montezuma_detector_run(tmp_path_factory, train_tiny_detector):
  """A (barely trained) Transporter on a few MontezumaRevenge frames."""
  return train_tiny_detector(tmp_path_factory.mktemp("montezuma"), "ALE/MontezumaRevenge-v5")


def test_keypoint_explorer_writes_coverage_and_resumes_bit_exactly(
    montezuma_detector_run, tmp_path, kill_9_after_checkpoint, assert_same_checkpoint):
  common = [f"--config.keypoint_run={montezuma_detector_run}", "--config.num_steps=240",
            "--config.learner.min_replay=60", "--config.learner.batch_size=8",
            "--config.learner.update_period=2", "--config.options.length=5",
            "--config.checkpoint_every=120", "--config.video_steps=12"]
  straight = tmp_path / "straight"
  result = _run(_explore_cmd(straight, *common))
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((straight / "explore.json").read_text())
  assert summary["explorer"] == "keypoints" and summary["step"] == 240
  # Cells bin the RAM's coordinates and positions the screen's: both grow, neither bounds the
  # other.
  assert summary["rooms"] == [1] and summary["cells"][0] > 1 and summary["positions"][0] > 1
  for picture in ("coverage.png", "visited.png", "options.gif"):
    assert (straight / "images" / picture).stat().st_size > 0
  rows = (straight / "metrics.csv").read_text().splitlines()
  assert rows[0].startswith("step,positions,rooms,cells") and len(rows) == 5  # 60 ... 240
  last = dict(zip(rows[0].split(","), rows[-1].split(",")))
  assert float(last["loss"]) >= 0 and float(last["max_q_gap"]) >= 0  # logged (learning: test_options)

  killed = tmp_path / "killed"
  kill_9_after_checkpoint(_explore_cmd(killed, *common), killed, 120, ROOT)
  assert not (killed / "explore.json").exists()
  result = _run(_explore_cmd(killed, *common))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "from step 120" in result.stderr
  # Everything but the wall clock: heads, optimiser, replay, games, option clock, coverage.
  assert_same_checkpoint(straight, killed, 240)
  resumed = json.loads((killed / "explore.json").read_text())
  assert {k: resumed[k] for k in ("positions", "rooms", "cells")} == \
      {k: summary[k] for k in ("positions", "rooms", "cells")}


def test_random_explorer_counts_positions_and_reward_on_ms_pacman(tmp_path):
  run_dir = tmp_path / "random"
  result = _run(_explore_cmd(run_dir, "--config.explorer=random",
                             "--config.env_id=ALE/MsPacman-v5", "--config.num_steps=300",
                             "--config.num_seeds=2", "--config.checkpoint_every=300"))
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((run_dir / "explore.json").read_text())
  assert "rooms" not in summary and len(summary["positions"]) == 2
  assert min(summary["positions"]) > 5  # Ms. Pac-Man moves about the maze
  assert min(summary["reward_found"]) > 0  # and eats dots
  assert summary["positions"][0] != summary["positions"][1]  # two seeds, two games
  assert not (run_dir / "images" / "options.gif").exists()
  # The comparison table: one row per run, counts as mean (range over seeds).
  out = tmp_path / "table"
  result = _run([sys.executable, "-m", "experiments.exploration_table", f"--runs={run_dir}",
                 f"--out={out}"])
  assert result.returncode == 0, result.stderr[-3000:]
  row = out.with_suffix(".md").read_text().splitlines()[2]
  positions = np.array(summary["positions"])
  assert row.startswith("| MsPacman | random | 2 | 300 | ")
  assert f"{positions.mean():.1f} ({positions.min()}-{positions.max()})" in row
  assert out.with_suffix(".png").stat().st_size > 0
  result = _run([sys.executable, "-m", "experiments.exploration_table", f"--runs={tmp_path}"])
  assert result.returncode != 0 and "error: " in result.stderr and "not a finished" in \
      result.stderr


def test_coverage_counts_rooms_cells_and_positions_from_ram():
  coverage = exploration.Coverage(exploration.MONTEZUMA, 2, bin_size=8)
  ram = np.zeros((2, 128), np.uint8)
  ram[:, exploration.MONTEZUMA_ROOM] = [1, 1]
  ram[:, exploration.MONTEZUMA_X] = [77, 20]
  ram[:, exploration.MONTEZUMA_Y] = [148, 148]
  coverage.update(ram)
  ram[0, exploration.MONTEZUMA_X] = 79  # the same 8-pixel cell
  ram[1, exploration.MONTEZUMA_ROOM] = 0  # a new room, same x and y
  coverage.update(ram)
  counts = coverage.counts()
  np.testing.assert_array_equal(counts["rooms"], [1, 2])
  np.testing.assert_array_equal(counts["cells"], [1, 2])
  assert counts["positions"][0] >= 1 and coverage.visits[0].sum() == 2
  restored = exploration.Coverage(exploration.MONTEZUMA, 2, bin_size=8)
  restored.load_state_dict(coverage.state_dict())
  assert restored.rooms == coverage.rooms and restored.cells == coverage.cells
  np.testing.assert_array_equal(restored.visits, coverage.visits)


@pytest.mark.parametrize("extra,message", [
    (["--config.explorer=curious"], "unknown explorer 'curious'"),
    ([], "the keypoints explorer needs a trained Transporter"),
    (["--config.explorer=random", "--config.options.choice=best"], "options.choice must be"),
    (["--config.explorer=random", "--config.options.length=0"], "options.length must be >= 1"),
    (["--config.explorer=random", "--config.env_id=ALE/NoSuchGame-v5"], "unknown environment"),
])
def test_bad_config_is_one_clear_error(tmp_path, extra, message):
  result = _run(_explore_cmd(tmp_path / "run", *extra))
  assert result.returncode != 0
  lines = [l for l in result.stderr.strip().splitlines() if l.startswith("error:")]
  assert len(lines) == 1 and message in lines[0], result.stderr[-2000:]
  assert not (tmp_path / "run").exists()
