"""Seaquest keypoints on a CPU: the Pong recipe, carried on to 7,000 steps as for Ms. Pac-Man.

python -m experiments.collect_frames --env=ALE/Seaquest-v5 --out=data/seaquest \
    --episodes=12 --max_episode_frames=600
python -m experiments.train_transporter --config=experiments/configs/seaquest.py \
    --run_dir=runs/seaquest

Many things move here (the submarine, sharks, enemy submarines, divers, torpedoes), but the
RAM ground truth knows only the player's submarine, so the recall reported is the
submarine's. Lanes of sharks and divers enter and leave the screen, so K = 8 keypoints leave
room for them beside the submarine.
"""

from experiments.configs import pong


def get_config():
  config = pong.get_config()
  config.model.blank_top_rows = 0  # its documented detectors (README) were trained seeing every row
  config.dataset.path = "data/seaquest"
  config.train.num_steps = 7000
  return config
