"""Writes the synthetic sprites video as a frame dataset (exact ground-truth positions).

  python -m experiments.make_sprites --out=data/sprites
  python -m experiments.make_sprites --out=data/sprites_scrolling --background=scrolling
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
_BACKGROUND = flags.DEFINE_enum(
    "background", "black", sprites.BACKGROUNDS,
    "black: a still black background; scrolling: a dim random texture moving sideways under the "
    "sprites (the moving background the Transporter paper names as its limit).")
_SCROLL_SPEED = flags.DEFINE_float("scroll_speed", 1.0, "Pixels a frame the scrolling "
                                   "background moves (--background=scrolling).")


def main(argv):
  del argv
  sprites.write_dataset(_OUT.value, _EPISODES.value, _LENGTH.value, _SIZE.value, _SPRITES.value,
                        seed=_SEED.value, background=_BACKGROUND.value,
                        scroll_speed=_SCROLL_SPEED.value)


if __name__ == "__main__":
  harness.run(main)
