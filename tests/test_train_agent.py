"""End to end: the agent binary on real ALE games and on Catch; KeyQN learns; kill -9 and
resume continue bit-exactly; bad input is one clear line."""

import json
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import train_agent
from experiments.configs import agent as agent_config
from keypoints import configs
from keypoints import data as data_lib
from keypoints import inference
from keypoints import train as train_lib
from keypoints import xla
from rl import agents
from rl import catch
from rl import dqn

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(cmd, **kwargs):
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, **kwargs)


def _agent_cmd(run_dir, *extra):
  return [sys.executable, "-m", "experiments.train_agent", f"--run_dir={run_dir}",
          "--config.eval_every=0", "--config.log_every=50", *extra]


@pytest.fixture(scope="module")
def pong_detector_run(tmp_path_factory, train_tiny_detector):
  """A (barely trained) Transporter on a few Pong frames."""
  return train_tiny_detector(tmp_path_factory.mktemp("pong"), "ALE/Pong-v5")


def test_probe_detector_scores_the_keypoints_on_the_agents_frames(pong_detector_run, tmp_path):
  # (Here for the detector it shares.) The probe plays under the agents' protocol and reports,
  # per object and per player's score, how often the held-out keypoint sits on it; the
  # numbers are recomputed from the keypoints and objects it saves.
  out = tmp_path / "probe"
  result = _run([sys.executable, "-m", "experiments.probe_detector",
                 f"--keypoint_run={pong_detector_run}", "--policy=chase", "--steps=80",
                 "--seed=3", f"--out={out}"])
  assert result.returncode == 0, result.stderr[-3000:]
  probe = json.loads((out / "probe.json").read_text())
  saved = np.load(out / "keypoints.npz")
  keypoints, objects, score = saved["keypoints"], saved["objects"], saved["player_score"]
  assert keypoints.shape[0] == objects.shape[0] == len(score) == 80
  assert probe["objects"] == ["player", "enemy", "ball"] and probe["policy"] == "chase"
  chosen = [probe["heldout_keypoints"][n]["keypoint"] for n in probe["objects"]]
  for m, k in enumerate(chosen):
    distance = np.linalg.norm(keypoints[:, k] - objects[:, m], axis=-1)
    shown = np.isfinite(distance)
    expected = np.mean(distance[shown] <= 8.0) if shown.any() else None
    assert probe["recall_heldout_keypoint"][m] == pytest.approx(expected)
  assert sum(row["frames"] for row in probe["by_player_score"].values()) == 80
  assert set(map(int, probe["by_player_score"])) == set(np.unique(score).tolist())
  assert "player's score" in result.stdout and "held-out keypoint on it" in result.stdout
  # Keypoints are the detector's on the protocol's raw 210x160 frames.
  frame = np.zeros((1, 210, 160, 3), np.uint8)
  assert inference.load_detector(pong_detector_run)(frame).shape == (1, keypoints.shape[1], 2)


def test_probe_detector_without_a_run_is_one_line(tmp_path):
  result = _run([sys.executable, "-m", "experiments.probe_detector",
                 f"--keypoint_run={tmp_path / 'none'}", f"--out={tmp_path / 'probe'}"])
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith("error: ")


def test_keyqn_on_pong_writes_scores_curve_video_and_checkpoints(pong_detector_run, tmp_path):
  run_dir = tmp_path / "keyqn"
  result = _run(_agent_cmd(run_dir, "--config.agent=keyqn",
                           f"--config.keypoint_run={pong_detector_run}",
                           "--config.num_steps=120", "--config.learner.min_replay=60",
                           "--config.learner.batch_size=4", "--config.checkpoint_every=60",
                           "--config.final_eval_episodes=1", "--config.eval_max_steps=100",
                           "--config.video_steps=20", "--config.num_seeds=2"))
  assert result.returncode == 0, result.stderr[-3000:]
  final = json.loads((run_dir / "final_eval.json").read_text())
  assert final["agent"] == "keyqn" and final["seeds"] == [0, 1]
  assert final["keypoint_run"] == str(pong_detector_run)
  recall = final["detector_recall"]  # kept with the scores, for when the detector's run is gone
  assert set(recall) == {"player", "enemy", "ball"} and all(0 <= v <= 1 for v in recall.values())
  assert final["detector_recall_threshold_raw_px"] == 8.0
  assert (run_dir / "images" / "learning_curve.png").stat().st_size > 0
  assert (run_dir / "images" / "agent.gif").stat().st_size > 0
  rows = (run_dir / "metrics.csv").read_text().splitlines()
  assert rows[0].startswith("step,train_return") and len(rows) == 3  # steps 50 and 100
  assert sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir()) == [60, 120]
  assert 0 < final["train_hours"] < 1
  saved = json.loads((run_dir / "config.json").read_text())  # KeyQN's defaults, resolved
  assert saved["learner"]["learning_rate"] == 3e-4 and saved["network"]["use_features"] is False

  # The results table: our row beside the published ones, with the detector's recall.
  out = tmp_path / "table"
  result = _run([sys.executable, "-m", "experiments.atari_table", f"--runs={run_dir}",
                 f"--keep={tmp_path / 'kept'}", f"--out={out}"])
  assert result.returncode == 0, result.stderr[-3000:]
  table = (out.with_suffix(".md")).read_text()
  pong = next(line for line in table.splitlines() if line.startswith("| pong |"))
  assert "10.8 (5.7)" in pong  # the paper's KeyQN
  # No Pong game ends within eval_max_steps, so there is no score to show (numbers:
  # test_atari_table).
  assert final["mean_per_seed"] == [None] * len(final["mean_per_seed"])
  assert pong.split(" | ")[1] == "-"
  assert "detector recall on held-out frames: player" in table
  assert (tmp_path / "kept" / "keyqn" / "final_eval.json").is_file()
  assert out.with_suffix(".png").stat().st_size > 0


def test_keypoint_records_hold_the_detectors_keypoints_and_features(pong_detector_run):
  from rl import agents, atari  # pylint: disable=g-import-not-at-top
  detector = inference.load_detector(pong_detector_run)
  env = atari.make("ALE/Pong-v5", seed=3, observation="colour")
  frames = np.stack([env.reset(seed=3)[0], env.step(2)[0], env.step(3)[0]])
  env.close()
  observer = agents.KeypointObserver(detector, frames.shape[1:])
  records = observer(frames)
  xy, features = detector.features(frames)
  assert records.shape == (3, xy.shape[1], 2 + features.shape[2])
  # (x, y) in [-1, 1] over the raw 210x160 screen, then the features sampled there.
  np.testing.assert_allclose(records[..., 0], xy[..., 0] / 159 * 2 - 1, atol=1e-5)
  np.testing.assert_allclose(records[..., 1], xy[..., 1] / 209 * 2 - 1, atol=1e-5)
  np.testing.assert_array_equal(records[..., 2:], features)
  # The video draws keypoints from the stored records, without calling the detector again.
  np.testing.assert_allclose(observer.pixels(records), xy, atol=1e-3)
  # Positions alone: the same (x, y), without the features (the detector runs Psi only).
  positions = agents.KeypointObserver(detector, frames.shape[1:], use_features=False)
  assert positions.element_shape == (xy.shape[1], 2)
  np.testing.assert_allclose(positions(frames), records[..., :2], atol=1e-5)
  # A subset of the keypoints, in the order asked for, with or without features.
  pick = (xy.shape[1] - 1, 0)
  subset = agents.KeypointObserver(detector, frames.shape[1:], keypoints=pick)
  assert subset.element_shape == (2, records.shape[-1])
  np.testing.assert_array_equal(subset(frames), records[:, list(pick)])
  subset_xy = agents.KeypointObserver(detector, frames.shape[1:], False, keypoints=pick)
  np.testing.assert_allclose(subset_xy(frames), records[:, list(pick), :2], atol=1e-5)
  for bad in ((xy.shape[1],), (0, 0), (-1,)):
    with pytest.raises(ValueError, match="must be distinct indices"):
      agents.KeypointObserver(detector, frames.shape[1:], keypoints=bad)


def test_keyqn_ram_records_are_the_ground_truth_objects():
  from keypoints import ground_truth  # pylint: disable=g-import-not-at-top
  from rl import agents, atari  # pylint: disable=g-import-not-at-top
  env = atari.make("ALE/Pong-v5", seed=5, observation="colour")
  env.reset(seed=5)
  rams = [env.unwrapped.ale.getRAM().copy()]
  for action in [0] * 60 + [2] * 20:
    env.step(action)
    rams.append(env.unwrapped.ale.getRAM().copy())
  env.close()
  rams = np.stack(rams)
  observer = agents.ObjectObserver("ALE/Pong-v5")
  records = observer(rams)
  truth = ground_truth.atari_positions("ALE/Pong-v5", rams)  # player, enemy, ball; NaN: hidden
  assert records.shape == (len(rams), 3, 3) == (len(rams), *observer.element_shape)
  shown = np.isfinite(truth).all(-1)
  assert shown.any() and not shown.all()  # the ball is parked between points
  np.testing.assert_array_equal(records[..., 2], shown)
  np.testing.assert_array_equal(records[~shown], 0.0)
  np.testing.assert_allclose(records[shown][:, 0], truth[shown][:, 0] / 159 * 2 - 1, atol=1e-5)
  np.testing.assert_allclose(records[shown][:, 1], truth[shown][:, 1] / 209 * 2 - 1, atol=1e-5)
  np.testing.assert_allclose(observer.pixels(records), truth, atol=1e-3)  # NaN where hidden

  # The ablation without a shown flag: hidden objects wander in [-1, 1], one record per state.
  noisy = agents.ObjectObserver("ALE/Pong-v5", hidden="noise")
  noise_records = noisy(rams)
  assert noise_records.shape == (len(rams), 3, 2) == (len(rams), *noisy.element_shape)
  np.testing.assert_array_equal(noise_records[shown], records[shown][:, :2])
  hidden = noise_records[~shown]
  assert np.abs(hidden).max() <= 1.0 and hidden.std() > 0.3  # uniform, not parked at (0, 0)
  np.testing.assert_array_equal(noisy(rams), noise_records)  # the same state, the same record

  # The ablation with jitter: shown objects scatter about their positions by 2 raw pixels
  # (std), independently in x and y; hidden ones keep (0, 0) and flag 0; one record per state.
  jittery = agents.ObjectObserver("ALE/Pong-v5", jitter=2.0)
  jitter_records = jittery(rams)
  assert jitter_records.shape == records.shape
  np.testing.assert_array_equal(jitter_records[..., 2], records[..., 2])
  np.testing.assert_array_equal(jitter_records[~shown], 0.0)
  error = (jittery.pixels(jitter_records) - truth)[shown]  # [shown objects, 2] raw pixels
  assert error.shape[0] > 100
  np.testing.assert_allclose(error.std(axis=0), 2.0, rtol=0.25)
  np.testing.assert_allclose(error.mean(axis=0), 0.0, atol=0.6)
  assert abs(np.corrcoef(error.T)[0, 1]) < 0.25
  np.testing.assert_array_equal(jittery(rams), jitter_records)
  both = agents.ObjectObserver("ALE/Pong-v5", hidden="noise", jitter=2.0)(rams)
  np.testing.assert_array_equal(both[~shown], noise_records[~shown])  # hidden: as without jitter
  assert np.abs(both[shown] - noise_records[shown]).max() > 0
  with pytest.raises(ValueError, match="oracle_jitter must be >= 0"):
    agents.ObjectObserver("ALE/Pong-v5", jitter=-1.0)


@pytest.mark.parametrize("agent,extra", [
    ("pixel_dqn", ()), ("keyqn_ram", ()),
    ("keyqn_ram", ("--config.oracle_hidden=noise", "--config.oracle_jitter=1.5"))])
def test_pixel_dqn_and_keyqn_ram_run_the_protocol_on_pong(tmp_path, agent, extra,
                                                         restore_checkpoint):
  run_dir = tmp_path / agent
  result = _run(_agent_cmd(run_dir, f"--config.agent={agent}", *extra, "--config.num_steps=80",
                           "--config.learner.min_replay=40", "--config.learner.batch_size=4",
                           "--config.checkpoint_every=80", "--config.final_eval_episodes=1",
                           "--config.eval_max_steps=50", "--config.video_steps=10"))
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = (run_dir / "metrics.csv").read_text().splitlines()
  header = metrics[0].split(",")
  last = dict(zip(header, metrics[-1].split(",")))
  assert float(last["loss"]) >= 0.0 and float(last["epsilon"]) < 1.0
  final = json.loads((run_dir / "final_eval.json").read_text())
  assert final["agent"] == agent
  saved = json.loads((run_dir / "config.json").read_text())  # the agent's own learning rate
  assert saved["learner"]["learning_rate"] == {"pixel_dqn": 1e-4, "keyqn_ram": 3e-4}[agent]
  assert final["episodes_per_seed"] == 0  # no game ends within 50 steps: no score, no length
  assert final["lengths"] == [[None]] and final["mean_length"] is None
  assert (run_dir / "images" / "agent.gif").stat().st_size > 0  # keyqn_ram: objects drawn
  if agent == "keyqn_ram":
    # Pong's RAM puts objects on a quarter-pixel grid: the stored records are on it exactly,
    # unless the objects were jittered (the paddles are always shown).
    records = np.asarray(restore_checkpoint(run_dir, 80)["replay"]["observation"])
    x = agents.ObjectObserver("ALE/Pong-v5").pixels(records)[..., 0]  # raw; NaN: hidden
    x = x[np.isfinite(x)]
    off_grid = np.abs(x * 4 - np.round(x * 4)) > 0.02
    assert off_grid.mean() > 0.9 if extra else not off_grid.any()


def test_kill_9_and_resume_continue_bit_exactly(tmp_path, kill_9_after_checkpoint,
                                                assert_same_checkpoint, restore_checkpoint):
  common = ["--config.agent=pixel_dqn", "--config.env_id=catch", "--config.num_steps=300",
            "--config.learner.min_replay=50", "--config.learner.batch_size=8",
            "--config.learner.n_step=3", "--config.learner.target_update_period=50",
            "--config.learner.lr_decay=linear",  # the schedule's count resumes too
            # Two updates a step, and resets after steps 125 (before the kill) and 250.
            "--config.learner.updates_per_step=2", "--config.learner.reset_every=125",
            "--config.checkpoint_every=100", "--config.final_eval_episodes=3",
            "--config.video_steps=0"]
  straight = tmp_path / "straight"
  result = _run(_agent_cmd(straight, *common))
  assert result.returncode == 0, result.stderr[-3000:]
  assert [int(s) for s in re.findall(r"Step (\d+): every seed's network drawn anew",
                                      result.stderr)] == [125, 250]
  learner = restore_checkpoint(straight, 300)["learner"]
  # 2 updates at each of steps 50..300; Adam's moments restarted after step 250's reset while
  # the learning-rate schedule's count went on.
  adam, schedule = (learner["opt_state"][k]["count"] for k in ("0", "1"))
  counts = [np.asarray(x).tolist() for x in (learner["updates"], adam, schedule)]
  assert counts == [[502], [100], [502]]  # [member]
  killed = tmp_path / "killed"
  kill_9_after_checkpoint(_agent_cmd(killed, *common), killed, 200, ROOT)
  assert not (killed / "final_eval.json").exists()
  result = _run(_agent_cmd(killed, *common))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "from step 200" in result.stderr
  # Everything but the wall clock: learner, optimiser, replay, games, samplers, step.
  assert_same_checkpoint(straight, killed, 300)
  assert (json.loads((straight / "final_eval.json").read_text())["scores"] ==
          json.loads((killed / "final_eval.json").read_text())["scores"])


def test_periodic_evaluations_log_every_seed_and_their_mean(tmp_path):
  run_dir = tmp_path / "pop"
  result = _run([sys.executable, "-m", "experiments.train_agent", f"--run_dir={run_dir}",
                 "--config.agent=pixel_dqn", "--config.env_id=catch", "--config.seed=3",
                 "--config.num_seeds=2", "--config.num_steps=200", "--config.eval_every=100",
                 "--config.eval_episodes=4", "--config.log_every=50",
                 "--config.learner.min_replay=50", "--config.learner.batch_size=8",
                 "--config.checkpoint_every=200", "--config.final_eval_episodes=2",
                 "--config.video_steps=0"])
  assert result.returncode == 0, result.stderr[-3000:]
  rows = np.genfromtxt(run_dir / "metrics.csv", delimiter=",", names=True)
  assert {"eval_return_seed3", "eval_return_seed4"} <= set(rows.dtype.names)
  evaluated = np.isfinite(rows["eval_return"])
  assert rows["step"][evaluated].tolist() == [100, 200]
  assert np.isfinite(rows["eval_return_seed3"]).tolist() == evaluated.tolist()
  per_seed = np.stack([rows["eval_return_seed3"], rows["eval_return_seed4"]])[:, evaluated]
  # Catch scores +-1 per game: each seed's mean over 4 games is a multiple of 0.5.
  assert np.all(np.abs(per_seed) <= 1) and np.all((per_seed * 2) % 1 == 0)
  np.testing.assert_allclose(per_seed.mean(0), rows["eval_return"][evaluated], atol=1e-6)
  np.testing.assert_allclose(per_seed.std(0), rows["eval_return_std"][evaluated], atol=1e-6)


def test_agent_defaults_fill_only_the_fields_left_unset():
  config = agent_config.get_config()
  assert config.learner.learning_rate is None and config.network.use_features is None
  for agent, rate, features in [("keyqn", 3e-4, False), ("keyqn_ram", 3e-4, True),
                                ("pixel_dqn", 1e-4, True)]:
    config.agent = agent
    resolved = agents.with_agent_defaults(config)
    assert (resolved.learner.learning_rate, resolved.network.use_features) == (rate, features)
  config.agent = "keyqn"
  config.learner.learning_rate, config.network.use_features = 1e-3, True  # given: kept
  resolved = agents.with_agent_defaults(config)
  assert (resolved.learner.learning_rate, resolved.network.use_features) == (1e-3, True)
  assert agents.with_agent_defaults(resolved).to_dict() == resolved.to_dict()
  config.learner.learning_rate = None
  with pytest.raises(ValueError, match="learning_rate is unset"):
    dqn.Population(config, None, None)  # an unresolved config is refused, not trained at None


def test_keyqn_beats_random_on_catch(tmp_path):
  """A detector trained briefly on random Catch games, then KeyQN: far above random play."""
  episodes = catch.random_episodes(300, seed=0)
  frames = np.concatenate(episodes)
  mc = configs.model_config("deepmind", num_keypoints=4, image_size=(16, 16))
  tc = configs.train_config(batch_size=16, learning_rate=2e-3, max_offset=4)
  net = train_lib.build_model(mc)
  state = train_lib.create_train_state(jax.random.PRNGKey(0), net, train_lib.build_optimizer(tc),
                                       (16, 16), frames.mean(0) / 255.0)
  index = data_lib.make_pair_index(np.array([len(e) for e in episodes]), tc.min_offset,
                                   tc.max_offset)
  device_frames = jnp.asarray(frames)
  step = xla.jit(lambda s: train_lib.sample_and_train(s, device_frames, index, tc.batch_size))
  for _ in range(200):
    state, _ = step(state)
  detector = inference.Detector(net, train_lib.model_variables(state.params, state.batch_stats))

  config = agent_config.get_config()
  config.update(dict(env_id="catch", agent="keyqn", num_steps=3000, history=2, eval_every=0,
                     final_eval_episodes=100, video_steps=0, checkpoint_every=100_000,
                     log_every=500))
  # Positions and features: from this 200-step detector the positions alone do not learn
  # catch within 3,000 steps (-0.12 measured; KeyQN's default reads them alone on Atari).
  config.network.update(dict(embed_sizes=(32,), hidden_sizes=(64,), use_features=True))
  config.learner.update(dict(min_replay=200, n_step=3, learning_rate=1e-3,
                             target_update_period=100, replay_capacity=10_000))
  config.exploration.update(dict(epsilon_decay_steps=1000, epsilon_end=0.05))
  config = agents.with_agent_defaults(config)
  run_dir = tmp_path / "catch"
  run_dir.mkdir()
  train_agent.train(config, run_dir, detector)
  score = json.loads((run_dir / "final_eval.json").read_text())["mean"]
  # The uniform random policy scores -0.76 (2,000 games); the optimum is +1.
  assert score > 0.2, score


@pytest.mark.parametrize("extra,message", [
    (["--config.agent=sarsa"], "unknown agent 'sarsa'"),
    (["--config.agent=keyqn"], "keyqn needs a trained Transporter"),
    (["--config.agent=pixel_dqn", "--config.learner.n_step=0"], "n_step must be >= 1"),
    (["--config.agent=pixel_dqn", "--config.learner.lr_decay=step"],
     "lr_decay must be one of constant, linear, cosine"),
    (["--config.agent=pixel_dqn", "--config.learner.updates_per_step=0"],
     "updates_per_step must be >= 1"),
    (["--config.agent=pixel_dqn", "--config.learner.reset_every=-1"],
     "reset_every must be >= 0"),
    (["--config.agent=pixel_dqn", "--config.eval_games_at_once=0"],
     "eval_games_at_once must be >= 1"),
    (["--config.agent=pixel_dqn", "--config.network.feature_norm=True",
      "--config.network.use_features=False"], "set use_features=True with it"),
    (["--config.agent=pixel_dqn", "--config.env_id=ALE/NoSuchGame-v5"],
     "unknown environment"),
    (["--config.agent=keyqn", "--config.keypoint_run=/nonexistent"], "is not a training run"),
    (["--config.agent=keyqn_ram", "--config.env_id=catch"], "not of catch"),
    (["--config.agent=keyqn_ram", "--config.network.use_features=False"],
     "keyqn_ram reads RAM objects"),
    (["--config.agent=keyqn_ram", "--config.oracle_hidden=zero"], "oracle_hidden must be one"),
    (["--config.agent=pixel_dqn", "--config.network.keypoints=(0,1)"], "leave it empty"),
    (["--config.agent=pixel_dqn", "--config.oracle_hidden=noise"], "leave it at flag"),
    (["--config.agent=keyqn_ram", "--config.oracle_jitter=-1"], "oracle_jitter must be >= 0"),
    (["--config.agent=pixel_dqn", "--config.oracle_jitter=1.5"], "leave it at 0"),
])
def test_bad_config_is_one_clear_error(tmp_path, extra, message):
  result = _run(_agent_cmd(tmp_path / "run", *extra))
  assert result.returncode != 0
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error:") and message in last, result.stderr[-2000:]
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_detector_of_another_game_is_refused(pong_detector_run, tmp_path):
  result = _run(_agent_cmd(tmp_path / "run", "--config.agent=keyqn",
                           "--config.env_id=ALE/Breakout-v5",
                           f"--config.keypoint_run={pong_detector_run}"))
  assert result.returncode != 0
  assert "trained on ALE/Pong-v5 frames, not ALE/Breakout-v5" in result.stderr.splitlines()[-1]
