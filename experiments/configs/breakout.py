"""Breakout keypoints on a CPU: the Pong recipe with the reconstruction error weighted per pixel.

python -m experiments.collect_frames --env=ALE/Breakout-v5 --out=data/breakout40 \
    --episodes=40 --max_episode_frames=600
python -m experiments.train_transporter --config=experiments/configs/breakout.py \
    --run_dir=runs/breakout

Breakout's ball is a 1x2-pixel dot at 80x80 on an empty field, and the random policy keeps it in
play in about three frames of four. With the plain mean squared error the Pong recipe never put
a keypoint on it (held-out recall 0.05-0.12 over seeds, with 12 or 40 episodes of data): the
paddle's row and the score, which change in most frames, dominate the error. Weighting each
pixel by the inverse of its variance over the training frames (`train.loss_weighting`, see
keypoints/configs.py) makes an error on the rarely visited field count as much as one on the
paddle's row; the README ("Robustness over seeds") has the recall of every seed.
"""

from experiments.configs import pong


def get_config():
  config = pong.get_config()
  config.model.blank_top_rows = 0  # its documented detectors (README) were trained seeing every row
  config.dataset.path = "data/breakout40"
  config.train.loss_weighting = "inverse_std"
  return config
