"""The Pong main job's model (pong.py) at 1,200 steps, on any dataset: the tracking comparison.

  python -m experiments.train_transporter --config=experiments/configs/tracking.py:mspacman \
      --model=zhang --run_dir=runs/mspacman_zhang

The argument after the colon names the dataset folder under data/ (default "pong"); collect it
with experiments/collect_frames.py (see the README's tracking section for the exact commands).
"""

from experiments.configs import pong


def get_config(dataset: str = "pong"):
  config = pong.get_config()
  config.dataset.path = f"data/{dataset}"
  config.train.num_steps = 1200  # the budget of the README's tracking table
  return config
