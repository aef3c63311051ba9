"""Breakout keypoints for agents: breakout.py's recipe on a chasing paddle's frames, score blanked.

python -m experiments.collect_frames --env=ALE/Breakout-v5 --out=data/breakout_chase \
    --policy=chase --episodes=20 --max_episode_frames=1500
python -m experiments.train_transporter --config=experiments/configs/breakout_chase.py \
    --run_dir=runs/breakout_chase_k16/seed=0

A detector trained on random play (breakout.py) sees a full brick wall, a score below 10 and a
ball that is lost within a few bounces. An agent that learns to return the ball plays on into
frames random play never shows: a broken wall, two-digit scores, long rallies. On 5,000 steps of
the chasing paddle (probe_detector --policy=chase) the random-play detector's keypoints stay on
the paddle in 0.885 and on the ball in 0.691 of the frames; trained on the chasing paddle's own
frames (16,446 frames, 20 games up to 1,444 frames, scores up to 42), 0.98-1.00 and 0.87-0.95
over seeds 0-4 (0.95-1.00 and 0.84-0.97 on random play). The score and lives (rows 2-5 at 80x80) are blanked
(`model.blank_top_rows`), so that the changing digits cannot draw a keypoint; the field starts
below the top wall (rows 6-11). Sixteen keypoints: at breakout.py's 8 only seed 0 of seeds
0-2 finds both objects, the others park their keypoints on the brick wall's bottom edge (a
chasing paddle keeps the ball in play, and breaking bricks change the frame), and neither 7,000
steps nor `train.max_offset=5` rescues them. At 16 every one of seeds 0-4 does (held-out
paddle / ball 1.00 / 0.96-0.98), about twelve keypoints on the wall and the rest free for the
paddle and ball. The 8-keypoint detector of KeyQN's first chasing-play run (21.0): add
`--config.model.num_keypoints=8`. README, "KeyQN on Breakout's chasing-play detector".
"""

from experiments.configs import breakout


def get_config():
  config = breakout.get_config()
  config.model.blank_top_rows = 8
  config.dataset.path = "data/breakout_chase"
  config.model.num_keypoints = 16
  return config
