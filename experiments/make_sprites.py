"""Writes the synthetic sprites video as a frame dataset (exact ground-truth positions).

  python -m experiments.make_sprites --out=data/sprites
"""

from absl import flags

from experiments import harness

from keypoints import sprites

_OUT = flags.DEFINE_string("out", None, "Dataset folder to write.", required=True)
_EPISODES = flags.DEFINE_integer("episodes", 12, "Number of episodes.", lower_bound=2)
_LENGTH = flags.DEFINE_integer("episode_length", 50, "Frames per episode.", lower_bound=2)
_SIZE = flags.DEFINE_integer("size", 32, "Frame height and width in pixels.", lower_bound=8)
_SPRITES = flags.DEFINE_integer("sprites", 3, "Number of sprites.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Random seed of the sprites' starts and velocities.")


def main(argv):
  del argv
  sprites.write_dataset(_OUT.value, _EPISODES.value, _LENGTH.value, _SIZE.value, _SPRITES.value,
                        seed=_SEED.value)


if __name__ == "__main__":
  harness.run(main)
