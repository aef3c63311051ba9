"""Frostbite keypoints on a CPU: the Pong recipe with Breakout's per-pixel error weighting.

python -m experiments.collect_frames --env=ALE/Frostbite-v5 --out=data/frostbite \
    --episodes=12 --max_episode_frames=600
python -m experiments.train_transporter --config=experiments/configs/frostbite.py \
    --run_dir=runs/frostbite

Four rows of ice floes, far larger than the man, move in every frame. Under the tracking
comparison's budget (K = 5, plain squared error) every keypoint rode the floes and none the
man (README, "Tracking"). Here K = 8 leaves keypoints to spare beyond the floes, and weighting
each pixel by the inverse of its variance over the training frames (as for Breakout's ball)
makes an error where the floes always pass count less than one on the man, who is rarely at
any one place. Measured (recall of the man on held-out frames, 7,000 steps): 0.94 for
training seeds 0 and 1, and 0.09 for seed 0 with the plain squared error, so the weighting is
what finds him.
"""

from experiments.configs import pong


def get_config():
  config = pong.get_config()
  config.model.blank_top_rows = 0  # its documented detectors (README) were trained seeing every row
  config.dataset.path = "data/frostbite"
  config.train.loss_weighting = "inverse_std"
  config.train.num_steps = 7000
  return config
