"""Evaluation with several games per member side by side: the same games as one at a time, and
a population acting in G games as in each alone."""

import jax
import numpy as np

from experiments.configs import agent as agent_config
from rl import actors as actors_lib
from rl import agents
from rl import catch
from rl import dqn
from rl import networks


def _policy(observation, step):
  """A fixed policy that chases the ball in the left half of the screen and stands still for
  one in the right half: it wins some games and loses others (no learner needed)."""
  del step
  actions = []
  for frame in observation[:, -1]:
    ball, paddle = np.nonzero(frame[:70].any(0))[0], np.nonzero(frame[77:].any(0))[0]
    chase = len(ball) and len(paddle) and ball.mean() < 42
    actions.append(1 + int(np.sign(ball.mean() - paddle.mean())) if chase else 1)
  return np.array(actions)


def _evaluate(seeds, episodes, at_once, max_steps=None):
  actors = actors_lib.Actors(catch.ENV_ID, seeds, agents.PixelObserver(
      catch.observation_shape("grey")), history=2)
  try:
    return actors_lib.evaluate(actors, _policy, episodes, max_steps, games_at_once=at_once)[0]
  finally:
    actors.close()


def test_games_side_by_side_are_the_games_each_slot_plays_alone():
  # Seeds whose first three games (alone) are all won, and all lost, by the fixed policy: a
  # slot playing one game too many or too few, or a game given to the wrong member, shows.
  alone = {s: _evaluate([s], episodes=3, at_once=1)[0] for s in range(40)}
  won = [s for s, x in alone.items() if (x == 1).all()]
  lost = [s for s, x in alone.items() if (x == -1).all()]
  assert len(won) >= 2 and len(lost) >= 2, (won, lost)
  # Two members, two slots each (member-major): member 0 plays won[0] then lost[0], member 1
  # lost[1] then won[1]; 5 games each, so slot 0 plays 3 and slot 1 plays 2.
  together = _evaluate([won[0], lost[0], lost[1], won[1]], episodes=5, at_once=2)
  assert together.shape == (2, 5) and np.isfinite(together).all()
  for member, (a, b) in enumerate([(won[0], lost[0]), (lost[1], won[1])]):
    # Catch games all last 7 steps, so the slots finish in turn: a, b, a, b, a.
    expected = [alone[a][0], alone[b][0], alone[a][1], alone[b][1], alone[a][2]]
    np.testing.assert_array_equal(together[member], expected)


def test_a_slot_that_has_played_its_games_is_no_longer_stepped_or_observed():
  # 3 games on 2 slots: slot 0 plays 2 (14 steps), slot 1 plays 1 (7 steps) and then stands.
  actors = actors_lib.Actors(catch.ENV_ID, [3, 4], agents.PixelObserver(
      catch.observation_shape("grey")), history=2)
  observed = []
  observer = actors.observer
  actors.observer = lambda frames: observed.append(len(frames)) or observer(frames)
  lengths, playing = [], []
  try:
    scores, game_lengths = actors_lib.evaluate(
        actors, _policy, 3, games_at_once=2,
        on_step=lambda a, _, p: lengths.append(a.episode_length.copy()) or playing.append(p))
  finally:
    actors.close()
  assert np.isfinite(scores).all() and len(lengths) == 14
  np.testing.assert_array_equal(game_lengths, [[7, 7, 7]])  # every Catch game: 7 agent steps
  lengths = np.array(lengths)
  np.testing.assert_array_equal(lengths[:7, 0], lengths[:7, 1])  # in step while both play
  assert (lengths[7:, 1] == 0).all() and lengths[-1, 0] == 6  # slot 1 reset, then left alone
  assert observed == [2] * 7 + [1] * 7, observed  # slot 1 is observed until its game ends
  np.testing.assert_array_equal(playing, [[True, True]] * 7 + [[True, False]] * 7)


def test_unfinished_games_are_nan_and_slots_must_divide_the_environments():
  scores = _evaluate([1, 2], episodes=4, at_once=2, max_steps=10)  # one 7-step game per slot
  assert np.isfinite(scores).sum() == 2 and np.isnan(scores[0, 2:]).all()
  try:
    _evaluate([1, 2, 3], episodes=4, at_once=2)
  except ValueError as e:
    assert "do not hold 2 games per member" in str(e)
  else:
    raise AssertionError("3 environments accepted as 2 games per member")


def test_population_acts_in_several_games_as_in_each_alone():
  config = agent_config.get_config()
  config.update(dict(env_id=catch.ENV_ID, agent="pixel_dqn", num_seeds=2, history=2))
  config = agents.with_agent_defaults(config)
  observer = agents.PixelObserver(catch.observation_shape("grey"))
  learner = dqn.Population(config, networks.NatureCNN(3), observer, convolutional=True)
  rng = np.random.default_rng(0)
  observation = rng.integers(0, 256, (2, 3, 2, *observer.element_shape), np.uint8)
  together = learner.act(observation, 0, 0.0)
  assert together.shape == (2, 3)
  alone = np.stack([learner.act(observation[:, g], 0, 0.0) for g in range(3)], axis=1)
  np.testing.assert_array_equal(together, alone)
  # The members' networks differ, so acting for the wrong member would show.
  q = [networks.NatureCNN(3).apply(jax.tree.map(lambda x, m=m: x[m], learner.state.params),
                                   observation[m]) for m in range(2)]
  np.testing.assert_array_equal(together, np.stack([np.argmax(x, axis=-1) for x in q]))
