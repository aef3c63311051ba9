"""Training step: purity, determinism, stop-gradient, and learning the sprites video."""

import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from keypoints import configs
from keypoints import data as data_lib
from keypoints import inference
from keypoints import metrics
from keypoints import sprites
from keypoints import train
from keypoints import xla


def _setup(size=16, k=3, batch=4, seed=0, **model):
  mc = configs.model_config("deepmind", num_keypoints=k, image_size=(size, size), **model)
  tc = configs.train_config(batch_size=batch, learning_rate=2e-3, max_offset=10)
  net = train.build_model(mc)
  state = train.create_train_state(jax.random.PRNGKey(seed), net, train.build_optimizer(tc),
                                   (size, size))
  return net, state, tc


def _frames(size=16, episodes=3, length=20, num_sprites=2, seed=0):
  frames, positions = sprites.generate(episodes, length, size=size, num_sprites=num_sprites,
                                       sprite_size=3 if size < 32 else 5, seed=seed)
  return frames, positions


def test_train_step_is_pure_and_deterministic():
  _, state, tc = _setup()
  frames, _ = _frames()
  index = data_lib.make_pair_index(np.full(3, 20), 1, 10)
  step = xla.jit(lambda s, f: train.sample_and_train(s, f, index, tc.batch_size))
  f = jnp.asarray(frames.reshape(-1, 16, 16, 3))
  a1, m1 = step(state, f)
  a2, m2 = step(state, f)  # same input state -> same output: nothing hidden was mutated
  b, _ = step(a1, f)
  for x, y in zip(jax.tree.leaves(a1.params), jax.tree.leaves(a2.params)):
    np.testing.assert_array_equal(x, y)
  assert float(m1["loss"]) == float(m2["loss"])
  assert int(b.step) == 2 and not np.array_equal(a1.key, b.key)
  # A different seed gives different parameters.
  _, other, _ = _setup(seed=1)
  differs = jax.tree.map(lambda a, b: not np.array_equal(a, b), other.params, state.params)
  assert any(jax.tree.leaves(differs))


def test_source_branch_is_stop_gradient():
  net, state, _ = _setup()
  frames, _ = _frames()
  src = jnp.asarray(frames[0, :2], jnp.float32)
  tgt = jnp.asarray(frames[0, 5:7], jnp.float32)

  def loss(source, target):
    out = net.apply({"params": state.params}, source, target)
    return jnp.mean(out["reconstruction"] ** 2)

  g_src, g_tgt = jax.grad(loss, argnums=(0, 1))(src, tgt)
  assert float(jnp.abs(g_src).max()) == 0.0  # features AND keypoints of the source are stopped
  assert float(jnp.abs(g_tgt).max()) > 0.0


def test_batch_norm_variant_trains():
  net, state, tc = _setup(norm="batch")
  assert state.batch_stats  # running statistics live in the state
  frames, _ = _frames()
  batch = {"source": jnp.asarray(frames[0, :4]), "target": jnp.asarray(frames[0, 4:8])}
  step = jax.jit(train.train_step)
  new, first = step(state, batch, jax.random.PRNGKey(5))
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), new.batch_stats, state.batch_stats)
  assert any(jax.tree.leaves(changed))
  # It learns: 10 steps on one batch bring its loss well down.
  for i in range(10):
    new, last = step(new, batch, jax.random.PRNGKey(6 + i))
  assert float(last["loss"]) < 0.5 * float(first["loss"]), (first["loss"], last["loss"])


def test_paper_architecture_builds_at_stride_four():
  mc = configs.model_config("paper", num_keypoints=2, image_size=(16, 16))
  net = train.build_model(mc)
  state = train.create_train_state(jax.random.PRNGKey(0), net,
                                   train.build_optimizer(configs.train_config()), (16, 16))
  out = net.apply({"params": state.params}, jnp.zeros((1, 16, 16, 3), jnp.uint8),
                  jnp.zeros((1, 16, 16, 3), jnp.uint8))
  assert out["reconstruction"].shape == (1, 16, 16, 3)
  assert out["target"]["features"].shape == (1, 4, 4, 128)  # stride 4, 128 channels


# (model, compute dtype, steps, sprites that must be found). The baselines are held to less: at
# an equal budget they find two of the three sprites, which is the comparison the tracking
# evaluation reports. The Transporter computing its convolutions in bfloat16 (the accelerators'
# fast path) must find every sprite too; its rounding takes another path, which on one AVX2
# machine found the third sprite between 600 and 800 steps (float32 there: by 400).
LEARNING = [("transporter", "float32", 600, 3), ("transporter", "bfloat16", 800, 3),
            ("jakab", "float32", 500, 2), ("zhang", "float32", 500, 2)]


@pytest.mark.parametrize("model_type,dtype,steps,found", LEARNING)
def test_model_learns_sprites(model_type, dtype, steps, found, optimised):
  """A tiny model puts a keypoint on the sprites of held-out frames; untrained it does not."""
  size, k = 32, 4
  frames, positions = sprites.generate(12, 50, size=size, num_sprites=3, sprite_size=5, seed=0)
  train_frames = frames[:10].reshape(-1, size, size, 3)
  test_frames = frames[10:].reshape(-1, size, size, 3)
  test_positions = positions[10:].reshape(-1, 3, 2)
  mc = configs.model_config("deepmind", num_keypoints=k, image_size=(size, size),
                            centering="mean_frame", model_type=model_type, compute_dtype=dtype)
  tc = configs.train_config(batch_size=16, learning_rate=2e-3, max_offset=10)
  net = train.build_model(mc)
  state = train.create_train_state(jax.random.PRNGKey(0), net, train.build_optimizer(tc),
                                   (size, size), train_frames.mean(0) / 255.0)
  index = data_lib.make_pair_index(np.full(10, 50), tc.min_offset, tc.max_offset)
  device_frames = jnp.asarray(train_frames)
  step = xla.jit(lambda s: train.sample_and_train(s, device_frames, index, tc.batch_size),
                 compiler_options=optimised)
  detector = inference.Detector(net, {"params": state.params})

  def recall(state):
    detector.variables = {"params": state.params}
    return metrics.object_recall(detector(test_frames), test_positions, threshold=2.5)

  untrained = recall(state)
  for _ in range(steps):
    state, m = step(state)
  trained = recall(state)
  print(model_type, dtype, "untrained recall", untrained, "trained recall", trained,
        "loss", float(m["loss"]))
  assert jax.tree.leaves(state.params)[0].dtype == jnp.float32  # parameters stay float32
  assert untrained.max() < 0.5
  assert np.sum(trained >= 0.9) >= found, trained


def test_mean_frame_centring_is_fixed_and_zeroes_static_background():
  frames, _ = _frames()
  flat = frames.reshape(-1, 16, 16, 3)
  mean = flat.mean(0) / 255.0
  mc = configs.model_config("deepmind", num_keypoints=2, image_size=(16, 16),
                            centering="mean_frame")
  net = train.build_model(mc)
  state = train.create_train_state(jax.random.PRNGKey(0), net,
                                   train.build_optimizer(configs.train_config()), (16, 16), mean)
  batch = {"source": jnp.asarray(flat[:4]), "target": jnp.asarray(flat[4:8])}
  new, _ = jax.jit(train.train_step)(state, batch, jax.random.PRNGKey(5))
  np.testing.assert_array_equal(new.params["frame_mean"], np.asarray(mean, np.float32))
  out = net.apply({"params": new.params}, batch["source"], batch["target"])
  np.testing.assert_allclose(out["target_image"], flat[4:8] / 255.0 - mean, atol=1e-6)
  with pytest.raises(ValueError, match="centering"):
    configs.validate(configs.model_config(centering="median"))


def test_blanked_top_rows_are_invisible_to_the_model_and_the_detector():
  # What is drawn in the blanked rows (a game's score) changes neither the keypoints, nor the
  # loss, nor its gradient, nor the detector's output; without blanking it changes all of them.
  frames, _ = _frames()
  flat = frames.reshape(-1, 16, 16, 3)
  scribbled = flat.copy()
  scribbled[:, :5] = np.random.default_rng(0).integers(0, 256, scribbled[:, :5].shape)
  for rows in (5, 0):
    net, state, _ = _setup(blank_top_rows=rows)
    loss_and_grad = jax.jit(lambda p, b: jax.value_and_grad(train.loss_fn, has_aux=True)(
        p, state.batch_stats, state.apply_fn, b, jax.random.PRNGKey(1)))
    grads, losses, keypoints = [], [], []
    for f in (flat, scribbled):
      batch = {"source": jnp.asarray(f[:4]), "target": jnp.asarray(f[4:8])}
      (loss, (out, _)), g = loss_and_grad(state.params, batch)
      grads.append(g)
      losses.append(float(loss))
      keypoints.append(out["target"]["keypoints"])
      if rows:
        assert float(jnp.abs(out["target_image"][:, :rows]).max()) == 0.0
    detect = inference.Detector(net, train.model_variables(state.params, state.batch_stats))
    moved = np.abs(detect(flat[:4]) - detect(scribbled[:4])).max()
    grad_change = max(float(jnp.abs(a - b).max()) for a, b in zip(
        jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])))
    if rows:
      assert moved == 0.0 and losses[0] == losses[1] and grad_change == 0.0
      np.testing.assert_array_equal(keypoints[0], keypoints[1])
    else:
      assert moved > 1e-3 and losses[0] != losses[1] and grad_change > 0.0
  with pytest.raises(ValueError, match="blank_top_rows"):
    configs.validate(configs.model_config(image_size=(16, 16), blank_top_rows=16))
  # Runs saved before the option existed read back with nothing blanked.
  old = ml_collections.ConfigDict({"model": {"arch": "deepmind", "num_keypoints": 3}})
  assert configs.complete(old).model.blank_top_rows == 0


def test_cosine_schedule_warms_up_then_decays_to_its_floor():
  tc = configs.train_config(learning_rate=2e-3, lr_schedule="cosine", warmup_steps=10,
                            final_lr_fraction=0.1, num_steps=110)
  lr = train.learning_rate_schedule(tc)
  np.testing.assert_allclose([float(lr(0)), float(lr(5)), float(lr(10))], [0.0, 1e-3, 2e-3],
                             rtol=1e-6, atol=1e-9)
  np.testing.assert_allclose(float(lr(60)), 0.5 * (2e-3 + 2e-4), rtol=1e-5)  # half-way
  np.testing.assert_allclose(float(lr(110)), 2e-4, rtol=1e-5)
  # The default stays the paper's staircase: constant within a decay period.
  default = train.learning_rate_schedule(configs.train_config(learning_rate=1e-3))
  assert float(default(0)) == float(default(99_999)) == pytest.approx(1e-3)
  assert float(default(100_000)) == pytest.approx(0.95e-3)


def test_gradient_clipping_is_applied_before_adam():
  import optax  # pylint: disable=g-import-not-at-top
  params = {"w": jnp.zeros(3)}
  # A huge gradient then a small one: Adam's second update depends on their relative sizes,
  # which clipping the first to norm 0.5 changes.
  grads = [{"w": jnp.array([30.0, 40.0, 0.0])}, {"w": jnp.array([0.0, 0.1, 0.1])}]

  def updates(tx):
    state, out = tx.init(params), []
    for g in grads:
      u, state = tx.update(g, state, params)
      out.append(np.asarray(u["w"]))
    return out

  clipped = updates(train.build_optimizer(configs.train_config(grad_clip_norm=0.5)))
  reference = updates(optax.chain(optax.clip_by_global_norm(0.5), optax.adam(1e-3)))
  plain = updates(train.build_optimizer(configs.train_config()))
  np.testing.assert_allclose(clipped[1], reference[1], rtol=1e-6)
  assert np.abs(clipped[1] - plain[1]).max() > 1e-5


def test_scanned_steps_equal_single_steps():
  import optax  # pylint: disable=g-import-not-at-top
  # Plain SGD: Adam divides by the gradient's size, so parameters whose gradient is zero in
  # exact arithmetic (the heatmap bias: the softmax ignores a shift) would move by +-lr on
  # rounding noise, whatever the loop structure.
  net = train.build_model(configs.model_config("deepmind", num_keypoints=2, image_size=(16, 16)))
  state = train.create_train_state(jax.random.PRNGKey(0), net, optax.sgd(0.1), (16, 16))
  frames, _ = _frames(episodes=2)
  f = jnp.asarray(frames.reshape(-1, 16, 16, 3))
  index = data_lib.make_pair_index(np.full(2, 20), 1, 10)
  single = xla.jit(lambda s: train.sample_and_train(s, f, index, 2))
  a = state
  losses = []
  for _ in range(3):
    a, m = single(a)
    losses.append(float(m["loss"]))
  b, mb = xla.jit(lambda s: train.sample_and_train_steps(s, f, index, 2, 3))(state)
  assert int(b.step) == int(a.step) == 3
  np.testing.assert_array_equal(np.asarray(a.key), np.asarray(b.key))
  # Same pairs, same updates; a loop body may fuse differently, so allow float rounding scaled
  # to the parameters (the values are O(0.1-1)).
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4,
                               atol=1e-5 * max(1.0, float(np.abs(np.asarray(x)).max())))
  assert mb["loss"].shape == (3,)
  np.testing.assert_allclose(np.asarray(mb["loss"]), losses, rtol=1e-4)


def test_inverse_std_weights_favour_rarely_changing_pixels_and_weight_the_loss():
  # Pixel (0, 0) changes every frame, pixel (1, 1) once in 10 frames, the rest never.
  frames = np.zeros((10, 4, 4, 3), np.uint8)
  frames[::2, 0, 0] = 255
  frames[3, 1, 1] = 255
  dataset = data_lib.Dataset(frames, np.array([0]), np.array([10]), {}, {})
  std = dataset.pixel_std()
  np.testing.assert_allclose(std[0, 0], 0.5, rtol=1e-6)  # a 0 / 1 pixel half the time
  np.testing.assert_allclose(std[1, 1], 0.3, rtol=1e-6)  # sqrt(0.1 * 0.9)
  assert std[2, 2] == 0.0
  assert train.pixel_loss_weights(dataset, configs.train_config()) is None  # the default
  w = train.pixel_loss_weights(
      dataset, configs.train_config(loss_weighting="inverse_std", loss_weight_floor=0.1))
  assert w.shape == (4, 4) and w.mean() == pytest.approx(1.0)
  # 1 / std^2, the floor capping the never-changing pixels' weight.
  np.testing.assert_allclose(w[2, 2] / w[0, 0], 0.5**2 / 0.1**2, rtol=1e-5)
  np.testing.assert_allclose(w[1, 1] / w[0, 0], 0.5**2 / 0.3**2, rtol=1e-5)
  # The reconstruction loss is the weighted mean of the squared error.
  _, state, _ = _setup(size=16)
  f = jnp.asarray(_frames()[0].reshape(-1, 16, 16, 3))
  batch = {"source": f[:2], "target": f[5:7]}
  plain, (out, _) = train.loss_fn(state.params, {}, state.apply_fn, batch, jax.random.PRNGKey(0))
  squared = np.square(np.asarray(out["reconstruction"] - out["target_image"]))
  weights = np.zeros((16, 16), np.float32)
  weights[3, 5] = 256.0
  weighted, _ = train.loss_fn(state.params, {}, state.apply_fn, {**batch, "pixel_weights":
                                                                   jnp.asarray(weights)},
                              jax.random.PRNGKey(0))
  np.testing.assert_allclose(float(plain), squared.mean(), rtol=1e-5)
  np.testing.assert_allclose(float(weighted), squared[:, 3, 5].mean(), rtol=1e-5)
  with pytest.raises(ValueError, match="loss_weighting"):
    configs.validate(configs.model_config(), configs.train_config(loss_weighting="std"))
  with pytest.raises(ValueError, match="loss_weight_floor"):
    configs.validate(configs.model_config(), configs.train_config(loss_weight_floor=0.0))


def test_steps_per_dispatch_defaults_to_one_on_the_cpu_and_divides_the_periods_elsewhere():
  from experiments import harness  # pylint: disable=g-import-not-at-top
  periods = {"log_every": 100, "checkpoint_every": 1000, "image_every": 500}
  assert harness.steps_per_dispatch(0, periods, backend="cpu") == 1
  assert harness.steps_per_dispatch(0, periods, backend="gpu") == 50
  assert harness.steps_per_dispatch(0, {**periods, "log_every": 20}, backend="tpu") == 10
  assert harness.steps_per_dispatch(0, {"log_every": 7}, backend="gpu") == 1
  assert harness.steps_per_dispatch(4, {"log_every": 8}) == 4
  with pytest.raises(ValueError, match=r"^log_every \(10\) is not a multiple of "):
    harness.steps_per_dispatch(4, {"log_every": 10})


def test_bfloat16_compute_runs_the_convolutions_in_bfloat16_and_the_rest_in_float32():
  mc = configs.model_config("deepmind", num_keypoints=2, image_size=(16, 16),
                            compute_dtype="bfloat16")
  net = train.build_model(mc)
  state = train.create_train_state(jax.random.PRNGKey(0), net,
                                   train.build_optimizer(configs.train_config()), (16, 16))
  frames = jnp.asarray(_frames()[0][0, :2])
  out = net.apply({"params": state.params}, frames, frames[::-1])
  assert out["reconstruction"].dtype == jnp.float32
  assert out["target"]["keypoints"].dtype == jnp.float32
  hlo = jax.jit(lambda p: net.apply({"params": p}, frames, frames)).lower(state.params).as_text()
  assert re.search(r"convolution.*bf16", hlo)
  # Close to the float32 model with the same parameters (bfloat16 keeps 8 bits of mantissa).
  f32 = train.build_model(configs.model_config("deepmind", num_keypoints=2, image_size=(16, 16)))
  ref = f32.apply({"params": state.params}, frames, frames[::-1])
  np.testing.assert_allclose(out["target"]["keypoints"], ref["target"]["keypoints"], atol=0.05)
  with pytest.raises(ValueError, match="compute_dtype must be one of"):
    configs.validate(configs.model_config(compute_dtype="float16"))
