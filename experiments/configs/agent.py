"""KeyQN and pixel DQN on the Atari-100k protocol (README, "KeyQN").

python -m experiments.train_agent --config=experiments/configs/agent.py \
    --config.agent=keyqn --config.keypoint_run=runs/pong --run_dir=runs/keyqn_pong

Learner settings follow the data-efficient DQN of the Atari-100k literature (dopamine's DER and
DrQ(epsilon) settings, without their augmentation or distributional heads): n-step 10, gamma
0.99, an update every agent step from 1,600 steps on, batch 32, Adam (eps 1.5e-4; 1e-4 for
pixel DQN, 3e-4 for KeyQN and its RAM oracle), double DQN with a target network copied every
2,000 updates, epsilon from 1 to 0.01 over the first 5,000 steps, evaluation at epsilon 0.001.
Fields left None take their agent's default (`rl.agents.AGENT_DEFAULTS`, filled by
`rl.agents.with_agent_defaults`); a value given on the command line wins.
"""

import ml_collections
from ml_collections import config_dict


def get_config():
  config = ml_collections.ConfigDict()
  config.agent = "keyqn"  # "keyqn" | "pixel_dqn" | "keyqn_ram" (objects read from RAM, an oracle)
  config.env_id = "ALE/Pong-v5"
  config.keypoint_run = ""  # Transporter run directory (keyqn only)
  config.seed = 0  # population member s uses seed + s
  config.num_seeds = 1
  config.num_steps = 100_000  # agent steps per member (4 emulator frames each)
  # keyqn_ram only: an object off the screen is "flag": (0, 0) and a shown flag of 0, or
  # "noise": no flag and a random (x, y), as a detector's keypoint of an absent object wanders.
  config.oracle_hidden = "flag"
  # keyqn_ram only: Gaussian noise (std, raw pixels) added to every shown object's x and y,
  # as a detector's keypoints scatter about their objects (0: exact positions).
  config.oracle_jitter = 0.0
  config.history = 4  # observations per agent input (frames or keypoint records)

  config.network = ml_collections.ConfigDict(dict(
      embed_sizes=(64, 32),  # keyqn: the per-keypoint embedding MLP
      hidden_sizes=(512,),  # keyqn: the MLP over all embeddings
      feature_norm=False,  # keyqn: layer-normalise the detector features of every record
      # keyqn: True reads each keypoint's position and the detector's features at it, False
      # its position alone (None: the agent's default, False for keyqn).
      use_features=config_dict.placeholder(bool),
      # keyqn: the detector's keypoints to record, by index (empty: all K), e.g. (1, 4, 5) to
      # keep one per object and drop the spare ones (an ablation).
      keypoints=(),
  ))
  config.learner = ml_collections.ConfigDict(dict(
      batch_size=32,
      learning_rate=config_dict.placeholder(float),  # Adam; None: the agent's default
      # Adam's step size over the run (rl.dqn.learning_rate): "constant", or "linear" /
      # "cosine" decay to learning_rate * lr_end_fraction at the run's last update.
      lr_decay="constant",
      lr_end_fraction=0.0,
      adam_eps=1.5e-4,
      n_step=10,
      discount=0.99,
      double=True,
      loss="huber",
      min_replay=1600,  # agent steps before the first update
      update_period=1,  # agent steps per update
      updates_per_step=1,  # updates at each update step, each on its own batch (replay ratio)
      # Agent steps between resets of the network (online and target parameters and Adam's
      # moments drawn anew, the replay kept; rl.dqn.reset); 0: never.
      reset_every=0,
      target_update_period=2000,  # updates per target-network copy
      replay_capacity=100_000,
      # How the seeds' updates are batched (rl.dqn.population_update_mode): "auto", "vmap"
      # or "unrolled"; results agree up to float rounding.
      population_update="auto",
  ))
  config.exploration = ml_collections.ConfigDict(dict(
      epsilon_start=1.0,
      epsilon_end=0.01,
      epsilon_decay_steps=5000,
      eval_epsilon=0.001,
  ))
  config.eval_every = 25_000  # agent steps between evaluations (0: only the final one)
  config.eval_episodes = 5  # games per member per periodic evaluation
  config.final_eval_episodes = 100  # games per member in the final evaluation
  # Bound on the steps of one evaluation (each step moves every game in play one agent step).
  config.eval_max_steps = 200_000
  config.eval_games_at_once = 10  # games each member plays side by side in an evaluation
  config.log_every = 1000
  config.checkpoint_every = 10_000
  config.video_steps = 600  # agent steps of the final video (member 0)
  return config
