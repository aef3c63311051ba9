"""Ms. Pac-Man keypoints on the Pong main job's CPU budget (model and optimisation as pong.py).

python -m experiments.collect_frames --env=ALE/MsPacman-v5 --out=data/mspacman --episodes=12 \
    --max_episode_frames=600
python -m experiments.train_transporter --config=experiments/configs/mspacman.py \
    --run_dir=runs/mspacman
"""

from experiments.configs import pong


def get_config():
  config = pong.get_config()
  config.dataset.path = "data/mspacman"
  return config
