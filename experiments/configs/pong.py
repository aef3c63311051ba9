"""Pong keypoints on a CPU in about 15 minutes (the README's main job).

python -m experiments.train_transporter --config=experiments/configs/pong.py --run_dir=runs/pong

Short-budget choices (measured on 2 CPU cores): the frames are centred on the mean training
frame (the default), which lets keypoints find Pong's small sprites at all; K = 5 and a keypoint
std of 0.15 put keypoints on both paddles, where K = 4 and std 0.1 found only the agent's paddle.
The ball (2x2 pixels at 80x80) is found between 1,200 steps (held-out recall 0.06) and 2,000
(0.97); 2,000 steps take about 13 minutes.
"""

from experiments.configs import common


def get_config():
  config = common.transporter_config("data/pong", arch="deepmind", num_keypoints=5,
                                     image_size=(80, 80), gauss_std=0.15)
  config.train.batch_size = 16
  config.train.learning_rate = 2e-3  # a short CPU budget: twice the paper's rate
  config.train.num_steps = 2000
  config.image_every = 200
  return config
