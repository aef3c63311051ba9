"""keypoints.run_dir.prepare: which config changes a restart may make."""

import json

import ml_collections
import pytest

from keypoints import run_dir as run_dir_lib


def _config(**learner):
  return ml_collections.ConfigDict({"num_steps": 100, "learner": {"lr": 1e-3, **learner}})


def test_restart_takes_options_added_since_but_refuses_changed_ones(tmp_path):
  run_dir = tmp_path / "run"
  run_dir_lib.prepare(run_dir, _config(), resumable=("num_steps",))
  # A field the saved config lacks (an option added to the code since) is taken and written.
  newer = _config(new_option=0.5)
  newer.num_steps = 200
  run_dir_lib.prepare(run_dir, newer, resumable=("num_steps",))
  saved = json.loads((run_dir / run_dir_lib.CONFIG).read_text())
  assert saved["learner"]["new_option"] == 0.5 and saved["num_steps"] == 200
  # A field the run was started with may not change (unless resumable) ...
  with pytest.raises(run_dir_lib.RunDirError, match=r"differs in: learner.lr"):
    run_dir_lib.prepare(run_dir, _config(lr=1.0, new_option=0.5))
  # ... and neither may the added option, now that config.json has it.
  with pytest.raises(run_dir_lib.RunDirError, match=r"differs in: learner.new_option"):
    run_dir_lib.prepare(run_dir, _config(new_option=0.7), resumable=("num_steps",))
