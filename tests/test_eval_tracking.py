"""End to end: the three models from the training binary, then the tracking evaluation binary."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from keypoints import evaluation
from keypoints import inference

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(args):
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)


def _train(dataset, run_dir, model):
  result = _run(["experiments.train_transporter", "--config=experiments/configs/sprites.py",
                 f"--config.dataset.path={dataset}", f"--run_dir={run_dir}",
                 f"--config.model.model_type={model}",
                 "--config.model.image_size=(16, 16)", "--config.model.num_keypoints=3",
                 "--config.train.batch_size=4", "--config.train.num_steps=10",
                 "--config.gif_frames=4",
                 "--config.image_every=10", "--config.checkpoint_every=10"])
  assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(sprites_dir, tmp_path_factory):
  root = tmp_path_factory.mktemp("eval_runs")
  for model in ("transporter", "jakab", "zhang"):
    _train(sprites_dir, root / model, model)
  return root


@pytest.mark.parametrize("model", ["jakab", "zhang"])
def test_baselines_train_under_the_same_binary(runs, model):
  run_dir = runs / model
  header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
  assert {"loss", "reconstruction_loss", "heldout_loss"} <= set(header)
  if model == "zhang":
    assert {"concentration_loss", "separation_loss", "equivariance_loss"} <= set(header)
  assert (run_dir / "images" / "reconstruction_0000010.png").stat().st_size > 0
  assert json.loads((run_dir / "config.json").read_text())["model"]["model_type"] == model
  detect = inference.load_detector(run_dir)
  assert type(detect.model).__name__.lower() == model
  assert detect(np.zeros((2, 16, 16, 3), np.uint8)).shape == (2, 3, 2)


def _check_object_keypoints(run):
  """A run's keypoint per object: one of its 3, on the object no more often than any keypoint
  is, with offset and scatter where it is ever on it (threshold 2 px, so both stay within)."""
  found = run["object_keypoints"]
  assert set(found) == {"sprite_0", "sprite_1"}
  for name, f in found.items():
    assert 0 <= f["keypoint"] < 3
    assert 0 <= f["recall"] <= run["per_object_recall"][name] + 1e-9
    if f["recall"] > 0:
      assert all(abs(v) <= 2 for v in f["offset_px"]) and all(0 <= v <= 2 for v in f["scatter_px"])
    else:
      assert f["offset_px"] == [None, None]


def test_eval_writes_table_plot_and_gifs(runs, tmp_path):
  out = tmp_path / "eval"
  models = ["transporter", "jakab", "zhang"]
  result = _run(["experiments.eval_tracking", "--run_dirs=" + ",".join(str(runs / m) for m in models),
                 f"--out={out}", "--threshold=2", "--horizons=0,3,30", "--gif_frames=5"])
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((out / "results.json").read_text())
  assert summary["objects"] == ["sprite_0", "sprite_1"]
  assert summary["heldout_episodes"] == 1 and summary["heldout_frames"] == 20
  names = [m["name"] for m in summary["models"]]
  assert names == models
  for m in summary["models"]:
    assert m["horizons"] == [0, 3, 30]
    assert m["precision"][2] is None  # no 31-frame sequence in a 20-frame episode
    assert all(0 <= v <= 1 for v in m["precision"][:2] + m["recall"][:2])
    # Holding on for longer can only be rarer.
    assert m["precision"][1] <= m["precision"][0] and m["recall"][1] <= m["recall"][0]
    assert set(m["per_object_recall"]) == {"sprite_0", "sprite_1"}
  for r in summary["runs"]:
    _check_object_keypoints(r)
  for name in ("tracking.png", "comparison.gif", "transporter.gif", "jakab.gif", "zhang.gif"):
    assert (out / name).stat().st_size > 0
  assert "transporter" in result.stdout and "P@0" in result.stdout
  for r in summary["runs"]:
    assert f"{r['name']} ({r['run_dir']}): keypoint on each object" in result.stdout


def test_runs_sharing_a_label_are_seeds_reported_as_mean_and_std(runs, tmp_path):
  out = tmp_path / "seeds"
  dirs = [runs / "transporter", runs / "jakab", runs / "zhang"]
  result = _run(["experiments.eval_tracking", "--run_dirs=" + ",".join(map(str, dirs)),
                 "--names=pair,pair,single", f"--out={out}", "--threshold=2",
                 "--horizons=0,3", "--gif_frames=3"])
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((out / "results.json").read_text())
  assert [r["name"] for r in summary["runs"]] == ["pair", "pair", "single"]
  pair, single = summary["models"]
  assert (pair["name"], pair["seeds"], single["seeds"]) == ("pair", 2, 1)
  assert "object_keypoints" not in pair and "object_keypoints" in summary["runs"][0]
  assert pair["run_dirs"] == [str(dirs[0]), str(dirs[1])]
  first, second, third = summary["runs"]
  for key in ("precision", "recall"):
    np.testing.assert_allclose(pair[key], np.mean([first[key], second[key]], axis=0))
    np.testing.assert_allclose(pair[f"{key}_std"], np.std([first[key], second[key]], axis=0))
    assert single[key] == third[key] and single[f"{key}_std"] == [None, None]
  for name, value in pair["per_object_recall"].items():
    assert value == pytest.approx((first["per_object_recall"][name]
                                   + second["per_object_recall"][name]) / 2)
  line = next(l for l in result.stdout.splitlines() if l.startswith("pair"))
  assert "(2 seeds)" in line and "+-" in line
  assert (out / "pair.gif").exists() and (out / "single.gif").exists()
  # Without --names, run folders of one name are an error, not silently seeds.
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "transporter").symlink_to(runs / "transporter")
  result = _run(["experiments.eval_tracking",
                 f"--run_dirs={runs / 'transporter'},{tmp_path / 'other' / 'transporter'}",
                 f"--out={tmp_path / 'eval'}"])
  assert result.returncode != 0 and "set --names" in result.stderr.strip().splitlines()[-1]


def test_runs_with_other_heldout_episodes_are_refused(runs, tmp_path):
  # The split is checked from the configs before any checkpoint is read.
  config = json.loads((runs / "transporter" / "config.json").read_text())
  config["dataset"]["heldout_episodes"] = 2
  (tmp_path / "two_heldout").mkdir()
  (tmp_path / "two_heldout" / "config.json").write_text(json.dumps(config))
  result = _run(["experiments.eval_tracking",
                 f"--run_dirs={runs / 'transporter'},{tmp_path / 'two_heldout'}",
                 f"--out={tmp_path / 'eval'}"])
  assert result.returncode != 0
  assert "holds out other episodes" in result.stderr.strip().splitlines()[-1]
  assert "Traceback" not in result.stderr


def test_missing_run_is_one_clear_error(tmp_path):
  result = _run(["experiments.eval_tracking", f"--run_dirs={tmp_path / 'nope'}",
                 f"--out={tmp_path / 'eval'}"])
  assert result.returncode != 0
  assert "is not a training run" in result.stderr.strip().splitlines()[-1]


def test_sweep_dir_prints_per_object_recall_for_every_run(runs, tmp_path):
  # The fixture's folder is a sweep of three runs; a subfolder without config.json is skipped
  # and a run without a checkpoint is listed as unfinished.
  (runs / "not_a_run").mkdir(exist_ok=True)
  unfinished = tmp_path / "sweep"
  result = _run(["experiments.eval_tracking", f"--sweep_dir={runs}", f"--out={unfinished}",
                 "--threshold=2"])
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((unfinished / "recall.json").read_text())
  assert [r["run"] for r in summary["runs"]] == ["jakab", "transporter", "zhang"]
  for row in summary["runs"]:
    assert set(row["per_object_recall"]) == {"sprite_0", "sprite_1"}
    assert row["finds_every_object"] == (min(row["per_object_recall"].values()) >= 0.9)
  hits = sum(r["finds_every_object"] for r in summary["runs"])
  assert f"{hits} of 3 runs put a keypoint on every object" in result.stdout
  for row in summary["runs"]:
    lines = result.stdout.splitlines()
    at = next(i for i, l in enumerate(lines) if l.startswith(row["run"] + " "))
    assert f"{row['per_object_recall']['sprite_0']:.2f}" in lines[at]
    # Under it, the keypoint on each object (the agents' --config.network.keypoints).
    _check_object_keypoints(row)
    found = row["object_keypoints"]["sprite_1"]
    assert "keypoint on each object" in lines[at + 1]
    assert f"sprite_1 k{found['keypoint']}" in lines[at + 1]
  # The keypoint named is, of the detector's keypoints, one on the object in the most frames.
  row = next(r for r in summary["runs"] if r["run"] == "transporter")
  _, heldout = evaluation.load_run(runs / "transporter")
  scored = evaluation.score_heldout(inference.load_detector(runs / "transporter"), heldout, 2.0)
  dist = np.linalg.norm(scored.keypoints[:, :, None] - scored.objects[:, None], axis=-1)
  shown = np.isfinite(scored.objects).all(-1).sum(0)
  on = (np.nan_to_num(dist, nan=np.inf) <= 2).sum(0) / shown  # [K, M]
  for m, name in enumerate(scored.object_names):
    k = row["object_keypoints"][name]["keypoint"]
    assert on[k, m] == on[:, m].max() == pytest.approx(row["object_keypoints"][name]["recall"])


def test_sweep_dir_without_runs_is_one_clear_error(tmp_path):
  result = _run(["experiments.eval_tracking", f"--sweep_dir={tmp_path}"])
  assert result.returncode != 0
  assert "holds no runs" in result.stderr.strip().splitlines()[-1]
  assert "Traceback" not in result.stderr


def test_seed_study_trains_and_scores_every_seed(sprites_dir, tmp_path):
  out = tmp_path / "study.json"
  result = _run(["experiments.seed_study", "--config=experiments/configs/sprites.py",
                 f"--config.dataset.path={sprites_dir}", "--config.model.image_size=(16, 16)",
                 "--config.model.num_keypoints=3", "--config.train.batch_size=4",
                 "--config.train.num_steps=6", "--seeds=3,4", "--log_every=3", "--threshold=2",
                 "--horizons=0,3", f"--out={out}"])
  assert result.returncode == 0, result.stderr[-3000:]
  study = json.loads(out.read_text())
  assert [s["seed"] for s in study["seeds"]] == [3, 4]
  for s in study["seeds"]:
    assert s["step"] == [3, 6] and len(s["loss"]) == 2 and len(s["keypoint_spread"]) == 2
    assert set(s["per_object_recall"]) == {"sprite_0", "sprite_1"}
    # eval_tracking's metrics, per seed.
    tracking = s["tracking"]
    assert tracking["horizons"] == [0, 3] and tracking["model_type"] == "transporter"
    assert tracking["per_object_recall"] == s["per_object_recall"]
    assert all(0 <= v <= 1 for v in tracking["precision"] + tracking["recall"])
  # Different seeds are different runs.
  assert study["seeds"][0]["loss"] != study["seeds"][1]["loss"]
  assert "seed 3:" in result.stdout and "of 2 seeds" in result.stdout
  assert "transporter (2 seeds)" in result.stdout and "R@3" in result.stdout
  plot = _run(["experiments.plot_seed_study", f"--study={out}", f"--out={tmp_path / 'c.png'}"])
  assert plot.returncode == 0, plot.stderr[-3000:]
  assert (tmp_path / "c.png").stat().st_size > 0
  bad = _run(["experiments.plot_seed_study", f"--study={out}", "--variants=nope",
              f"--out={tmp_path / 'd.png'}"])
  assert bad.returncode != 0 and "has no variant nope" in bad.stderr.strip().splitlines()[-1]


def test_out_that_is_a_file_is_one_clear_error(runs, tmp_path):
  (tmp_path / "file").write_text("x")
  result = _run(["experiments.eval_tracking", f"--run_dirs={runs / 'transporter'}",
                 f"--out={tmp_path / 'file'}"])
  assert result.returncode != 0
  assert "is a file, not a folder" in result.stderr.strip().splitlines()[-1]
  assert "Traceback" not in result.stderr
