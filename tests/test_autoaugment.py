"""The TF references' policies (flaxcnn/autoaugment.py): AutoAugment's ImageNet policy
(its shape, each op's argument by the reference's level rules, the per-op
probabilities, the EfficientNet recipe training with it from its config file) and
the references' RandAugment (its 16 ops, levels above 10 extrapolated, Cutout)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from flaxcnn import autoaugment, randaugment, train
from flaxcnn import config as config_lib


def _images(n=8, size=16, channels=3, seed=0):
  return jnp.asarray(np.random.RandomState(seed).randint(0, 256, (n, size, size, channels)),
                     jnp.uint8)


def _one_op(name, level, images, sign=1.0):
  op = autoaugment.OPS.index(name)
  fill = jnp.full((images.shape[-1],), 128, jnp.uint8)
  return jax.vmap(lambda im: autoaugment.apply_op(im, op, level, sign, fill))(images)


def test_the_imagenet_policy_has_25_sub_policies_of_two_known_ops():
  policy = autoaugment.POLICIES["v0"]
  assert len(policy) == 25 and {len(sub) for sub in policy} == {2}
  for sub in policy:
    for name, prob, level in sub:
      assert name in autoaugment.OPS and 0.0 <= prob <= 1.0 and 0 <= level <= 10
  ops, probs, levels = autoaugment.policy_table(policy)
  assert ops.shape == probs.shape == levels.shape == (25, 2)
  assert policy[6] == (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3))


def test_each_op_takes_its_argument_by_the_references_level_rule():
  x = _images()
  xi = np.asarray(x).astype(int)
  np.testing.assert_array_equal(_one_op("Invert", 9, x), 255 - xi)
  # Posterize: int(4 L / 10) bits, at least 1 (TF clamps a shift of 8 to 7)
  np.testing.assert_array_equal(_one_op("Posterize", 6, x), xi & 0b11000000)
  np.testing.assert_array_equal(_one_op("Posterize", 2, x), xi & 0b10000000)
  # Solarize: threshold int(256 L / 10); SolarizeAdd: + int(110 L / 10) below 128
  np.testing.assert_array_equal(_one_op("Solarize", 3, x), np.where(xi < 76, xi, 255 - xi))
  np.testing.assert_array_equal(_one_op("SolarizeAdd", 3, x),
                                np.where(xi < 128, np.minimum(xi + 33, 255), xi))
  # the enhance ops: factor 0.1 + 1.8 L / 10, no sign (Brightness: the blend with black)
  for level, sign in ((9, 1.0), (9, -1.0), (0, 1.0)):
    factor = np.float32(0.1 + 1.8 * level / 10)     # the reference: a double, to float32
    expected = np.clip(np.floor(xi.astype(np.float32) * factor), 0, 255)
    np.testing.assert_array_equal(_one_op("Brightness", level, x, sign), expected)
  # Color: the blend with the grey image at 1.72; its floor may land one level apart
  # where XLA fuses the blend otherwise (a contracted multiply-add), never more.
  color = np.asarray(_one_op("Color", 9, x)).astype(int)
  blended = np.asarray(randaugment.blend(randaugment._gray(x), x, 1.72)).astype(int)
  assert np.abs(color - blended).max() <= 1 and np.mean(color != blended) < 0.02
  # geometric: Rotate 30 L / 10 degrees with its sign; translate 250/224 of the side
  np.testing.assert_array_equal(
      _one_op("Rotate", 5, x, -1.0),
      jax.vmap(lambda im: randaugment.affine_transform(
          im, randaugment.rotate_matrix(-15.0, 16, 16), 128))(x))
  shifted = _one_op("TranslateY", 1, x)        # 25 px of 224: 16 x 25/224 = 1.79 px
  np.testing.assert_array_equal(shifted[:, :-2], x[:, 2:])
  assert (np.asarray(shifted[:, -1]) == 128).all()


def _tf_blend(image1, image2, factor):
  """tensorflow/tpu autoaugment.py's blend."""
  import tensorflow as tf
  if factor == 0.0:
    return tf.convert_to_tensor(image1)
  if factor == 1.0:
    return tf.convert_to_tensor(image2)
  temp = tf.cast(image1, tf.float32) + factor * (tf.cast(image2, tf.float32)
                                                 - tf.cast(image1, tf.float32))
  if 0.0 < factor < 1.0:
    return tf.cast(temp, tf.uint8)
  return tf.cast(tf.clip_by_value(temp, 0.0, 255.0), tf.uint8)


def _tf_contrast(image, factor):
  """tensorflow/tpu autoaugment.py's contrast, line for line."""
  import tensorflow as tf
  degenerate = tf.cast(tf.image.rgb_to_grayscale(image), tf.int32)
  hist = tf.histogram_fixed_width(degenerate, [0, 255], nbins=256)
  mean = tf.reduce_sum(tf.cast(hist, tf.float32)) / 256.0
  degenerate = tf.clip_by_value(tf.ones_like(degenerate, dtype=tf.float32) * mean, 0.0, 255.0)
  degenerate = tf.image.grayscale_to_rgb(tf.cast(degenerate, tf.uint8))
  return _tf_blend(degenerate, image, factor).numpy().astype(int)


def _tf_sharpness(image, factor):
  """tensorflow/tpu autoaugment.py's sharpness, line for line."""
  import tensorflow as tf
  orig = tf.constant(image)
  x = tf.expand_dims(tf.cast(orig, tf.float32), 0)
  kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=tf.float32,
                       shape=[3, 3, 1, 1]) / 13.
  kernel = tf.tile(kernel, [1, 1, 3, 1])
  degenerate = tf.nn.depthwise_conv2d(x, kernel, strides=[1, 1, 1, 1], padding="VALID",
                                      dilations=[1, 1])
  degenerate = tf.squeeze(tf.cast(tf.clip_by_value(degenerate, 0.0, 255.0), tf.uint8), [0])
  mask = tf.pad(tf.ones_like(degenerate), [[1, 1], [1, 1], [0, 0]])
  padded = tf.pad(degenerate, [[1, 1], [1, 1], [0, 0]])
  result = tf.where(tf.equal(mask, 1), padded, orig)
  return _tf_blend(result, orig, factor).numpy().astype(int)


@pytest.mark.parametrize("size", [16, 40])
def test_contrast_and_sharpness_follow_the_tf_reference(size):
  """Contrast blended toward PIL's mean grey, where the reference blends toward
  sum(histogram) / 256 (the pixel count / 256: 1 at 16 x 16, 6 at 40 x 40); Sharpness
  rounded the smoothed image, where the reference truncates it."""
  x = _images(n=3, size=size, seed=size)
  for level in (2, 9):
    factor = float(np.float32(0.1 + 1.8 * level / 10))
    ours = np.asarray(_one_op("Contrast", level, x)).astype(int)
    np.testing.assert_array_equal(ours, [_tf_contrast(np.asarray(im), factor) for im in x])
    # the smoothed image's truncation may land one level apart where the sums of the
    # 3x3 filter are added in another order (PIL's rounding: 18-23% of the pixels)
    ours = np.asarray(_one_op("Sharpness", level, x)).astype(int)
    ref = np.stack([_tf_sharpness(np.asarray(im), factor) for im in x])
    assert np.abs(ours - ref).max() <= 1 and np.mean(ours != ref) < 0.01


def test_each_op_is_applied_with_its_probability():
  """Invert with p = 0.3, then an op with p = 0: the inverted fraction of 4,000
  images is 0.3 within 4 standard deviations of a binomial (0.029)."""
  x = jnp.zeros((4000, 4, 4, 1), jnp.uint8)
  out = autoaugment.autoaugment(jax.random.PRNGKey(0), x,
                                policy=((("Invert", 0.3, 0), ("Equalize", 0.0, 0)),))
  inverted = float(np.mean(np.asarray(out)[:, 0, 0, 0] == 255))
  assert abs(inverted - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 4000)
  assert set(np.unique(np.asarray(out))) <= {0, 255}


def test_sub_policies_are_drawn_per_image_and_a_key_repeats_them():
  x = jnp.broadcast_to(_images(n=1, size=24), (64, 24, 24, 3))
  f = jax.jit(autoaugment.autoaugment)
  a, b = f(jax.random.PRNGKey(1), x), f(jax.random.PRNGKey(1), x)
  np.testing.assert_array_equal(a, b)
  distinct = {np.asarray(im).tobytes() for im in a}
  assert len(distinct) > 10                 # 25 sub-policies, random signs
  gray = autoaugment.autoaugment(jax.random.PRNGKey(2), _images(channels=1))
  assert gray.shape == (8, 16, 16, 1) and gray.dtype == jnp.uint8


def test_bad_policies_and_configs_are_one_line():
  with pytest.raises(ValueError, match="unknown ops"):
    autoaugment.autoaugment(jax.random.PRNGKey(0), _images(), policy=((("Warp", 1.0, 3),),))
  with pytest.raises(ValueError, match="choose one of"):
    autoaugment.autoaugment(jax.random.PRNGKey(0), _images(), policy="v9")
  c = tiny_config(**{"augment.autoaugment": "v0", "augment.randaugment_layers": 2})
  with pytest.raises(ValueError, match="use one policy"):
    config_lib.validate(c)


def test_the_efficientnet_recipe_uses_autoaugment_and_trains_with_it(tmp_path):
  from test_experiments import load
  assert load("efficientnet_b0.py").augment.autoaugment == "v0"
  assert load("efficientnet_b0.py").augment.randaugment_layers == 0
  other = load("efficientnet_b0.py", "randaugment")
  assert other.augment.autoaugment == "" and other.augment.randaugment_layers == 2
  assert other.augment.randaugment_ops == "tf" and other.augment.randaugment_magnitude == 10
  summary = train.train_and_evaluate(
      tiny_config(num_steps=3, **{"augment.autoaugment": "v0"}), str(tmp_path))
  assert summary["step"] == 3 and np.isfinite(summary["test"]["loss"])


def _ra_op(name, level, images, sign=1.0, center=(0, 0)):
  """One op with RandAugment's constants (translate 100, cutout 40 pixels at level 10)."""
  op = autoaugment.OPS.index(name)
  fill = jnp.full((images.shape[-1],), 128, jnp.uint8)
  per_level = (autoaugment.RANDAUGMENT_TRANSLATE / 10, autoaugment.RANDAUGMENT_CUTOUT / 10)
  return np.asarray(jax.vmap(lambda im: autoaugment.apply_op(
      im, op, level, sign, fill, *per_level, jnp.asarray(center)))(images)).astype(int)


def _tf_posterize(image, bits):
  """The reference's posterize, run by TensorFlow (where tf.data runs: the CPU)."""
  import tensorflow as tf
  shift = 8 - bits
  return tf.bitwise.left_shift(tf.bitwise.right_shift(tf.constant(image), shift),
                               shift).numpy().astype(int)


def test_tf_randaugment_levels_above_10_extrapolate_as_the_reference():
  x = _images(n=2, size=200)
  xi = np.asarray(x).astype(int)
  fill = jnp.full((3,), 128, jnp.uint8)
  # Rotate 30 L / 10 and shear 0.3 L / 10, not capped: 60 degrees and 0.75 at 20 and 25
  np.testing.assert_array_equal(_ra_op("Rotate", 20, x, -1.0), jax.vmap(
      lambda im: randaugment.affine_transform(
          im, randaugment.rotate_matrix(-60.0, 200, 200), fill))(x))
  np.testing.assert_array_equal(_ra_op("ShearX", 25, x), jax.vmap(
      lambda im: randaugment.affine_transform(im, (1.0, 0.75, 0.0, 0.0, 1.0, 0.0), fill))(x))
  # Translate: 100 L / 10 pixels of the image as it is (150 at level 15)
  moved = _ra_op("TranslateX", 15, x)
  np.testing.assert_array_equal(moved[:, :, :50], xi[:, :, 150:])
  assert (moved[:, :, 50:] == 128).all()
  # the enhance ops' factor 0.1 + 1.8 L / 10 = 3.7 at level 20, clipped to 255
  expected = np.clip(np.floor(xi.astype(np.float32) * np.float32(3.7)), 0, 255)
  np.testing.assert_array_equal(_ra_op("Brightness", 20, x), expected)
  # Posterize as TensorFlow computes int(4 L / 10) bits: 6 at 15, all at 20, 1 at 25
  for level in (0, 5, 15, 20, 25):
    np.testing.assert_array_equal(_ra_op("Posterize", level, x),
                                  _tf_posterize(np.asarray(x), int(level / 10 * 4)))
  np.testing.assert_array_equal(_ra_op("Solarize", 15, x), xi)     # threshold 384
  np.testing.assert_array_equal(_ra_op("SolarizeAdd", 20, x),
                                np.where(xi < 128, np.minimum(xi + 220, 255), xi))
  # Cutout: a square of side 2 int(40 L / 10) = 120 at 15, clipped at the border
  cut = _ra_op("Cutout", 15, x, center=(5, 190))
  inside = np.zeros((200, 200), bool)
  inside[:65, 130:] = True
  assert (cut[:, inside] == 128).all()
  np.testing.assert_array_equal(cut[:, ~inside], xi[:, ~inside])


def test_tf_randaugment_draws_its_16_ops_uniformly_and_repeats_with_a_key():
  n = 16_000
  ops, signs, centers = autoaugment.sample_randaugment(jax.random.PRNGKey(0), n, 1, 24, 32)
  counts = np.bincount(np.asarray(ops).ravel(), minlength=len(autoaugment.OPS))
  names = [autoaugment.OPS[i] for i in np.flatnonzero(counts)]
  assert sorted(names) == sorted(autoaugment.RANDAUGMENT_OPS)      # 16, Cutout included
  p = 1 / 16
  assert np.abs(counts[counts > 0] - n * p).max() < 4 * np.sqrt(n * p * (1 - p))
  assert abs(float(np.mean(np.asarray(signs) > 0)) - 0.5) < 4 * np.sqrt(0.25 / n)
  c = np.asarray(centers)
  assert c[..., 0].min() == 0 and c[..., 0].max() == 23 and c[..., 1].max() == 31
  x = _images(n=6, size=24)
  key = jax.random.PRNGKey(3)
  a = autoaugment.randaugment_tf(key, x, 2, 15.0)
  np.testing.assert_array_equal(a, autoaugment.randaugment_tf(key, x, 2, 15.0))
  traced = jax.jit(autoaugment.randaugment_tf, static_argnums=2)(key, x, 2, 15.0)
  np.testing.assert_array_equal(a, traced)     # the level traced (progressive learning)
  assert not np.array_equal(a, x)


def test_the_efficientnetv2_recipe_trains_with_the_tf_randaugment(tmp_path):
  from test_experiments import load
  v2 = load("efficientnetv2_s.py", "l")
  assert v2.augment.randaugment_ops == "tf"
  assert tuple(v2.progressive.randaugment_magnitude) == (5.0, 25.0)   # Table 6, not capped
  c = tiny_config(num_steps=3, **{"augment.randaugment_layers": 2,
                                  "augment.randaugment_magnitude": 25.0,
                                  "augment.randaugment_ops": "tf"})
  summary = train.train_and_evaluate(c, str(tmp_path))
  assert summary["step"] == 3 and np.isfinite(summary["test"]["loss"])
  c.augment.randaugment_ops = "timm"
  with pytest.raises(ValueError, match="randaugment_ops='timm'"):
    config_lib.validate(c)
