"""Ms. Pac-Man keypoints on a CPU: the Pong recipe, carried on to 7,000 steps.

python -m experiments.collect_frames --env=ALE/MsPacman-v5 --out=data/mspacman \
    --episodes=12 --max_episode_frames=600
python -m experiments.train_transporter --config=experiments/configs/mspacman.py \
    --run_dir=runs/mspacman

Five objects move here: Ms. Pac-Man and four ghosts. The 2600 draws each ghost in only some
frames (inky, the rarest, in about 40% of random-policy frames), so a ghost gives the
reconstruction loss less to pull on than Pong's paddles do. At the Pong budget of 5,000 steps
the keypoints find Ms. Pac-Man, blinky, pinky and sue but inky on neither seed scored (0.85,
0.44), with two keypoints doubled up on one ghost. At 7,000 steps 2 of 5 seeds find all five
objects: not yet a robust recipe. The README ("Robustness over seeds") has the recall of every
seed.
"""

from experiments.configs import pong


def get_config():
  config = pong.get_config()
  config.model.blank_top_rows = 0  # the maze reaches the top rows (the score is at the bottom)
  config.dataset.path = "data/mspacman"
  config.train.num_steps = 7000
  return config
