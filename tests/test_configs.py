"""Every config file under experiments/configs loads and passes its binary's checks, and the
commands in its docstring name the dataset it reads."""

import importlib
import pkgutil
import re

import pytest

from experiments import configs as configs_pkg
from experiments import harness
from keypoints import configs as configs_lib
from rl import agents
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
