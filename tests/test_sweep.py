"""The sweep launcher: grid expansion, commands, and a real sweep of a small binary."""

import json
import subprocess
import sys

import pytest

from keypoints import data as data_lib
from launch import sweep


def test_grid_expands_to_the_cartesian_product_last_axis_fastest():
  grid = sweep.parse_grid(["config.model.num_keypoints=4,6", "--seed=0,1,2"])
  assert grid == {"config.model.num_keypoints": ["4", "6"], "seed": ["0", "1", "2"]}
  points = sweep.expand(grid)
  assert len(points) == 6
  assert points[0] == {"config.model.num_keypoints": "4", "seed": "0"}
  assert points[1] == {"config.model.num_keypoints": "4", "seed": "1"}
  assert points[-1] == {"config.model.num_keypoints": "6", "seed": "2"}
  assert [sweep.point_name(p) for p in points[:2]] == ["num_keypoints=4,seed=0",
                                                       "num_keypoints=4,seed=1"]
  assert sweep.expand({}) == [{}]


@pytest.mark.parametrize("spec", ["seed", "seed=", "seed=1,,2", "=1,2"])
def test_bad_grid_spec_is_one_clear_error(spec):
  with pytest.raises(ValueError, match="bad --grid"):
    sweep.parse_grid([spec])
  with pytest.raises(ValueError, match="twice"):
    sweep.parse_grid(["seed=1", "seed=2"])


def test_command_passes_base_flags_point_and_run_dir(tmp_path):
  cmd = sweep.command("experiments.train_transporter", ["--config=c.py"],
                      {"config.train.learning_rate": "1e-3"}, "run_dir", tmp_path / "lr")
  assert cmd[1:] == ["-m", "experiments.train_transporter", "--config=c.py",
                     "--config.train.learning_rate=1e-3", f"--run_dir={tmp_path / 'lr'}"]


def test_sweep_runs_every_point_and_records_failures(tmp_path):
  root = tmp_path / "sweep"
  result = subprocess.run(
      [sys.executable, "-m", "launch.sweep", "--binary=experiments.make_sprites",
       f"--run_root={root}", "--dir_flag=out", "--flags=--episodes=2", "--flags=--size=16",
       "--grid=episode_length=5,1", "--grid=sprites=1,2"],
      capture_output=True, text=True, check=False)
  assert result.returncode == 1  # episode_length=1 is refused by the binary
  record = {r["name"]: r for r in json.loads((root / "sweep.json").read_text())}
  assert set(record) == {"episode_length=5,sprites=1", "episode_length=5,sprites=2",
                         "episode_length=1,sprites=1", "episode_length=1,sprites=2"}
  for sprites in (1, 2):
    name = f"episode_length=5,sprites={sprites}"
    assert record[name]["exit_code"] == 0
    dataset = data_lib.load_dataset(root / name)
    assert dataset.frames.shape == (10, 16, 16, 3)
    assert record[f"episode_length=1,sprites={sprites}"]["exit_code"] != 0
  assert "FAILED" in result.stdout
  # A rerun appends to each point's log: the failed attempt's output is kept.
  subprocess.run(result.args, capture_output=True, text=True, check=False)
  log = (root / "episode_length=1,sprites=1.log").read_text()
  assert log.count("==== ") == 2 and log.count("error:") == 2


def test_flags_sharing_a_last_name_get_distinct_folders():
  points = sweep.expand(sweep.parse_grid(["config.model.seed=0,1", "config.train.seed=0,1"]))
  names = [sweep.point_name(p) for p in points]
  assert len(set(names)) == 4
  assert names[1] == "model.seed=0,train.seed=1"
  assert sweep.short_names(["a.b.seed", "c.b.seed", "lr"]) == {
      "a.b.seed": "a.b.seed", "c.b.seed": "c.b.seed", "lr": "lr"}
