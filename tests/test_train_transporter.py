"""End to end: the training binary, its pictures, checkpoints, resume and bad input."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from keypoints import inference

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _cmd(dataset, run_dir, *extra, steps=60, size=16):
  return [sys.executable, "-m", "experiments.train_transporter",
          "--config=experiments/configs/sprites.py", f"--config.dataset.path={dataset}",
          f"--run_dir={run_dir}", f"--config.model.image_size=({size}, {size})",
          "--config.model.num_keypoints=3", "--config.train.batch_size=4",
          f"--config.train.num_steps={steps}", "--config.checkpoint_every=10",
          "--config.image_every=15", "--config.log_every=5", "--config.gif_frames=8", *extra]


def _run(cmd, **kwargs):
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, **kwargs)


def _final(run_dir, step):
  manager = ocp.CheckpointManager(pathlib.Path(run_dir, "checkpoints").absolute())
  return manager.restore(step, args=ocp.args.StandardRestore())


def _wait_for_checkpoint(run_dir, step, proc, timeout=240):
  path = pathlib.Path(run_dir, "checkpoints", str(step))
  start = time.time()
  while not path.is_dir():
    assert proc.poll() is None, proc.communicate()
    assert time.time() - start < timeout
    time.sleep(0.05)


@pytest.fixture(scope="module")
def finished_run(sprites_dir, tmp_path_factory):
  run_dir = tmp_path_factory.mktemp("runs") / "full"
  result = _run(_cmd(sprites_dir, run_dir))
  assert result.returncode == 0, result.stderr[-3000:]
  return run_dir


def test_run_writes_metrics_pictures_and_checkpoints(finished_run):
  rows = (finished_run / "metrics.csv").read_text().splitlines()
  header = rows[0].split(",")
  assert header[0] == "step" and {"loss", "heldout_loss", "keypoint_spread"} <= set(header)
  assert len(rows) == 1 + 12  # every 5 of 60 steps
  assert list(finished_run.glob("events.out.tfevents.*"))
  assert (finished_run / "images" / "keypoints_0000015.gif").stat().st_size > 0
  assert (finished_run / "images" / "reconstruction_0000060.png").stat().st_size > 0
  steps = sorted(int(p.name) for p in (finished_run / "checkpoints").iterdir() if p.name.isdigit())
  assert steps[-1] == 60
  assert (finished_run / "config.json").is_file()


def test_resume_after_kill_is_bit_exact(sprites_dir, finished_run, tmp_path):
  run_dir = tmp_path / "killed"
  proc = subprocess.Popen(_cmd(sprites_dir, run_dir), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  _wait_for_checkpoint(run_dir, 10, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not pathlib.Path(run_dir, "checkpoints", "60").exists()  # killed before the end
  result = _run(_cmd(sprites_dir, run_dir))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Restoring checkpoint" in result.stderr
  resumed, full = _final(run_dir, 60), _final(finished_run, 60)
  for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(full)):
    np.testing.assert_array_equal(a, b)


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(sprites_dir, tmp_path):
  run_dir = tmp_path / "term"
  proc = subprocess.Popen(_cmd(sprites_dir, run_dir, steps=100000), cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  _wait_for_checkpoint(run_dir, 10, proc)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-3000:]
  assert "Received signal 15" in err
  saved = [int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()]
  last = max(saved)
  assert 10 <= last < 100000
  # The checkpoint is the step reached when the signal came, not only the last multiple of 10.
  assert f"Stopped at step {last}" in err


@pytest.mark.parametrize("extra, size, message", [
    (["--config.model.num_keypoints=0"], 16, "num_keypoints (K) must be >= 1"),
    (["--config.train.min_offset=5", "--config.train.max_offset=2"], 16,
     "offset range is inverted"),
    ([], 32, "but config.model.image_size is (32, 32)"),
])
def test_bad_config_is_one_clear_error(sprites_dir, tmp_path, extra, size, message):
  result = _run(_cmd(sprites_dir, tmp_path / "bad", *extra, size=size))
  assert result.returncode != 0
  assert message in result.stderr.strip().splitlines()[-1]
  assert "Traceback" not in result.stderr


def test_missing_dataset_is_one_clear_error(tmp_path):
  result = _run(_cmd(tmp_path / "absent", tmp_path / "run"))
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1].startswith("error: dataset folder")
  assert "Traceback" not in result.stderr


def test_detector_on_raw_frames(finished_run, sprites_dir):
  from keypoints import data as data_lib  # pylint: disable=g-import-not-at-top
  frames = data_lib.load_dataset(sprites_dir).frames[:5]
  detect = inference.load_detector(finished_run)
  xy = detect(frames)
  assert xy.shape == (5, 3, 2) and xy.dtype == np.float32
  assert np.all((xy > -1) & (xy < 16))
  # Frames 4x larger (nearest) resize back to exactly these frames: pixels scale by 4.
  big = np.repeat(np.repeat(frames, 4, axis=1), 4, axis=2)
  np.testing.assert_allclose(detect(big), (xy + 0.5) * 4 - 0.5, atol=1e-4)
  xy2, feats = detect.features(frames)
  np.testing.assert_allclose(xy2, xy, atol=1e-5)
  assert feats.shape == (5, 3, 32) and np.isfinite(feats).all()


@pytest.mark.parametrize("bad, message", [
    (np.zeros((16, 16, 3), np.uint8), "got one frame"),
    (np.zeros((2, 16, 16, 4), np.uint8), "must be uint8 \\[N, H, W, 3\\]"),
    (np.zeros((2, 16, 16, 3), np.float32), "must be uint8"),
])
def test_detector_rejects_bad_frames(finished_run, bad, message):
  detect = inference.load_detector(finished_run)
  with pytest.raises(ValueError, match=message):
    detect(bad)


def test_unknown_model_is_one_clear_error(sprites_dir, tmp_path):
  result = _run(_cmd(sprites_dir, tmp_path / "bad", "--model=vae"))
  assert result.returncode != 0
  assert "vae" in result.stderr and "Traceback" not in result.stderr
