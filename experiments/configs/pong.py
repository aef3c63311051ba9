"""Pong keypoints on a CPU in about 15 minutes (the README's main job).

python -m experiments.train_transporter --config=experiments/configs/pong.py --run_dir=runs/pong
"""

from experiments.configs import common


def get_config():
  config = common.transporter_config("data/pong", arch="deepmind", num_keypoints=4,
                                     image_size=(80, 80))
  config.train.batch_size = 16
  config.train.learning_rate = 2e-3  # a short CPU budget: twice the paper's rate
  config.train.num_steps = 1200
  config.image_every = 200
  return config
