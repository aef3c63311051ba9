"""Pong keypoints on an accelerator: the main job's model at batch 32 for 10,000 steps.

python -m experiments.train_transporter --config=experiments/configs/pong_long.py \
    --run_dir=runs/pong_long

Measured on one NVIDIA H200 (experiments.seed_study, 5 seeds): every seed put a keypoint on the
player, the enemy and the ball in >= 99% of held-out frames (README, "Robustness over seeds").
K = 5 as in the earlier main job: with 16x the pairs of the CPU budget, the spare keypoints the
CPU recipe needs are not needed. A run took 80-220 s in experiments.seed_study on the H200
(100 steps per dispatch, six other studies sharing the GPU); the training binary dispatches one
step at a time and also draws pictures and checkpoints, so expect longer there.
"""

from experiments.configs import common


def get_config():
  config = common.transporter_config("data/pong", arch="deepmind", num_keypoints=5,
                                     image_size=(80, 80), gauss_std=0.15)
  config.train.batch_size = 32
  config.train.learning_rate = 2e-3
  config.train.num_steps = 10_000
  config.image_every = 1000
  config.checkpoint_every = 1000
  return config
