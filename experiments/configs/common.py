"""Pieces shared by the training configs."""

import ml_collections

from keypoints import configs


def transporter_config(dataset_path: str, **model_overrides) -> ml_collections.ConfigDict:
  """A full training config: dataset, model, optimisation and logging cadence."""
  config = ml_collections.ConfigDict()
  config.dataset = ml_collections.ConfigDict(dict(
      path=dataset_path,  # folder written by experiments/collect_frames.py
      heldout_episodes=1,  # the last episodes; never trained on, used for pictures
      max_episodes=-1,  # -1: all
  ))
  config.model = configs.model_config(model_overrides.pop("arch", "deepmind"), **model_overrides)
  config.train = configs.train_config()
  config.log_every = 50
  config.image_every = 500
  config.checkpoint_every = 500
  config.gif_frames = 60
  return config
