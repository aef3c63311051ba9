"""A tiny Transporter on the synthetic sprites video (seconds on a CPU).

python -m experiments.train_transporter --config=experiments/configs/sprites.py \
    --config.dataset.path=/tmp/sprites --run_dir=/tmp/runs/sprites
(make the dataset with `python -m experiments.make_sprites --out=/tmp/sprites`).
"""

from experiments.configs import common


def get_config():
  config = common.transporter_config("data/sprites", arch="deepmind", num_keypoints=4,
                                     image_size=(32, 32))
  config.train.batch_size = 16
  config.train.learning_rate = 2e-3
  config.train.max_offset = 10
  config.train.num_steps = 600
  config.log_every = 25
  config.image_every = 200
  config.checkpoint_every = 200
  return config
