"""The results table: seeds of all runs of a (game, agent) pooled, raw and human-normalised."""

import json

import numpy as np
import pytest

from experiments import atari_table
from experiments.configs import agent as agent_config
from keypoints import run_dir as run_dir_lib
from rl import agents


def _finished_run(path, agent, env_id, means, hours, seed=0):
  config = agent_config.get_config()
  config.agent, config.env_id, config.num_seeds, config.seed = agent, env_id, len(means), seed
  run_dir_lib.prepare(path, agents.with_agent_defaults(config))
  (path / "final_eval.json").write_text(json.dumps({
      "mean_per_seed": means, "episodes_per_seed": 100, "train_hours": hours}))
  return path


def test_table_pools_seeds_and_normalises(tmp_path):
  runs = [_finished_run(tmp_path / "a", "pixel_dqn", "ALE/Pong-v5", [-21.0, -19.0], 1.5),
          _finished_run(tmp_path / "b", "pixel_dqn", "ALE/Pong-v5", [-20.0], 0.5, seed=2),
          _finished_run(tmp_path / "c", "pixel_dqn", "ALE/Breakout-v5", [5.0, 7.0], 1.0),
          _finished_run(tmp_path / "d", "pixel_dqn", "ALE/Seaquest-v5", [250.0], 1.0)]
  groups = atari_table.collect(runs, threshold=8.0)
  assert groups[("pong", "pixel_dqn")]["scores"] == [-21.0, -19.0, -20.0]
  text = atari_table.markdown(groups, 8.0)
  rows = {}
  for line in text.splitlines():  # the raw table comes first
    if line.startswith("| "):
      rows.setdefault(line.split(" | ")[0], line)
  assert rows["| pong"].split(" | ")[1] == f"-20.0 ({np.std([-21, -19, -20]):.1f})"
  assert rows["| breakout"].split(" | ")[1] == "6.0 (1.0)"
  assert rows["| seaquest"].split(" | ")[1] == "250.0 (1 seed)"  # no std of one seed
  # Human-normalised: (6 - 1.7) / (31.8 - 1.7) for Breakout, the paper's KeyQN beside it.
  normalised = [line for line in text.splitlines() if line.startswith("| breakout |")][1]
  assert normalised.split(" | ")[1] == f"{(6.0 - 1.7) / (31.8 - 1.7):.3f}"
  assert normalised.split(" | ")[2].rstrip(" |") == f"{(19.3 - 1.7) / (31.8 - 1.7):.3f}"
  assert "pong / pixel DQN (ours): 3 seeds, 100+ evaluation games per seed, 2.00 h" in text
  atari_table.bar_plot(groups, tmp_path / "bars.png")
  assert (tmp_path / "bars.png").stat().st_size > 0


def test_a_seed_kept_twice_is_refused(tmp_path):
  runs = [_finished_run(tmp_path / "pop", "keyqn", "ALE/Pong-v5", [-15.0, -17.0, -16.0], 1.0),
          _finished_run(tmp_path / "s2", "keyqn", "ALE/Pong-v5", [-14.0], 0.3, seed=2),
          _finished_run(tmp_path / "dqn", "pixel_dqn", "ALE/Pong-v5", [-20.0], 1.0, seed=2),
          _finished_run(tmp_path / "bo", "keyqn", "ALE/Breakout-v5", [4.0], 1.0, seed=2)]
  with pytest.raises(ValueError, match="both hold seed 2 of pong / keyqn"):
    atari_table.collect(runs, threshold=8.0)
  # Another agent's seed 2, or the same seed of another game, is no clash.
  groups = atari_table.collect([runs[0], runs[2], runs[3]], threshold=8.0)
  assert groups[("pong", "keyqn")]["scores"] == [-15.0, -17.0, -16.0]
  assert groups[("breakout", "keyqn")]["scores"] == [4.0]


def test_human_normalised_bounds():
  assert atari_table.human_normalised(-20.7, "pong") == pytest.approx(0.0)
  assert atari_table.human_normalised(9.3, "pong") == pytest.approx(1.0)


def test_kept_results_outlive_their_run_directories(tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  a = _finished_run(tmp_path / "runs" / "a", "keyqn", "ALE/Pong-v5", [-15.0, -17.0], 1.0)
  final = json.loads((a / "final_eval.json").read_text())
  final["detector_recall"] = {"player": 1.0, "enemy": 0.5, "ball": 0.25}
  final["detector_recall_threshold_raw_px"] = 8.0
  (a / "final_eval.json").write_text(json.dumps(final))
  kept = tmp_path / "kept"
  assert [p.name for p in atari_table.keep([a], kept)] == ["a"]
  assert (kept / "a" / "config.json").is_file()
  shutil.rmtree(a)  # the run directory is gone; a later run joins the kept one
  b = _finished_run(tmp_path / "runs" / "b", "keyqn", "ALE/Pong-v5", [-16.0], 0.5, seed=2)
  runs = atari_table.keep([b], kept)
  assert [p.name for p in runs] == ["a", "b"]
  groups = atari_table.collect(runs, threshold=8.0)
  assert groups[("pong", "keyqn")]["scores"] == [-15.0, -17.0, -16.0]
  # The recall measured when the run finished (the detector's run is not needed).
  assert groups[("pong", "keyqn")]["recall"] == {"player": 1.0, "enemy": 0.5, "ball": 0.25}
  assert "player 1.00, enemy 0.50, ball 0.25" in atari_table.markdown(groups, 8.0)
  # Asked at another threshold, the kept recall (8 px) is not shown as if it were that one.
  assert atari_table.collect(runs, threshold=4.0)[("pong", "keyqn")]["recall"] is None
  # Keeping again changes nothing; another run under a kept run's name is refused.
  assert [p.name for p in atari_table.keep([b], kept)] == ["a", "b"]
  other = _finished_run(tmp_path / "other" / "b", "keyqn", "ALE/Pong-v5", [3.0], 0.5)
  with pytest.raises(ValueError, match="keeps another run named b"):
    atari_table.keep([other], kept)
