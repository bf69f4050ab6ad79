"""RandAugment (flaxcnn/randaugment.py): each op against PIL, magnitude semantics,
randomness, jit with a traced magnitude. Small images; each jitted function is
compiled once per shape."""
import numpy as np
import pytest

import jax
import jax.numpy as jnp
from PIL import Image, ImageEnhance, ImageOps

from flaxcnn import randaugment as ra

H, W = 24, 32            # non-square, so an x/y mix-up shows
MAGS = (0.0, 7.0, 19.0, 30.0)
CASES = [(o, m, s) for o in range(len(ra.OPS)) for m in MAGS for s in (1.0, -1.0)]
GEOMETRIC = {"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"}
# PIL computes these in double / fixed point; ours is float32 / exact integers.
OFF_BY_ONE = {"AutoContrast", "Color", "Contrast", "Brightness", "Sharpness"}


def _structured(n, channels, seed=0, h=H, w=W):
  """Smooth patterns plus noise in a restricted range, so AutoContrast/Equalize do
  something and the geometric ops move recognisable content."""
  rs = np.random.RandomState(seed)
  yy, xx = np.mgrid[0:h, 0:w]
  tint = np.array([1.0, 0.7, 0.4])[:channels]
  out = []
  for i in range(n):
    wave = np.sin(xx / (3 + i % 5) + i)[..., None] * 0.5 + 0.5
    x = 40 + 120 * wave * tint + 1.5 * yy[..., None] + rs.randint(0, 30, (h, w, channels))
    out.append(np.clip(x, 0, 255).astype(np.uint8))
  return np.stack(out)


def _pil(img, name, m, s):
  """The reference: PIL at the parameters the docstring's table gives."""
  gray = img.shape[-1] == 1
  im = Image.fromarray(img[..., 0] if gray else img)
  lvl = min(max(m, 0.0), 30.0) / 30.0
  fac = 1.0 + s * 0.9 * lvl
  kw = dict(resample=Image.NEAREST, fillcolor=128 if gray else (128, 128, 128))
  if name == "Identity":
    r = im
  elif name == "AutoContrast":
    r = ImageOps.autocontrast(im)
  elif name == "Equalize":
    r = ImageOps.equalize(im)
  elif name == "Rotate":
    r = im.rotate(s * 30.0 * lvl, **kw)
  elif name == "Solarize":
    r = ImageOps.solarize(im, 256 - 256 * lvl)
  elif name == "Color":
    r = ImageEnhance.Color(im).enhance(fac)
  elif name == "Posterize":
    r = ImageOps.posterize(im, int(8 - round(4 * lvl)))
  elif name == "Contrast":
    r = ImageEnhance.Contrast(im).enhance(fac)
  elif name == "Brightness":
    r = ImageEnhance.Brightness(im).enhance(fac)
  elif name == "Sharpness":
    r = ImageEnhance.Sharpness(im).enhance(fac)
  else:
    t = ra.TRANSLATE_FRAC * lvl * s
    matrix = {"ShearX": (1, 0.3 * lvl * s, 0, 0, 1, 0),
              "ShearY": (1, 0, 0, 0.3 * lvl * s, 1, 0),
              "TranslateX": (1, 0, t * W, 0, 1, 0),
              "TranslateY": (1, 0, 0, 0, 1, t * H)}[name]
    r = im.transform(im.size, Image.AFFINE, matrix, **kw)
  r = np.asarray(r)
  return r[..., None] if gray else r


_apply_batch = jax.jit(jax.vmap(lambda im, o, m, s: ra.apply_op(im, o, m, s, 128)))


@pytest.fixture(scope="module", params=[3, 1], ids=["rgb", "gray"])
def op_outputs(request):
  channels = request.param
  imgs = _structured(len(CASES), channels)
  out = _apply_batch(jnp.asarray(imgs), jnp.array([c[0] for c in CASES]),
                     jnp.array([c[1] for c in CASES], jnp.float32),
                     jnp.array([c[2] for c in CASES], jnp.float32))
  return imgs, np.asarray(out)


def test_each_op_matches_pil(op_outputs):
  imgs, out = op_outputs
  assert out.dtype == np.uint8 and out.shape == imgs.shape
  for i, (o, m, s) in enumerate(CASES):
    name = ra.OPS[o]
    ref = _pil(imgs[i], name, m, s)
    diff = np.abs(out[i].astype(int) - ref.astype(int))
    where = f"{name} M={m} sign={s} C={imgs.shape[-1]}"
    if name in GEOMETRIC:   # PIL's fixed-point affine breaks a few exact ties otherwise
      assert (diff > 0).mean() <= 0.01, where
    elif name in OFF_BY_ONE:
      assert diff.max() <= 1 and (diff > 0).mean() <= 0.05, where
    else:
      assert diff.max() == 0, where


def test_magnitude_zero_is_identity_except_autocontrast_equalize(op_outputs):
  imgs, out = op_outputs
  for i, (o, m, s) in enumerate(CASES):
    name = ra.OPS[o]
    if m == 0.0 and name not in ("AutoContrast", "Equalize"):
      np.testing.assert_array_equal(out[i], imgs[i], err_msg=name)
    noop = {"Identity"} | ({"Color"} if imgs.shape[-1] == 1 else set())
    if m == 30.0 and name not in noop:   # every op does something at full strength
      assert not np.array_equal(out[i], imgs[i]), name
    if name == "Color" and imgs.shape[-1] == 1:   # grey: Color degrades to identity
      np.testing.assert_array_equal(out[i], imgs[i])


_bilinear_rotate = jax.jit(lambda im, deg: ra.affine_transform(
    im, ra.rotate_matrix(deg, H, W), 128, "bilinear"))


def test_bilinear_affine_matches_pil():
  img = (np.random.RandomState(1).rand(H, W, 3) * 255).astype(np.uint8)
  for deg in (7.0, -23.0):
    ref = np.asarray(Image.fromarray(img).rotate(deg, resample=Image.BILINEAR,
                                                 fillcolor=(128, 128, 128)))
    out = np.asarray(_bilinear_rotate(jnp.asarray(img), jnp.float32(deg)))
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


def test_per_channel_fill():
  img = jnp.full((8, 8, 3), 200, jnp.uint8)
  out = np.asarray(ra.affine_transform(img, (1, 0, 4.0, 0, 1, 0), (1, 2, 3)))
  np.testing.assert_array_equal(out[:, :4], 200)
  np.testing.assert_array_equal(out[:, 4:], np.broadcast_to([1, 2, 3], (8, 4, 3)))


def test_sample_ops_uniform_with_random_signs():
  ops, signs = ra.sample_ops(jax.random.PRNGKey(0), 1400, 2)
  counts = np.bincount(np.asarray(ops).ravel(), minlength=len(ra.OPS))
  assert ops.shape == signs.shape == (2, 1400)
  assert counts.min() > 140 and counts.max() < 260      # 200 expected each
  assert 0.4 < (np.asarray(signs) > 0).mean() < 0.6
  assert not np.array_equal(np.asarray(ops[0]), np.asarray(ops[1]))   # layers differ


_traces = []


@jax.jit
def _ra_traced(rng, images, magnitude):
  _traces.append(1)
  return ra.randaugment(rng, images, 2, magnitude)


def _binary_images(n, seed=0):
  """0/255 images with under 255 zeros per channel: AutoContrast and Equalize leave
  them alone, so at M=0 every op is the identity."""
  rs = np.random.RandomState(seed)
  return np.where(rs.rand(n, 32, 32, 3) < 0.15, 0, 255).astype(np.uint8)


def test_randaugment_jit_traced_magnitude_determinism():
  imgs = jnp.asarray(_structured(16, 3, h=32, w=32))
  key = jax.random.PRNGKey(0)
  a = _ra_traced(key, imgs, jnp.float32(12.0))
  b = _ra_traced(key, imgs, jnp.float32(12.0))
  c = _ra_traced(jax.random.PRNGKey(1), imgs, jnp.float32(12.0))
  d = _ra_traced(key, imgs, jnp.float32(25.0))
  assert a.dtype == jnp.uint8 and a.shape == imgs.shape
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert not np.array_equal(a, d)
  assert len(_traces) == 1       # a new magnitude does not recompile
  changed = np.any(np.asarray(a) != np.asarray(imgs), axis=(1, 2, 3))
  assert changed.sum() >= 8      # P(both ops identity-like) is small

  binary = jnp.asarray(_binary_images(16))              # same shape: no retrace
  np.testing.assert_array_equal(_ra_traced(key, binary, jnp.float32(0.0)), binary)
  assert not np.array_equal(_ra_traced(key, binary, jnp.float32(30.0)), binary)
  assert len(_traces) == 1


def test_different_images_get_different_ops():
  same = jnp.asarray(np.repeat(_structured(1, 3, h=32, w=32), 16, axis=0))
  out = np.asarray(_ra_traced(jax.random.PRNGKey(3), same, jnp.float32(20.0)))
  distinct = {o.tobytes() for o in out}
  assert len(distinct) >= 8


def test_per_image_magnitude_and_grayscale():
  imgs = jnp.asarray(_binary_images(8)[..., :1])          # (8, 32, 32, 1)
  mags = jnp.array([0.0, 30.0] * 4)
  f = jax.jit(lambda k, x, m: ra.randaugment(k, x, 3, m, fill=0))
  out = np.asarray(f(jax.random.PRNGKey(0), imgs, mags))
  assert out.shape == imgs.shape and out.dtype == np.uint8
  np.testing.assert_array_equal(out[0::2], np.asarray(imgs)[0::2])   # M=0: untouched
  assert np.any(out[1::2] != np.asarray(imgs)[1::2])


def test_bad_inputs():
  key = jax.random.PRNGKey(0)
  with pytest.raises(ValueError, match="uint8"):
    ra.randaugment(key, jnp.zeros((2, 8, 8, 3), jnp.float32), 2, 9.0)
  with pytest.raises(ValueError, match="C in"):
    ra.randaugment(key, jnp.zeros((2, 8, 8, 4), jnp.uint8), 2, 9.0)
  with pytest.raises(ValueError, match="num_layers"):
    ra.randaugment(key, jnp.zeros((2, 8, 8, 3), jnp.uint8), -1, 9.0)
  x = jnp.zeros((2, 8, 8, 3), jnp.uint8)
  assert ra.randaugment(key, x, 0, 9.0) is x
