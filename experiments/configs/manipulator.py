"""dm_control manipulator (bring_ball) keypoints on the Pong main job's CPU budget.

python -m experiments.collect_frames --env=dm_control/manipulator-bring_ball \
    --out=data/manipulator --episodes=12 --max_episode_frames=600
python -m experiments.train_transporter --config=experiments/configs/manipulator.py \
    --run_dir=runs/manipulator
"""

from experiments.configs import pong


def get_config():
  config = pong.get_config()
  config.dataset.path = "data/manipulator"
  return config
