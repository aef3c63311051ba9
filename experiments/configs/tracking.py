"""The tracking comparison's budget on any dataset: the earlier main job (K = 5, batch 16, 1,200 steps).

  python -m experiments.train_transporter --config=experiments/configs/tracking.py:mspacman \
      --config.model.model_type=zhang --run_dir=runs/mspacman_zhang

The argument after the colon names the dataset folder under data/ (default "pong"); collect it
with experiments/collect_frames.py (see the README's tracking section for the exact commands).
"""

from experiments.configs import pong


def get_config(dataset: str = "pong"):
  config = pong.get_config()
  config.dataset.path = f"data/{dataset}"
  # Pinned to the budget of the README's tracking table, measured before the main job's recipe
  # moved to K = 8 at batch 8 for 5,000 steps and blanked Pong's score rows.
  config.model.num_keypoints = 5
  config.model.blank_top_rows = 0
  config.train.batch_size = 16
  config.train.num_steps = 1200
  config.image_every = 200
  return config
