"""End to end: the training binary, its pictures, checkpoints, resume and bad input."""

import json
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from keypoints import inference
from keypoints import run_dir as run_dir_lib

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
  steps = run_dir_lib.checkpoint_steps(finished_run)
  assert steps[-1] == 60
  assert (finished_run / "config.json").is_file()


def _metric_steps(run_dir):
  return [int(r.split(",")[0]) for r in (run_dir / "metrics.csv").read_text().splitlines()[1:]]


def _steps_run(stderr):
  """(first step, steps run) of a training process, from its closing log line."""
  match = re.search(r"Stopped at step (\d+) after (\d+) steps in this process", stderr)
  assert match, stderr[-2000:]
  return int(match.group(1)) - int(match.group(2)), int(match.group(2))


def test_resume_after_kill_continues_from_the_checkpoint_bit_exactly(sprites_dir, finished_run,
                                                                      tmp_path,
                                                                      assert_same_checkpoint):
  run_dir = tmp_path / "killed"
  proc = subprocess.Popen(_cmd(sprites_dir, run_dir), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  _wait_for_checkpoint(run_dir, 20, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  saved = run_dir_lib.checkpoint_steps(run_dir)
  assert 60 not in saved  # killed before the end
  result = _run(_cmd(sprites_dir, run_dir))
  assert result.returncode == 0, result.stderr[-3000:]
  # The resumed process started at the newest checkpoint and ran only the remaining steps
  # (a resume that ignored the checkpoint would run all 60 and still end bit-identical).
  first, ran = _steps_run(result.stderr)
  assert first == max(saved) >= 20 and ran == 60 - max(saved)
  assert_same_checkpoint(run_dir, finished_run, 60)
  # Rows logged between the checkpoint and the kill were dropped, then logged again once.
  assert _metric_steps(run_dir) == _metric_steps(finished_run) == list(range(5, 61, 5))


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(sprites_dir, tmp_path):
  run_dir = tmp_path / "term"
  proc = subprocess.Popen(_cmd(sprites_dir, run_dir, steps=100000), cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  _wait_for_checkpoint(run_dir, 10, proc)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-3000:]
  assert "Received signal 15" in err
  saved = run_dir_lib.checkpoint_steps(run_dir)
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
    (np.zeros((1, 0, 0, 3), np.uint8), "must be non-empty"),
])
def test_detector_rejects_bad_frames(finished_run, bad, message):
  detect = inference.load_detector(finished_run)
  with pytest.raises(ValueError, match=message):
    detect(bad)


def test_unknown_model_is_one_clear_error(sprites_dir, tmp_path):
  result = _run(_cmd(sprites_dir, tmp_path / "bad", "--config.model.model_type=vae"))
  assert result.returncode != 0
  assert "vae" in result.stderr and "Traceback" not in result.stderr


def test_raising_num_steps_extends_a_finished_run(sprites_dir, finished_run, tmp_path):
  run_dir = tmp_path / "extended"
  shutil.copytree(finished_run, run_dir)
  result = _run(_cmd(sprites_dir, run_dir, steps=70))
  assert result.returncode == 0, result.stderr[-3000:]
  assert _steps_run(result.stderr) == (60, 10)
  assert json.loads((run_dir / "config.json").read_text())["train"]["num_steps"] == 70
  assert _metric_steps(run_dir)[-3:] == [60, 65, 70]


def test_changing_the_model_on_resume_is_refused(sprites_dir, finished_run, tmp_path):
  run_dir = tmp_path / "changed"
  shutil.copytree(finished_run, run_dir)
  result = _run(_cmd(sprites_dir, run_dir, "--config.model.gauss_std=0.2"))
  assert result.returncode != 0
  last = result.stderr.strip().splitlines()[-1]
  assert "different config (differs in: model.gauss_std)" in last


def _truncate_checkpoint(run_dir, step):
  for path in pathlib.Path(run_dir, "checkpoints", str(step)).rglob("*"):
    if path.is_file():
      path.write_bytes(path.read_bytes()[:7])


def test_truncated_latest_checkpoint_falls_back_with_one_warning(sprites_dir, finished_run,
                                                                tmp_path,
                                                                assert_same_checkpoint):
  run_dir = tmp_path / "truncated"
  shutil.copytree(finished_run, run_dir)
  _truncate_checkpoint(run_dir, 60)
  # The detector skips it (one warning line) and loads step 50.
  probe = _run([sys.executable, "-c", "from keypoints import inference; import numpy as np; "
                f"d = inference.load_detector({str(run_dir)!r}); "
                "print(d(np.zeros((1, 16, 16, 3), np.uint8)).shape)"])
  assert probe.returncode == 0, probe.stderr[-3000:]
  assert "(1, 3, 2)" in probe.stdout
  warnings = [l for l in probe.stderr.splitlines() if "cannot be read" in l]
  assert len(warnings) == 1 and "step 60" in warnings[0]
  assert "falling back to step 50" in warnings[0]
  assert "Traceback" not in probe.stderr
  # Training resumes from step 50, keeps the unreadable one aside and ends bit-identical.
  result = _run(_cmd(sprites_dir, run_dir))
  assert result.returncode == 0, result.stderr[-3000:]
  assert _steps_run(result.stderr) == (50, 10)
  assert (run_dir / "unreadable_checkpoints" / "60").is_dir()
  assert_same_checkpoint(run_dir, finished_run, 60)


def test_no_readable_checkpoint_is_one_clear_error(finished_run, tmp_path):
  run_dir = tmp_path / "all_bad"
  shutil.copytree(finished_run, run_dir)
  for step in (40, 50, 60):
    _truncate_checkpoint(run_dir, step)
  (run_dir / "checkpoints" / "70").mkdir()  # an empty step folder too
  with pytest.raises(ValueError, match="no readable checkpoint"):
    inference.load_detector(run_dir)


def test_nan_stops_the_run_naming_the_step_and_saves_nothing_non_finite(sprites_dir, tmp_path,
                                                                         restore_checkpoint):
  run_dir = tmp_path / "nan"
  # A checkpoint is due at every step, so one is attempted after the parameters blew up.
  result = _run(_cmd(sprites_dir, run_dir, "--config.train.learning_rate=1e30",
                     "--config.checkpoint_every=1", "--config.log_every=1"))
  assert result.returncode != 0
  last = result.stderr.strip().splitlines()[-1]
  match = re.match(r"error: the loss is (nan|inf) at step (\d+): training diverged .*; "
                   r"nothing after step (\d+) was saved$", last)
  assert match, last
  assert "Traceback" not in result.stderr
  saved = run_dir_lib.checkpoint_steps(run_dir)
  # Every step before the first bad loss was saved, and nothing from it on.
  assert saved and saved == list(range(1, int(match[2]))) and saved[-1] == int(match[3])
  for step in saved:
    restored = restore_checkpoint(run_dir, step)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(restored["params"]))


def test_non_finite_checkpoints_are_never_written(tmp_path):
  manager = run_dir_lib.checkpoint_manager(tmp_path, max_to_keep=2)
  good = {"params": {"w": jax.numpy.ones(3)}, "batch_stats": {}}
  for step in (10, 20):
    run_dir_lib.save(manager, step, good)
  for step in (30, 40, 50):  # would rotate both good ones out
    with pytest.raises(run_dir_lib.NonFiniteError, match=f"not saving step {step}"):
      run_dir_lib.save(manager, step, {"params": {"w": jax.numpy.array([1, np.nan, 1])},
                                       "batch_stats": {}})
  manager.wait_until_finished()
  abstract = {"params": {"w": jax.ShapeDtypeStruct((3,), np.float32)}, "batch_stats": {}}
  step, variables = run_dir_lib.restore_params(tmp_path, abstract)
  assert step == 20 and np.isfinite(variables["params"]["w"]).all()


def test_second_process_on_a_live_run_directory_is_refused(sprites_dir, tmp_path):
  run_dir = tmp_path / "busy"
  proc = subprocess.Popen(_cmd(sprites_dir, run_dir, steps=100000), cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    _wait_for_checkpoint(run_dir, 10, proc)
    result = _run(_cmd(sprites_dir, run_dir, steps=100000))
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "is in use by another process" in last and str(proc.pid) in last
  finally:
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)


@pytest.mark.parametrize("extra, message", [
    (["--config.train.batch_sizee=3"], "batch_sizee"),
    (["--config=experiments/configs/absent.py"], "absent.py"),
    (["--config.checkpoint_every=0"], "checkpoint_every must be >= 1"),
    (["--config.model.norm=group"], "norm must be one of"),
    (["--config.model.softmax=3d"], "softmax must be one of"),
])
def test_bad_flags_are_one_line_and_write_nothing(sprites_dir, tmp_path, extra, message):
  run_dir = tmp_path / "bad"
  result = _run(_cmd(sprites_dir, run_dir, *extra))
  assert result.returncode != 0
  lines = result.stderr.strip().splitlines()
  assert lines[-1].startswith("error:") and message in lines[-1], lines[-1]
  assert "Traceback" not in result.stderr
  assert not (run_dir / "config.json").exists()


def test_corrupt_episode_is_one_clear_error(sprites_dir, tmp_path):
  data = tmp_path / "data"
  shutil.copytree(sprites_dir, data)
  episode = data / "episode_000001.npz"
  raw = bytearray(episode.read_bytes())
  for i in range(200, len(raw) - 200, 97):  # flip bits inside the compressed arrays
    raw[i] ^= 0xFF
  episode.write_bytes(bytes(raw))
  result = _run(_cmd(data, tmp_path / "run"))
  assert result.returncode != 0
  last = result.stderr.strip().splitlines()[-1]
  assert "episode_000001.npz is corrupt" in last and "Traceback" not in result.stderr


def test_detector_restores_without_building_an_optimizer(finished_run, monkeypatch):
  from keypoints import train as train_lib  # pylint: disable=g-import-not-at-top

  def no_optimizer(*args, **kwargs):
    raise AssertionError("load_detector built an optimizer")

  monkeypatch.setattr(train_lib, "build_optimizer", no_optimizer)
  monkeypatch.setattr(train_lib, "create_train_state", no_optimizer)
  detect = inference.load_detector(finished_run)
  assert np.isfinite(detect(np.zeros((1, 16, 16, 3), np.uint8))).all()


def test_several_steps_per_dispatch_take_the_same_steps(sprites_dir, finished_run, tmp_path,
                                                         restore_checkpoint):
  # The accelerator path (lax.scan over 5 steps a call), forced on the CPU: the same pairs and
  # updates as one step a call, so the same logs on the same steps. Only float rounding may
  # differ (a loop body can fuse differently): about 1e-5 of the loss over the first 20 steps;
  # Adam then amplifies it (it divides each gradient entry by its own size): under 1% by step
  # 40, and by step 60 from 2e-3 (optimised machine code) to 2.6% (the suite's unoptimised).
  run_dir = tmp_path / "chunked"
  result = _run(_cmd(sprites_dir, run_dir, "--steps_per_dispatch=5"))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "5 step(s) per dispatch" in result.stderr
  assert _metric_steps(run_dir) == _metric_steps(finished_run)

  def column(run, name):
    rows = [r.split(",") for r in (run / "metrics.csv").read_text().splitlines()]
    return np.array([float(r[rows[0].index(name)]) for r in rows[1:]])

  for name in ("loss", "heldout_loss", "keypoint_spread"):
    for rows, rtol in ((4, 1e-4), (8, 2e-2), (None, 1e-1)):  # to steps 20, 40, 60
      np.testing.assert_allclose(column(run_dir, name)[:rows], column(finished_run, name)[:rows],
                                 rtol=rtol)
  a, b = restore_checkpoint(run_dir, 60), restore_checkpoint(finished_run, 60)
  assert int(a["step"]) == 60
  np.testing.assert_array_equal(a["key"], b["key"])  # the same pairs were drawn


def test_steps_per_dispatch_that_split_a_period_are_one_error_line(sprites_dir, tmp_path):
  result = _run(_cmd(sprites_dir, tmp_path / "bad", "--steps_per_dispatch=4"))
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1] == (
      "error: config.log_every (5) is not a multiple of --steps_per_dispatch (4)")
  assert not (tmp_path / "bad").exists()
