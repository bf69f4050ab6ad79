"""The streaming pipeline: fused windows, the Inception crop, multi-scale testing."""
import dataclasses
import inspect

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import tiny_config
from flaxcnn import augment, data as data_lib
from flaxcnn.data import streaming


def _jpeg_folder(root, shapes=((150, 200), (200, 150), (120, 120), (100, 210)),
                 per_class=4, classes=("a", "b"), splits=("train", "test")):
  """Photo-like JPEGs (smooth colour fields) of several sizes and aspect ratios."""
  rng = np.random.RandomState(0)
  for split in splits:
    for c, cls in enumerate(classes):
      d = root / split / cls
      d.mkdir(parents=True)
      for i in range(per_class):
        h, w = shapes[i % len(shapes)]
        low = rng.randint(0, 256, (4, 5, 3)).astype(np.uint8)
        img = Image.fromarray(low).resize((w, h), Image.BICUBIC)
        img.save(d / f"{i:03d}.jpg", quality=90)
  return root


def _config(root, **overrides):
  c = tiny_config(**{"data.source": "folder", "data.root": str(root), "data.in_memory": False,
                     "data.image_size": 32, "data.validation_size": 0, "batch_size": 4,
                     "augment.scale_range": (36, 64), **overrides})
  return c


def _options(config):
  """The streaming options of a one-process run of `config`."""
  return streaming.options(config.data, config.augment, config.batch_size,
                           config.batch_size, config.seed)


def _with_crop(config, crop):
  with config.unlocked():   # until config.py has the field
    config.augment.train_crop = crop
  return config


def _windows(fn, shape, draws):
  """`draws` windows (y, x, h, w) of fn(shape, seed) for seeds (0, 0..draws-1)."""
  seeds = tf.stack([tf.zeros(draws, tf.int64), tf.range(draws, dtype=tf.int64)], axis=1)
  ds = tf.data.Dataset.from_tensor_slices(seeds).map(lambda s: fn(tf.constant(shape), s))
  return np.stack(list(ds.batch(draws).as_numpy_iterator())[0])


def test_inception_crop_statistics_match_the_reference():
  """sample_distorted_bounding_box as the EfficientNet reference: area 0.08-1 (0.1 with
  min_object_covered), aspect 3/4-4/3 before the resize, else the 224/256 centre crop."""
  h, w = 375, 500
  win = _windows(lambda s, seed: streaming.inception_window(s, 224, seed), (h, w, 3), 2000)
  y, x, ch, cw = win.T
  assert (y >= 0).all() and (x >= 0).all() and (y + ch <= h).all() and (x + cw <= w).all()
  side = int(224 / 256 * h)
  centre = (ch == side) & (cw == side) & (y == (h - side + 1) // 2) & (x == (w - side + 1) // 2)
  sampled = ~centre
  area = ch[sampled] * cw[sampled] / (h * w)
  aspect = cw[sampled] / ch[sampled]
  assert area.min() >= 0.08 and area.max() < 1.0
  assert aspect.min() >= 0.75 * 0.98 and aspect.max() <= 4 / 3 * 1.02
  assert 0.3 < area.mean() < 0.7        # uniform area in [0.1, 1], large ones rejected
  assert centre.mean() < 0.05             # 10 attempts rarely all fail here
  assert len(np.unique(win, axis=0)) > 1500
  # a strip where no 3/4-4/3 window covers 10%: always the centre crop, as the reference
  win = _windows(lambda s, seed: streaming.inception_window(s, 224, seed), (20, 400, 3), 50)
  side = int(224 / 256 * 20)
  np.testing.assert_array_equal(win, np.tile([[2, (400 - side + 1) // 2, side, side]], (50, 1)))


def test_scale_window_is_the_scale_augmentation():
  """Shorter side resized to s then a size crop == a size * shorter / s window."""
  for scale, side in ((256, 328), (480, 175), (375, 224)):
    win = _windows(lambda s, seed: streaming.scale_window(s, 224, scale, seed), (375, 500), 300)
    assert (win[:, 2] == side).all() and (win[:, 3] == side).all()
    assert (win[:, 0] + side <= 375).all() and (win[:, 1] + side <= 500).all()
    assert win[:, 1].min() < 30 and win[:, 1].max() > 500 - side - 30   # offsets spread


def test_fused_decode_equals_decoding_the_whole_image(tmp_path):
  root = _jpeg_folder(tmp_path / "j", splits=("train",), classes=("a",), per_class=1)
  data = tf.io.read_file(str(root / "train" / "a" / "000.jpg"))
  full = tf.io.decode_jpeg(data, channels=3).numpy().astype(int)
  png = tf.io.encode_png(full.astype(np.uint8))
  for y, x, h, w in ((0, 0, 150, 200), (10, 20, 64, 80), (33, 47, 50, 61)):
    fn = lambda shape: tf.constant([y, x, h, w], tf.int32)
    crop = streaming.decode_window(data, fn).numpy()
    assert crop.shape == (h, w, 3)
    assert np.abs(crop - full[y:y + h, x:x + w]).mean() < 1.5   # chroma edges differ
    np.testing.assert_array_equal(streaming.decode_window(png, fn).numpy(),
                                  full[y:y + h, x:x + w])


@pytest.mark.parametrize("crop", ["scale", "inception"])
def test_train_crops_are_deterministic_and_resumable(tmp_path, cache_env, crop):
  root = _jpeg_folder(tmp_path / "j")
  config = _with_crop(_config(root), crop)
  ds, opts = data_lib.load(config), _options(config)
  full = list(ds.train_batches(opts, epoch=0, start_step=0))
  assert len(full) == 2 and full[0][0].shape == (4, 32, 32, 3) and full[0][0].dtype == np.uint8
  resumed = list(ds.train_batches(opts, epoch=0, start_step=1))
  np.testing.assert_array_equal(full[1][0], resumed[0][0])
  np.testing.assert_array_equal(full[1][1], resumed[0][1])
  again = list(ds.train_batches(opts, epoch=0, start_step=0))
  np.testing.assert_array_equal(full[0][0], again[0][0])
  other = list(ds.train_batches(opts, epoch=1, start_step=0))
  assert any((a[0] != b[0]).any() for a, b in zip(full, other))


def test_inception_eval_uses_the_reference_centre_crop(tmp_path, cache_env):
  root = _jpeg_folder(tmp_path / "j")
  scale = data_lib.load(_config(root))
  incep = data_lib.load(_with_crop(_config(root), "inception"))
  assert scale._eval_fraction(32) == pytest.approx(32 / 37)     # round(32 / 0.875)
  assert incep._eval_fraction(32) == pytest.approx(32 / 64)     # 32 / (32 + 32)
  a = next(scale.eval_batches("test", 8))[0]
  b = next(incep.eval_batches("test", 8))[0]
  assert a.shape == b.shape == (8, 32, 32, 3) and (a != b).any()


def test_a_streamed_folder_is_named_after_the_folder_as_in_memory(tmp_path, cache_env):
  """Streamed or in memory, a folder's data are named after the folder (not after
  config.data.name, which only TFDS reads); config.data.label names both."""
  from flaxcnn.console import data_label
  root = _jpeg_folder(tmp_path / "flowers", shapes=((40, 40),))
  streamed = data_lib.load(_config(root))
  in_memory = data_lib.load(_config(root, **{"data.in_memory": True, "data.image_size": None}))
  assert streamed.name == in_memory.name == "flowers"
  labelled = _config(root, **{"data.label": "Flowers (JPEG)"})
  assert data_label(labelled, streamed) == "Flowers (JPEG)"


def test_small_images_streamed_at_the_default_size_are_said_to_be_upscaled(tmp_path,
                                                                           cache_env, capsys):
  """config.data.image_size unset: 32-pixel images stream at 224, with one line that
  says so and how to keep their size; none when the size is set or the images large."""
  small = _jpeg_folder(tmp_path / "small", shapes=((32, 32),))
  assert data_lib.load(_config(small, **{"data.image_size": None})).image_size == 224
  out = capsys.readouterr().out.splitlines()
  notes = [line for line in out if "upscaled" in line]
  assert len(notes) == 1 and "32x32 images" in notes[0]
  assert "--config.data.image_size=32" in notes[0]
  data_lib.load(_config(small))
  data_lib.load(_config(_jpeg_folder(tmp_path / "large"), **{"data.image_size": None}))
  assert "upscaled" not in capsys.readouterr().out


def test_streaming_reads_its_sections_and_options_not_the_config(tmp_path, cache_env):
  """The streamed dataset is built from the data section alone and its batches from
  an `Options`: the same batches as the run's own options of the whole config, and
  two processes' shares of a global batch make it up."""
  root = _jpeg_folder(tmp_path / "j")
  config = _config(root)
  ds = streaming.load(config.data)
  assert ds.sizes == data_lib.load(config).sizes == {"train": 8, "test": 8}
  opts = streaming.Options(global_batch=4, process_batch=4, seed=config.seed,
                           train_crop="scale", scale_range=(36, 64), flip=False,
                           shuffle_buffer=10_000)
  assert opts == _options(config)
  full = list(ds.train_batches(opts, epoch=0, start_step=0))
  assert [b[0].shape for b in full] == [(4, 32, 32, 3)] * 2
  two = dataclasses.replace(opts, process_batch=2)
  assert two.process_count == 2
  halves = [list(ds.train_batches(two, 0, 0, p)) for p in range(2)]
  for t, (images, labels) in enumerate(full):
    np.testing.assert_array_equal(np.concatenate([halves[0][t][0], halves[1][t][0]]), images)
    np.testing.assert_array_equal(np.concatenate([halves[0][t][1], halves[1][t][1]]), labels)
  for fn in (streaming.load, streaming.train_image, streaming.StreamingDataset.train_batches,
             streaming.TFDSStreamingDataset.train_batches):
    assert "config" not in inspect.signature(fn).parameters


def test_corrupt_image_in_the_stream_is_named(tmp_path, cache_env):
  root = _jpeg_folder(tmp_path / "j")
  (root / "train" / "b" / "broken.jpg").write_bytes(b"not a jpeg at all")
  config = _config(root)
  ds = data_lib.load(config)
  with pytest.raises(ValueError) as e:
    for _ in range(3):
      list(ds.train_batches(_options(config), epoch=_, start_step=0))
  msg = str(e.value)
  assert "broken.jpg" in msg and "\n" not in msg
  with pytest.raises(ValueError, match="broken.jpg"):
    list(ds.eval_batches("train", 3))


class _TinyFCN(nn.Module):
  """Fully convolutional: conv, global average pooling, dense."""
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(4, (3, 3), strides=2)(x / 255.0))
    return nn.Dense(2)(x.mean(axis=(1, 2)))


def test_multiscale_full_images_averaged_over_scales(tmp_path, cache_env):
  """He et al. 2015 Table 5 style: whole images at shorter side s, fully convolutional,
  softmax averaged over scales (and flips); each example counted once."""
  root = _jpeg_folder(tmp_path / "j", per_class=5)
  ds = data_lib.load(_config(root))
  scales = (24, 40)
  model = _TinyFCN()
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 24, 24, 3)))

  @jax.jit   # as the eval step would: one compilation per shape group
  def probs(views):
    ps = [jax.nn.softmax(model.apply(params, v)) for v in augment.full_image_views(views)]
    return sum(ps) / len(ps)

  seen, got = [], {}
  for views, labels, mask in ds.multiscale_batches("test", 3, scales):
    assert len(views) == len(scales) and len(labels) == len(mask) == 3
    for s, v in zip(scales, views):
      assert v.dtype == np.uint8 and min(v.shape[1:3]) == s
    p = np.asarray(probs(tuple(views)))
    for k in np.nonzero(mask)[0]:
      seen.append(int(labels[k]))
      got.setdefault(int(labels[k]), []).append(p[k])
  assert sorted(seen) == sorted(ds.records["test"][1].tolist())    # each once
  # the same scores image by image, at the image's own aspect ratio (exact groups)
  paths, labels = ds.records["test"]
  for path, label in zip(paths, labels):
    image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
    h, w = image.shape[:2]
    views = []
    for s in scales:
      r = round(max(h, w) / min(h, w) / 0.1) * 0.1
      size = (s, round(s * r)) if w >= h else (round(s * r), s)
      views.append(streaming._resize(image, *size).numpy()[None])
    p = np.asarray(probs(tuple(views)))[0]
    assert min(np.abs(q - p).max() for q in got[int(label)]) < 1e-5
  shapes = {tuple(v.shape[1:3] for v in views)
            for views, _, _ in ds.multiscale_batches("test", 3, scales)}
  assert len(shapes) == 4    # 4 aspect groups in this folder: 4 compilations, not 1 per image


def test_check_config_rejects_bad_data_settings():
  data_lib.check_config(tiny_config())
  for field, value in (("data.image_size", -3), ("data.image_size", 10 ** 6),
                       ("augment.scale_range", (480, 256)), ("eval_scales", (224, -1))):
    with pytest.raises(ValueError, match=field.split(".")[-1]):
      data_lib.check_config(tiny_config(**{field: value}))
  with pytest.raises(ValueError, match="train_crop"):
    data_lib.check_config(_with_crop(tiny_config(), "bogus"))


def test_eval_image_size_tests_on_the_centre_of_a_shorter_side_of_that_size(tmp_path, cache_env):
  """He et al. 2016, Table 5: nets trained on 224 crops tested on the 320 x 320 centre
  of a 320 shorter side; here 32 -> 48, the whole shorter side's centre square."""
  from flaxcnn import config as config_lib
  root = _jpeg_folder(tmp_path / "j")
  plain = data_lib.load(_config(root))
  big = data_lib.load(_config(root, **{"data.eval_image_size": 48}))
  assert big._eval_fraction(48) == 1.0 and plain._eval_fraction(32) == pytest.approx(32 / 37)
  images = next(big.eval_batches("test", 8))[0]
  assert images.shape == (8, 48, 48, 3)
  # the window decoded: the centred square of the full shorter side
  for shape in ((150, 200), (200, 150), (100, 210)):
    y, x, h, w = np.asarray(streaming.center_window(tf.constant(shape + (3,)), 1.0))
    side = min(shape)
    assert (h, w) == (side, side) and (y, x) == ((shape[0] - side + 1) // 2,
                                                 (shape[1] - side + 1) // 2)
  # one file through the pipeline equals that window resized to 48
  path = sorted((root / "test" / "a").glob("*.jpg"))[0]
  window = np.asarray(Image.open(path))[:, 25:175]          # 150 x 200 -> 150 x 150
  expected = tf.image.resize(window[None].astype(np.float32), (48, 48), antialias=True)
  got = streaming.eval_image(tf.io.read_file(str(path)), 48, 1.0).numpy()
  assert np.abs(got.astype(float) - expected[0].numpy()).mean() < 2.0   # JPEG decoders
  # a run evaluates at the larger size; in-memory data and other eval modes refuse it
  from flaxcnn.data import feeds
  c = _config(root, **{"data.eval_image_size": 48})
  assert feeds.eval_image_size(c.data, big) == 48
  for bad in ({"data.in_memory": True}, {"eval_mode": "ten_crop"}):
    with pytest.raises(ValueError, match="eval_image_size=48"):
      config_lib.validate(_config(root, **{"data.eval_image_size": 48, **bad}))


def test_the_imagenet_recipe_trains_and_tests_on_320_crops_in_miniature(tmp_path, cache_env):
  """experiments/imagenet.py:preact_resnet200,torch,320 end to end on a JPEG folder:
  a small pre-activation ResNet, random-resized crops, evaluation on larger crops."""
  import os
  from conftest import ROOT
  from flaxcnn import sweep, train
  root = _jpeg_folder(tmp_path / "j")
  module = sweep.load_module(os.path.join(ROOT, "experiments", "imagenet.py"))
  config = module.get_config("preact_resnet200,torch,320")
  assert config.data.eval_image_size == 320 and config.augment.train_crop == "inception"
  config.model.kwargs.update(depth=50, stage_planes=(4, 8, 8, 8), stem_width=4)
  config.data.update({"source": "folder", "root": str(root), "name": "jpegs",
                      "image_size": 32, "eval_image_size": 48, "validation_size": 0})
  config.update({"batch_size": 4, "eval_batch_size": 8, "num_steps": 2,
                 "eval_every_epochs": 1.0, "log_every_steps": 1})
  summary = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["step"] == 2 and np.isfinite(summary["test"]["loss"])
