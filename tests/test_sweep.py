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


def test_random_draws_distinct_points_of_the_grid_in_grid_order():
  points = sweep.expand(sweep.parse_grid(["a=1,2,3", "b=x,y"]))
  drawn = sweep.draw(points, 3, seed=0)
  assert len(drawn) == 3 and all(p in points for p in drawn)
  assert [points.index(p) for p in drawn] == sorted(points.index(p) for p in drawn)
  assert sweep.draw(points, 3, seed=0) == drawn  # the seed fixes the draw
  assert sweep.draw(points, 0, seed=0) == points and sweep.draw(points, 9, seed=0) == points


def test_tpu_and_slurm_commands(tmp_path):
  base = [sys.executable, "-m", "launch.sweep", f"--run_root={tmp_path / 'pod'}",
          "--flags=--config=experiments/configs/pong.py", "--grid=config.train.seed=0,1",
          "--dry_run"]
  tpu = subprocess.run(base + ["--target=tpu", "--tpu=my-pod", "--zone=us-central2-b"],
                       capture_output=True, text=True, check=False)
  assert tpu.returncode == 0, tpu.stderr[-2000:]
  lines = tpu.stdout.strip().splitlines()
  assert len(lines) == 2
  assert lines[1] == (
      "gcloud compute tpus tpu-vm ssh my-pod --zone=us-central2-b --worker=all "
      "'--command=cd ~/keypoints && python -m experiments.train_transporter "
      "--config=experiments/configs/pong.py --config.train.seed=1 "
      f"--run_dir={tmp_path / 'pod'}/seed=1 --auto_distributed'")
  slurm = subprocess.run(base + ["--target=slurm", "--nodes=2", "--gpus_per_node=4",
                                 "--partition=gpu", "--remote_dir=/shared/keypoints"],
                         capture_output=True, text=True, check=False)
  assert slurm.returncode == 0, slurm.stderr[-2000:]
  out = slurm.stdout
  for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=4",
               "#SBATCH --partition=gpu", f"#SBATCH --output={tmp_path / 'pod'}/seed=0.log",
               f"sbatch {tmp_path / 'pod'}/seed=1.sbatch"):
    assert line in out.splitlines(), line
  assert ("srun bash -c 'cd /shared/keypoints && python -m experiments.train_transporter "
          "--config=experiments/configs/pong.py --config.train.seed=0") in out
  assert not (tmp_path / "pod").exists()  # a dry run writes nothing
  bad = subprocess.run(base + ["--target=tpu"], capture_output=True, text=True, check=False)
  assert bad.returncode != 0 and "--target=tpu needs --tpu and --zone" in bad.stderr


def test_local_sweep_of_two_runs_completes_skips_them_on_rerun_and_aggregates(sprites_dir,
                                                                           tmp_path):
  root = tmp_path / "seeds"
  cmd = [sys.executable, "-m", "launch.sweep", f"--run_root={root}", "--parallel=2",
         "--flags=--config=experiments/configs/sprites.py",
         f"--flags=--config.dataset.path={sprites_dir}", "--flags=--config.model.image_size=(16,16)",
         "--flags=--config.model.num_keypoints=2", "--flags=--config.train.batch_size=2",
         "--flags=--config.train.num_steps=4", "--flags=--config.log_every=2",
         "--flags=--config.checkpoint_every=4", "--flags=--config.image_every=4",
         "--flags=--config.gif_frames=2", "--grid=config.train.seed=0,1"]
  first = subprocess.run(cmd, capture_output=True, text=True, check=False)
  assert first.returncode == 0, first.stdout + first.stderr[-2000:]
  again = subprocess.run(cmd, capture_output=True, text=True, check=False)
  assert again.returncode == 0
  assert "seed=0: finished earlier, skipped" in again.stdout
  assert (root / "seed=1.log").read_text().count("==== ") == 1  # not started again
  agg = subprocess.run([sys.executable, "-m", "launch.aggregate", f"--run_root={root}",
                        "--metrics=loss,heldout_loss", "--over=seed"],
                       capture_output=True, text=True, check=False)
  assert agg.returncode == 0, agg.stderr[-2000:]
  summary = json.loads((root / "aggregate.json").read_text())
  assert [r["name"] for r in summary["runs"]] == ["seed=0", "seed=1"]
  assert all(r["step"] == 4 for r in summary["runs"])
  losses = [r["values"]["loss"] for r in summary["runs"]]
  assert losses[0] != losses[1]  # two seeds, two runs
  (group,) = summary["groups"]
  assert abs(group["values"]["loss"]["mean"] - sum(losses) / 2) < 1e-9
  assert "| seed=0 | 4 |" in agg.stdout and "mean (std) over seed" in agg.stdout
  assert (root / "aggregate.png").stat().st_size > 0 and (root / "aggregate.md").is_file()
  bad = subprocess.run([sys.executable, "-m", "launch.aggregate", f"--run_root={root}",
                        "--metrics=nope"], capture_output=True, text=True, check=False)
  assert bad.returncode != 0
  assert bad.stderr.strip().splitlines()[-1] == f"error: no run of {root} logs nope"
