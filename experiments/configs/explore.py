"""Exploration by controlling keypoints, or a random-action explorer (README, "Exploration").

python -m experiments.explore --config=experiments/configs/explore.py \
    --config.keypoint_run=runs/montezuma --run_dir=runs/explore_montezuma
python -m experiments.explore --config=experiments/configs/explore.py \
    --config.explorer=random --run_dir=runs/random_montezuma

No extrinsic reward is used for learning. The K x 4 heads (rl.options) are small KeyQN networks
trained by one-step double DQN from one shared replay; settings below, each choice in the README.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.explorer = "keypoints"  # "keypoints" | "random"
  config.env_id = "ALE/MontezumaRevenge-v5"
  config.keypoint_run = ""  # Transporter run directory (keypoints explorer only)
  config.seed = 0  # population member s uses seed + s
  config.num_seeds = 1
  config.num_steps = 100_000  # agent steps per member (4 emulator frames each)
  config.history = 2  # keypoint records per head input: position and its last change

  config.network = ml_collections.ConfigDict(dict(
      embed_sizes=(32,),  # the per-keypoint embedding of every head
      hidden_sizes=(128,),  # the MLP over all embeddings of every head
  ))
  config.learner = ml_collections.ConfigDict(dict(
      batch_size=32,
      learning_rate=3e-4,
      adam_eps=1.5e-4,
      discount=0.9,  # a horizon of about 10 steps, half an option
      double=True,
      loss="huber",
      min_replay=2000,  # random actions (and no updates) before this many agent steps
      update_period=4,  # agent steps per update of all heads
      target_update_period=500,  # updates per target-network copy
      replay_capacity=100_000,
  ))
  config.options = ml_collections.ConfigDict(dict(
      length=20,  # agent steps an option is followed (fewer if the game ends)
      choice="controllable",  # "controllable" (top keypoints by Q_gap) | "uniform"
      top_keypoints=2,  # "controllable": options of the keypoints with the largest Q_gap
      epsilon=0.1,  # random primitive actions while following an option
  ))
  config.coverage_bin = 8  # raw-screen pixels per bin of player positions (and rooms' cells)
  config.log_every = 1000
  config.checkpoint_every = 10_000
  config.video_steps = 400  # agent steps of member 0 in images/options.gif (the last ones)
  return config
