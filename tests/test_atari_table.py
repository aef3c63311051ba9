"""The results table: seeds of all runs of a (game, agent) pooled, raw and human-normalised."""

import json

import numpy as np
import pytest

from experiments import atari_table
from experiments.configs import agent as agent_config
from keypoints import run_dir as run_dir_lib


def _finished_run(path, agent, env_id, means, hours):
  config = agent_config.get_config()
  config.agent, config.env_id, config.num_seeds = agent, env_id, len(means)
  run_dir_lib.prepare(path, config)
  (path / "final_eval.json").write_text(json.dumps({
      "mean_per_seed": means, "episodes_per_seed": 100, "train_hours": hours}))
  return path


def test_table_pools_seeds_and_normalises(tmp_path):
  runs = [_finished_run(tmp_path / "a", "pixel_dqn", "ALE/Pong-v5", [-21.0, -19.0], 1.5),
          _finished_run(tmp_path / "b", "pixel_dqn", "ALE/Pong-v5", [-20.0], 0.5),
          _finished_run(tmp_path / "c", "pixel_dqn", "ALE/Breakout-v5", [5.0, 7.0], 1.0)]
  groups = atari_table.collect(runs, threshold=8.0)
  assert groups[("pong", "pixel_dqn")]["scores"] == [-21.0, -19.0, -20.0]
  text = atari_table.markdown(groups, 8.0)
  rows = {}
  for line in text.splitlines():  # the raw table comes first
    if line.startswith("| "):
      rows.setdefault(line.split(" | ")[0], line)
  assert rows["| pong"].split(" | ")[1] == f"-20.0 ({np.std([-21, -19, -20]):.1f})"
  assert rows["| breakout"].split(" | ")[1] == "6.0 (1.0)"
  # Human-normalised: (6 - 1.7) / (31.8 - 1.7) for Breakout, the paper's KeyQN beside it.
  normalised = [line for line in text.splitlines() if line.startswith("| breakout |")][1]
  assert normalised.split(" | ")[1] == f"{(6.0 - 1.7) / (31.8 - 1.7):.3f}"
  assert normalised.split(" | ")[2].rstrip(" |") == f"{(19.3 - 1.7) / (31.8 - 1.7):.3f}"
  assert "pong / pixel DQN (ours): 3 seeds, 100+ evaluation games per seed, 2.00 h" in text
  atari_table.bar_plot(groups, tmp_path / "bars.png")
  assert (tmp_path / "bars.png").stat().st_size > 0


def test_human_normalised_bounds():
  assert atari_table.human_normalised(-20.7, "pong") == pytest.approx(0.0)
  assert atari_table.human_normalised(9.3, "pong") == pytest.approx(1.0)
