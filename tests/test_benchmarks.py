"""The benchmark entry point runs end to end and reports every row (numbers are not judged)."""

import json
import subprocess
import sys

import pytest


def test_benchmark_writes_its_table_and_json(tmp_path):
  out = tmp_path / "bench.json"
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.transporter", "--archs=deepmind", "--batch_sizes=2",
       "--steps=1", "--size=16", "--compute_dtypes=float32,bfloat16", "--steps_per_dispatch=2",
       f"--json_out={out}"],
      capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  rows = {r["name"]: r for r in json.loads(out.read_text())}
  assert {"ceiling/matmul", "ceiling/conv", "train/deepmind/b2", "detect/deepmind/b1/raw210x160",
          "detect/deepmind/b1/16x16"} <= set(rows)
  train = rows["train/deepmind/b2"]
  assert train["pairs_per_s"] > 0 and train["gflop_per_step"] > 0 and train["peak_rss_mib"] > 0
  assert train["steps_per_dispatch"] == 2
  # Per step: the bfloat16 step does the same arithmetic (XLA counts FLOPs, not bytes).
  bf16 = rows["train/deepmind/b2/bf16"]
  assert abs(bf16["gflop_per_step"] / train["gflop_per_step"] - 1) < 0.05
  assert "train/deepmind/b2" in result.stdout


def test_transporter_benchmark_keeps_the_rows_measured_before_it_stops(tmp_path):
  # An unknown architecture stops the run after the ceiling rows: those are in the JSON already,
  # as a run cut short by a time limit keeps what it measured.
  out = tmp_path / "bench.json"
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.transporter", "--archs=no_such_arch", "--steps=1",
       f"--json_out={out}"], capture_output=True, text=True, check=False)
  assert result.returncode != 0
  assert "unknown architecture" in result.stderr
  assert [r["name"] for r in json.loads(out.read_text())] == ["ceiling/matmul", "ceiling/conv"]


def test_options_benchmark_times_both_ways_of_updating_the_heads(tmp_path):
  out = tmp_path / "options.json"
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.options", "--keypoints=2", "--steps=1",
       f"--json_out={out}"], capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  (row,) = json.loads(out.read_text())
  assert row["keypoints"] == 2 and row["heads"] == 8
  assert row["vmapped_ms"] > 0 and row["loop_ms"] > 0 and row["act_ms"] > 0
  assert abs(row["loop_over_vmapped"] - row["loop_ms"] / row["vmapped_ms"]) < 0.01 + 0.01 * \
      row["loop_over_vmapped"]


def test_agents_benchmark_times_training_and_evaluation_steps(tmp_path):
  out = tmp_path / "agents.json"
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.agents", "--agents=pixel_dqn", "--env_id=catch",
       "--seeds=1,2", "--eval_games=1,3", "--steps=2", f"--json_out={out}"],
      capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  rows = {r["name"]: r for r in json.loads(out.read_text())}
  assert set(rows) == {"ceiling/matmul"} | {
      f"pixel_dqn/catch/seeds{n}{suffix}" for n in (1, 2) for suffix in ("", "/eval_g1",
                                                                          "/eval_g3")}
  assert rows["ceiling/matmul"]["gflops"] > 0
  one, two = rows["pixel_dqn/catch/seeds1"], rows["pixel_dqn/catch/seeds2"]
  for train in (one, two):
    assert train["update_ms"] > 0 and train["steps_per_s"] > 0
    assert train["observe_gflop"] is None  # pixel DQN's observer does no arithmetic
    assert abs(train["update_gflops"] - 1e3 * train["update_gflop"] / train["update_ms"]) < \
        0.1 + 0.01 * train["update_gflops"]
  # A population's update does every member's arithmetic: two members, twice one's FLOPs.
  assert abs(two["update_gflop"] / one["update_gflop"] - 2) < 0.05
  for games in (1, 3):
    row = rows[f"pixel_dqn/catch/seeds2/eval_g{games}"]
    assert abs(row["eval_steps_per_s"] - 1e3 * games / row["eval_step_ms"]) < 0.1 + 0.01 * \
        row["eval_steps_per_s"]


@pytest.mark.parametrize("flag,name,record", [("--nouse_features", "keyqn", 2),
                                               ("--use_features", "keyqn_features", 2 + 32)])
def test_agents_benchmark_times_keyqn_with_and_without_features(tmp_path, flag, name, record):
  out = tmp_path / "agents.json"
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.agents", "--agents=keyqn", flag,
       "--env_id=catch", "--seeds=1", "--eval_games=", "--steps=2", f"--json_out={out}"],
      capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  ceiling, row = json.loads(out.read_text())
  assert ceiling["name"] == "ceiling/matmul"
  assert row["name"] == f"{name}/catch/seeds1"
  assert row["element_shape"][-1] == record  # positions alone (the default), or with features
  assert row["observe_ms"] > 0 and row["update_ms"] > 0
  assert row["observe_gflop"] > 0 and row["update_gflop"] > 0
