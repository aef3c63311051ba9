"""The paper's architecture (appendix sizes) on any collected dataset.

python -m experiments.train_transporter --config=experiments/configs/paper.py \
    --config.dataset.path=data/pong --run_dir=runs/pong_paper
"""

from experiments.configs import common


def get_config():
  config = common.transporter_config("data/pong", arch="paper", num_keypoints=4,
                                     image_size=(80, 80))
  config.train.batch_size = 32
  config.train.num_steps = 100_000
  return config
