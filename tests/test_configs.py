"""Every config file under experiments/configs loads and passes its binary's checks, and the
commands in its docstring name the dataset it reads."""

import importlib
import pkgutil
import re

import numpy as np
import pytest

from experiments import configs as configs_pkg
from experiments import harness
from keypoints import configs as configs_lib
from keypoints import data
from keypoints import ground_truth
from rl import agents
from rl import envs
from rl import options

_MODULES = sorted(m.name for m in pkgutil.iter_modules(configs_pkg.__path__)
                  if m.name != "common")
_TRANSPORTER = [name for name in _MODULES if name not in ("agent", "explore")]


def _module(name):
  return importlib.import_module(f"experiments.configs.{name}")


def test_every_config_file_is_covered():
  # A config added later is checked below without a change here; this pins that the listing
  # found the files at all (and the game configs among them).
  assert {"agent", "explore", "pong", "breakout", "mspacman", "seaquest",
          "frostbite"} <= set(_MODULES)


@pytest.mark.parametrize("name", _TRANSPORTER)
def test_transporter_config_passes_the_training_checks(name):
  config = _module(name).get_config()
  configs_lib.validate(config.model, config.train)
  harness.validate_cadence(config)
  assert config.train.num_steps >= 1


@pytest.mark.parametrize("name", _TRANSPORTER)
def test_docstring_commands_match_the_config(name):
  module = _module(name)
  doc = module.__doc__ or ""
  assert f"--config=experiments/configs/{name}.py" in doc, (
      f"{name}.py's docstring does not show how to train with it")
  # Where the docstring collects the dataset, the config must read the folder it writes.
  collected = re.findall(r"collect_frames [^\n]*--out=(\S+)", doc)
  if collected:
    assert module.get_config().dataset.path == collected[0]


@pytest.mark.parametrize("agent", agents.AGENTS)
def test_agent_config_passes_the_agent_checks(agent):
  config = _module("agent").get_config()
  config.agent = agent
  agents.validate(agents.with_agent_defaults(config))
  harness.validate_cadence(config)


def test_explore_config_passes_the_explorer_checks():
  config = _module("explore").get_config()
  config.keypoint_run = "runs/any"  # the keypoints explorer refuses to start without one
  options.validate_config(config)
  harness.validate_cadence(config)


# The game configs that blank their score's rows, the ALE game each reads, and the policy whose
# play changes the score within a short game.
_BLANKING = [("pong", "ALE/Pong-v5", envs.POLICY), ("breakout_chase", "ALE/Breakout-v5", "chase")]


@pytest.mark.parametrize("name,env_id,policy", _BLANKING)
def test_config_blanks_the_score_and_nothing_that_moves(name, env_id, policy):
  # A real game at the config's image size: every pixel that changes away from the game's
  # objects (the score's digits) lies in the blanked rows, every change at an object lies below
  # them, and the blanked rows end above the field where the objects can be (ground_truth's
  # field, raw rows). At 80x80 Pong draws its score in rows 0-7 and its field starts at raw row
  # 34, inside row 12, so any value from 8 to 12 passes; Breakout draws score and lives in rows
  # 2-5 and its field starts below the top wall at raw row 32, so any value from 6 to 12 passes
  # (a chasing paddle keeps the ball in play long enough to break bricks).
  config = _module(name).get_config()
  rows, size = config.model.blank_top_rows, tuple(config.model.image_size)
  frames, truth = envs.collect_episode(env_id, seed=0, max_frames=2000, height=size[0],
                                       width=size[1], policy=policy)
  raw = (ground_truth.RAW_HEIGHT, ground_truth.RAW_WIDTH)
  centres = data.resize_points(ground_truth.atari_positions(env_id, truth["ram"]), raw, size)
  # The reset frame draws no walls yet: changes are counted from the first step on.
  changed = np.abs(np.diff(frames[1:].astype(np.int32), axis=0)).sum(-1) > 0  # [T-2, H, W]
  ys, xs = np.mgrid[:size[0], :size[1]]
  at_object = np.zeros_like(changed)
  for t in range(len(changed)):
    for x, y in np.concatenate([centres[t + 1], centres[t + 2]]):
      if not np.isnan(x):  # within the sprite's extent (a Pong paddle spans 6 rows, a
        # Breakout paddle 8 columns) and a margin; a brick breaks where the ball is
        at_object[t] |= (np.abs(xs - x) <= 5) & (np.abs(ys - y) <= 5)
  score_rows = np.nonzero((changed & ~at_object).any(axis=(0, 2)))[0]
  object_rows = np.nonzero((changed & at_object).any(axis=(0, 2)))[0]
  assert len(score_rows), "the score never changed"
  assert score_rows.max() < rows, (score_rows, rows)
  assert object_rows.min() >= rows, (object_rows.min(), rows)
  field_top = ground_truth.field(env_id)[1]
  assert rows * ground_truth.RAW_HEIGHT / size[0] <= field_top, (rows, field_top)
