"""Data parallelism (keypoints/parallel.py): a step split over 4 devices is the one-device step.

The devices are XLA's host platform split in 4 (`--xla_force_host_platform_device_count=4`),
which must be set before JAX starts, so the comparison runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from keypoints import data
from keypoints import inference
from keypoints import parallel

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = textwrap.dedent("""
    import functools, json
    import jax, jax.numpy as jnp, numpy as np
    from keypoints import configs, data as data_lib, parallel, sprites, train, xla

    assert jax.device_count() == 4, jax.devices()
    frames, _ = sprites.generate(3, 20, size=16, num_sprites=2, sprite_size=3, seed=0)
    index = data_lib.make_pair_index(np.full(3, 20), 1, 10)
    mc = configs.model_config("deepmind", num_keypoints=3, image_size=(16, 16), norm=NORM)
    tc = configs.train_config(batch_size=8, learning_rate=2e-3, max_offset=10)
    model = train.build_model(mc)
    out = {}
    for name, devices in (("one", jax.devices()[:1]), ("four", jax.devices())):
      mesh = parallel.data_mesh(devices)
      state = parallel.replicate(train.create_train_state(
          jax.random.PRNGKey(0), model, train.build_optimizer(tc), (16, 16)), mesh)
      f = parallel.replicate(jnp.asarray(frames.reshape(-1, 16, 16, 3)), mesh)
      step = xla.jit(functools.partial(train.sample_and_train, batch_size=tc.batch_size,
                                       batch_sharding=parallel.batch_sharding(mesh)),
                     donate_argnums=0)
      # The gradient of one fixed batch, split over the mesh.
      batch = jax.device_put(data_lib.sample_pairs(jax.random.PRNGKey(1), f, index, 8),
                             parallel.batch_sharding(mesh))
      grad = jax.jit(jax.grad(lambda p, b: train.loss_fn(
          p, state.batch_stats, state.apply_fn, b, jax.random.PRNGKey(2))[0]))(state.params,
                                                                             batch)
      hlo = step.lower(state, f, index).compile().as_text()
      losses = []
      for _ in range(STEPS):
        state, metrics = step(state, f, index)
        losses.append(float(metrics["loss"]))
      leaves = jax.tree.leaves(state.params)
      out[name] = {"losses": losses,
                   "grads": [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(grad)],
                   "all_reduce": "all-reduce" in hlo,
                   "devices": sorted({len(x.sharding.device_set) for x in leaves}),
                   "replicated": all(x.sharding.is_fully_replicated for x in leaves)}
    print(json.dumps(out))
""")


def _on_four_devices(script: str) -> dict:
  """Runs `script` in a fresh interpreter over 4 host-platform CPU devices; its last line of
  output, as JSON."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=(
      f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4").strip())
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=_ROOT, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def _run(norm: str, steps: int) -> dict:
  return _on_four_devices(_SCRIPT.replace("NORM", repr(norm)).replace("STEPS", str(steps)))


def test_a_step_over_four_devices_equals_the_one_device_step():
  # Batch norm: its statistics must be those of the whole batch, not of a device's quarter
  # (the default instance norm works per frame, the easier case).
  out = _run("batch", steps=3)
  one, four = out["one"], out["four"]
  assert one["devices"] == [1] and four["devices"] == [4]
  assert one["replicated"] and four["replicated"]  # parameters stay whole on every device
  # Each device works on its quarter of the batch and the gradients are summed across them.
  assert four["all_reduce"] and not one["all_reduce"]
  # The same pairs and the same mean over the batch; only the order of float sums differs
  # (per-device partial sums, then an all-reduce). So the gradients agree to float32 rounding,
  # measured against each tensor's largest entry, and so does the first step's loss. Later
  # losses drift slightly more: Adam divides each gradient entry by its own magnitude, so an
  # entry near zero whose rounding differs moves its parameter by up to a learning rate.
  # (A bias just before a normalisation has a zero gradient, computed as rounding noise
  # around 1e-9, so the scale is the largest entry over all tensors.)
  scale = max(np.abs(g).max() for g in one["grads"])
  for a, b in zip(one["grads"], four["grads"]):
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * scale)
  np.testing.assert_allclose(four["losses"][0], one["losses"][0], rtol=1e-5)
  np.testing.assert_allclose(four["losses"], one["losses"], rtol=5e-3)
  assert one["losses"][0] != one["losses"][-1]  # the steps do move


_MULTIHOST_SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np, optax
    from keypoints import configs, data as data_lib, parallel, sprites, train, xla

    assert jax.device_count() == 4, jax.devices()
    frames, _ = sprites.generate(3, 20, size=16, num_sprites=2, sprite_size=3, seed=0)
    frames = frames.reshape(-1, 16, 16, 3)
    index = data_lib.make_pair_index(np.full(3, 20), 1, 10)
    mc = configs.model_config("deepmind", num_keypoints=3, image_size=(16, 16))
    tc = configs.train_config(batch_size=8, learning_rate=2e-3, max_offset=10)
    model = train.build_model(mc)
    mesh = parallel.data_mesh()
    # Plain SGD: Adam divides by the gradient's size, so a parameter whose gradient is zero in
    # exact arithmetic (the heatmap bias: the softmax ignores a shift) moves by +-lr on rounding
    # noise, and the scan's differently fused body rounds differently (3e-4 on some machines).
    fresh = lambda: parallel.replicate(train.create_train_state(
        jax.random.PRNGKey(0), model, optax.sgd(0.1), (16, 16)), mesh)
    run = parallel.multihost_steps(mesh, frames, index, 8)
    # Reference: the process's pairs drawn on the host from the step's sampling key folded
    # with the process index (0), then the same sharded step.
    state, reference = fresh(), []
    step = xla.jit(train.train_on_pairs)
    for _ in range(3):
      key = jax.random.fold_in(jax.random.split(state.key)[1], 0)
      pairs = jax.device_put(data_lib.sample_pairs(key, jnp.asarray(frames), index, 8),
                             parallel.batch_sharding(mesh))
      state, metrics = step(state, pairs)
      reference.append(float(metrics["loss"]))
    one, scanned = fresh(), fresh()
    ones = []
    for _ in range(3):
      one, metrics = run(one, 1)
      ones.append(float(metrics["loss"][0]))
    scanned, metrics = run(scanned, 3)
    out = {"reference": reference, "ones": ones, "scanned": metrics["loss"].tolist(),
           "params": [float(np.abs(np.asarray(a) - np.asarray(b)).max() /
                            max(1.0, float(np.abs(np.asarray(a)).max())))
                      for a, b in zip(jax.tree.leaves(one.params),
                                      jax.tree.leaves(scanned.params))],
           "keys_equal": bool((np.asarray(one.key) == np.asarray(state.key)).all())}
    print(json.dumps(out))
""")


def test_pairs_drawn_on_the_devices_are_the_processs_pairs_and_scan_as_single_steps():
  out = _on_four_devices(_MULTIHOST_SCRIPT)
  # The same pairs as drawn on the host: the same losses step by step, to float rounding of
  # one sharded computation compiled twice.
  np.testing.assert_allclose(out["ones"], out["reference"], rtol=1e-5)
  assert out["reference"][0] != out["reference"][-1]
  assert out["keys_equal"]
  # Three steps in one dispatch are the three single steps (a loop body may fuse differently).
  np.testing.assert_allclose(out["scanned"], out["ones"], rtol=1e-4)
  assert max(out["params"]) < 1e-4, out["params"]


def test_a_batch_that_does_not_split_over_the_devices_is_refused():
  import jax  # pylint: disable=g-import-not-at-top
  parallel.check_batch_size(7, parallel.data_mesh(jax.devices()[:1]))  # one device: any
  with pytest.raises(ValueError, match="does not split over 4 devices"):
    parallel.check_batch_size(6, type("FourDevices", (), {"size": 4})())


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _two_processes(cmd):
  """Runs `cmd` as process 0 and 1 of a job on 127.0.0.1 (one CPU device each, JAX's own
  runtime and CPU collectives); each checkpoint first checks that both hold the same
  parameters."""
  port = _free_port()
  procs = [subprocess.Popen(cmd + [f"--coordinator_address=127.0.0.1:{port}",
                                   "--num_processes=2", f"--process_id={i}"],
                            cwd=_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
           for i in range(2)]
  errors = [p.communicate(timeout=600)[1] for p in procs]
  for p, err in zip(procs, errors):
    assert p.returncode == 0, err[-3000:]


def test_two_processes_train_together_resume_bit_exactly_and_one_process_reads_them(
    sprites_dir, tmp_path):
  run_dir = tmp_path / "run"
  cmd = [sys.executable, "-m", "experiments.train_transporter",
         "--config=experiments/configs/sprites.py", f"--config.dataset.path={sprites_dir}",
         f"--run_dir={run_dir}", "--config.model.image_size=(16, 16)",
         "--config.model.num_keypoints=3", "--config.train.batch_size=4",
         "--config.checkpoint_every=5", "--config.image_every=10", "--config.log_every=5",
         "--config.gif_frames=4"]
  _two_processes(cmd + ["--config.train.num_steps=15"])
  rows = (run_dir / "metrics.csv").read_text().splitlines()
  assert [r.split(",")[0] for r in rows[1:]] == ["5", "10", "15"]  # one writer: process 0
  assert (run_dir / "checkpoints" / "15").is_dir()
  # Stopped after step 10 (its later checkpoint gone), the two processes resume from step 10
  # and reach the same step 15 bit for bit.
  resumed = tmp_path / "resumed"
  shutil.copytree(run_dir, resumed)
  shutil.rmtree(resumed / "checkpoints" / "15")
  _two_processes([c.replace(str(run_dir), str(resumed)) for c in cmd]
                 + ["--config.train.num_steps=15"])
  # (Read through the detector API, which restores a multi-host checkpoint in one process.)
  params = [jax.tree.leaves(inference.load_detector(d).variables) for d in (run_dir, resumed)]
  for x, y in zip(*params, strict=True):
    np.testing.assert_array_equal(x, y)
  last_row = [(d / "metrics.csv").read_text().splitlines()[-1] for d in (run_dir, resumed)]
  assert last_row[0] == last_row[1] and last_row[0].startswith("15,")
  assert (resumed / "metrics.csv").read_text().count("\n15,") == 1
  # Five steps per dispatch (pairs drawn on the devices inside a lax.scan; the processes'
  # shares of the episodes differ in size, 2 and 1, so the padding is exercised) take the same
  # steps, up to float rounding of a loop body fused differently.
  scanned = tmp_path / "scanned"
  _two_processes([c.replace(str(run_dir), str(scanned)) for c in cmd]
                 + ["--config.train.num_steps=10", "--steps_per_dispatch=5"])
  # (Compared by what the steps did and what the detector says, not parameter by parameter:
  # Adam moves a parameter whose gradient is zero in exact arithmetic by up to a learning rate
  # on rounding noise, see test_scanned_steps_equal_single_steps.)
  table = [np.loadtxt(d / "metrics.csv", delimiter=",", skiprows=1) for d in (run_dir, scanned)]
  # Steps 5 and 10 (2e-6 and up to 2e-4 measured: Adam amplifies the rounding, more in the
  # suite's unoptimised machine code; pairs drawn wrongly differ by far more).
  np.testing.assert_allclose(table[1], table[0][:2], rtol=2e-3)
  frames = data.load_dataset(sprites_dir).frames[:8]
  np.testing.assert_allclose(inference.load_detector(scanned)(frames),
                             inference.load_detector(run_dir, step=10)(frames),
                             atol=5e-2)  # pixels of the 16x16 frame (1.0e-2 measured)
  # One process restores the two-process checkpoint (resuming training from it is the same
  # restore, `run_dir.restore_train_state`).
  detect = inference.load_detector(run_dir)
  frames = data.load_dataset(sprites_dir).frames[:4]
  xy = detect(frames)
  assert xy.shape == (4, 3, 2) and np.isfinite(xy).all()


@pytest.mark.parametrize("args, message", [
    (("127.0.0.1:1", 2, None), "needs all of --coordinator_address, --num_processes"),
    ((None, 2, 0), "needs all of --coordinator_address, --num_processes"),
    (("127.0.0.1:1", 2, 2), r"--process_id must be in \[0, 2\), got 2"),
])
def test_half_given_or_bad_multihost_flags_are_one_error_line(args, message):
  from experiments import harness  # pylint: disable=g-import-not-at-top
  with pytest.raises(SystemExit, match=f"^error: .*{message}"):
    harness.initialize_distributed(*args)
  with pytest.raises(SystemExit, match="either --auto_distributed or"):
    harness.initialize_distributed("127.0.0.1:1", 2, 0, auto=True)
  harness.initialize_distributed(None, None, None)  # one process: nothing to join


_LEARNER_SCRIPT = textwrap.dedent("""
    import json, types
    import jax, jax.numpy as jnp, numpy as np
    from experiments.configs import agent as agent_config
    from keypoints import parallel
    from rl import agents, dqn, networks

    assert jax.device_count() == 4, jax.devices()
    config = agent_config.get_config()
    config.num_seeds, config.history, config.learner.batch_size = 3, 2, 16
    config = agents.with_agent_defaults(config)
    network = networks.KeypointQNetwork(3, (8,), (16,))
    observer = types.SimpleNamespace(element_shape=(4, 5), element_dtype=jnp.float32)
    k = jax.random.split(jax.random.PRNGKey(1), 5)
    shape = (3, 16)  # [members, batch]
    batch = {"observation": jax.random.normal(k[0], (*shape, 2, 4, 5)),
             "action": jax.random.randint(k[1], shape, 0, 3),
             "reward": jax.random.normal(k[2], shape),
             "discount": jnp.where(jax.random.uniform(k[3], shape) < 0.2, 0.0, 0.9),
             "next_observation": jax.random.normal(k[4], (*shape, 2, 4, 5))}
    batch = jax.tree.map(np.asarray, batch)  # as the replay hands it over
    out = {}
    for name, devices in (("one", jax.devices()[:1]), ("four", jax.devices())):
      learner = dqn.Population(config, network, observer, mesh=parallel.data_mesh(devices))
      hlo = learner.update.lower(learner.state, batch).compile().as_text()
      losses = []
      for _ in range(3):
        learner.state, metrics = learner.update(learner.state, batch)
        losses.append(np.asarray(metrics["loss"]).tolist())
      leaves = jax.tree.leaves(learner.state.params)
      out[name] = {"losses": losses, "all_reduce": "all-reduce" in hlo,
                   "params": [np.asarray(x).ravel().tolist() for x in leaves],
                   "devices": sorted({len(x.sharding.device_set) for x in leaves}),
                   "actions": learner.act(np.asarray(batch["observation"][:, 0]), 0, 0.0).tolist()}
    print(json.dumps(out))
""")


def test_the_keyqn_learner_over_four_devices_equals_one_device():
  out = _on_four_devices(_LEARNER_SCRIPT)
  one, four = out["one"], out["four"]
  assert one["devices"] == [1] and four["devices"] == [4]
  # Each device a quarter of every member's batch, the gradients summed across devices.
  assert four["all_reduce"] and not one["all_reduce"]
  # The same update up to the order of float sums: these losses and parameters are O(0.1-1),
  # and 3 Adam steps of lr 1e-4 move a parameter by at most 3e-4 whatever the rounding.
  np.testing.assert_allclose(four["losses"], one["losses"], rtol=1e-5)
  for a, b in zip(one["params"], four["params"]):
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
  assert four["actions"] == one["actions"]
  assert one["losses"][0] != one["losses"][-1]
