"""Data sources, the offline error, streaming determinism and device augmentation."""
import dataclasses
import os
import tarfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from conftest import CIFAR_JPEG, tiny_config
from flaxcnn import augment, data as data_lib, train
from flaxcnn.data import sources, streaming


def _make_folder(root, sizes=((20, 24),), per_class=6, classes=("cat", "dog", "owl"),
                 splits=("train", "test")):
  rng = np.random.RandomState(0)
  for split in splits:
    for c, cls in enumerate(classes):
      d = root / split / cls
      d.mkdir(parents=True)
      for i in range(per_class):
        h, w = sizes[i % len(sizes)]
        img = np.full((h, w, 3), 40 * c, np.uint8) + rng.randint(0, 30, (h, w, 3)).astype(np.uint8)
        Image.fromarray(img).save(d / f"{i:03d}.png")
  return root


def test_digits_are_real_and_split():
  d = sources.digits(validation_size=100)
  assert d.sizes == {"train": 1337, "validation": 100, "test": 360}
  assert d.image_shape == (8, 8, 1) and d.num_classes == 10
  assert d.splits["train"].images.dtype == np.uint8
  assert set(np.unique(d.splits["test"].labels)) == set(range(10))


def test_digits_split_is_cached_and_identical(cache_env, monkeypatch):
  first = sources.digits(validation_size=100)
  assert list((cache_env / "arrays").glob("digits-sklearn-*.npz"))
  import sklearn.model_selection
  monkeypatch.setattr(sklearn.model_selection, "train_test_split", None)   # not called again
  again = sources.digits(validation_size=100)
  for name, split in first.splits.items():
    np.testing.assert_array_equal(again.splits[name].images, split.images)
    np.testing.assert_array_equal(again.splits[name].labels, split.labels)


def test_image_folder_and_archive(tmp_path, cache_env):
  root = _make_folder(tmp_path / "pets")
  d = sources.image_folder(str(root), validation_size=3)
  assert d.class_names == ("cat", "dog", "owl")
  assert d.sizes == {"train": 15, "validation": 3, "test": 18}
  assert d.image_shape == (20, 24, 3)
  # classes are labelled in sorted folder order
  test = d.splits["test"]
  assert np.all(test.images[test.labels == 2].mean() > test.images[test.labels == 0].mean())
  archive = tmp_path / "pets.tar.gz"
  with tarfile.open(archive, "w:gz") as tar:
    tar.add(root, arcname="pets")
  d2 = sources.image_folder(str(archive), validation_size=3)
  np.testing.assert_array_equal(d2.splits["test"].images, test.images)
  assert d2.class_names == d.class_names and d2.sizes == d.sizes
  assert not (cache_env / "extracted").exists()       # read in memory, not unpacked


def _archive_with_links(tmp_path, *links):
  """An archive of a one-class folder plus symbolic links (name, target)."""
  import io
  root = _make_folder(tmp_path / "pets", classes=("cat",), splits=("train",))
  archive = tmp_path / "pets.tar"
  with tarfile.open(archive, "w") as tar:
    tar.add(root, arcname="pets")
    for name, target in links:
      info = tarfile.TarInfo(name)
      info.type, info.linkname = tarfile.SYMTYPE, target
      tar.addfile(info, io.BytesIO(b""))
  return archive


def test_archive_links_inside_it_are_followed(tmp_path, cache_env):
  """A link to an image is read through; a linked class folder makes the archive be
  unpacked (only an extraction follows it); a link to a member the archive lacks is
  named."""
  d = sources.image_folder(str(_archive_with_links(tmp_path, ("pets/train/cat/x.png",
                                                              "000.png"))))
  assert d.sizes == {"train": 7}
  np.testing.assert_array_equal(d.splits["train"].images[-1], d.splits["train"].images[0])
  other = tmp_path / "linked"
  other.mkdir()
  d = sources.image_folder(str(_archive_with_links(other, ("pets/train/kitten", "cat"))))
  assert d.class_names == ("cat", "kitten") and d.sizes == {"train": 12}
  assert (cache_env / "extracted").exists()
  missing = tmp_path / "missing"
  missing.mkdir()
  with pytest.raises(ValueError, match=r"'pets/train/cat/y.png' links to 'gone.png', which "
                                       "the archive lacks"):
    sources.image_folder(str(_archive_with_links(missing, ("pets/train/cat/y.png",
                                                           "gone.png"))))


def test_unreadable_image_is_named(tmp_path, cache_env):
  root = _make_folder(tmp_path / "bad", splits=("train",))
  (root / "train" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
  with pytest.raises(ValueError, match="broken.jpg"):
    sources.image_folder(str(root))


def test_missing_tfds_dataset_fails_fast_with_instructions(tmp_path):
  t = time.time()
  with pytest.raises(FileNotFoundError) as e:
    data_lib.load(tiny_config(**{"data.source": "tfds", "data.name": "cifar10",
                                 "data.data_dir": str(tmp_path)}))
  assert time.time() - t < 30
  msg = str(e.value)
  assert "cifar10" in msg and str(tmp_path) in msg and "download_and_prepare" in msg


def test_missing_folder_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere"):
    sources.image_folder(str(tmp_path / "nowhere"))


def test_held_out_validation_is_fixed_and_disjoint():
  split = data_lib.Split(np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1),
                         np.arange(100, dtype=np.int32))
  a_train, a_val = data_lib.hold_out(split, 10)
  b_train, b_val = data_lib.hold_out(split, 10)
  np.testing.assert_array_equal(a_val.labels, b_val.labels)
  assert not set(a_val.labels) & set(a_train.labels)
  assert len(a_train) + len(a_val) == 100


def test_streaming_is_deterministic_and_resumable(tmp_path, cache_env):
  root = _make_folder(tmp_path / "var", sizes=((40, 50), (60, 45), (48, 48)), per_class=8)
  config = tiny_config(**{"data.source": "folder", "data.root": str(root),
                          "data.in_memory": False, "data.image_size": 32,
                          "data.validation_size": 0, "batch_size": 4,
                          "augment.scale_range": (32, 48)})
  ds = data_lib.load(config)
  assert ds.sizes == {"train": 24, "test": 24} and ds.image_shape == (32, 32, 3)
  opts = streaming.options(config.data, config.augment, 4, 4, config.seed)
  full = list(ds.train_batches(opts, epoch=0, start_step=0))
  assert len(full) == 6 and full[0][0].shape == (4, 32, 32, 3) and full[0][0].dtype == np.uint8
  again = list(ds.train_batches(opts, epoch=0, start_step=0))
  resumed = list(ds.train_batches(opts, epoch=0, start_step=2))
  for (a, la), (b, lb) in zip(full, again):
    np.testing.assert_array_equal(a, b)
  for (a, la), (b, lb) in zip(full[2:], resumed):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
  # two processes: each takes its half of every global batch
  two = dataclasses.replace(opts, process_batch=2)
  halves = [list(ds.train_batches(two, 0, 0, p)) for p in range(2)]
  for t, (images, labels) in enumerate(full):
    np.testing.assert_array_equal(np.concatenate([halves[0][t][0], halves[1][t][0]]), images)
  epoch1 = list(ds.train_batches(opts, epoch=1, start_step=0))
  assert any((a != b).any() for (a, _), (b, _) in zip(full, epoch1))
  # evaluation: every example once, the padding masked
  batches = list(ds.eval_batches("test", 10))
  assert [b[0].shape for b in batches] == [(10, 32, 32, 3)] * 3
  assert sum(b[2].sum() for b in batches) == 24


def test_streaming_training_run(tmp_path, cache_env):
  root = _make_folder(tmp_path / "var", sizes=((40, 50), (60, 45)), per_class=8)
  config = tiny_config(**{"data.source": "folder", "data.root": str(root),
                          "data.in_memory": False, "data.image_size": 32,
                          "data.validation_size": 0, "batch_size": 8, "num_steps": 4,
                          "eval_batch_size": 16, "augment.scale_range": (32, 40)})
  summary = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["step"] == 4 and summary["test"]["count"] == 24


def test_random_crop_and_flip():
  x = jnp.arange(2 * 4 * 4, dtype=jnp.uint8).reshape(2, 4, 4, 1) + 1
  y = augment.random_crop(jax.random.PRNGKey(0), x, 2)
  assert y.shape == x.shape
  # each crop is a window of the zero-padded image: nonzero values keep their order
  for img, out in zip(np.asarray(x), np.asarray(y)):
    padded = np.pad(img[..., 0], 2)
    assert any((padded[i:i + 4, j:j + 4] == out[..., 0]).all()
               for i in range(5) for j in range(5))
  flips = augment.random_flip(jax.random.PRNGKey(1), jnp.tile(x[:1], (64, 1, 1, 1)))
  flipped = np.asarray((flips != x[:1]).any(axis=(1, 2, 3)))
  assert 10 < flipped.sum() < 54
  np.testing.assert_array_equal(np.asarray(flips[flipped][0]), np.asarray(x[0, :, ::-1]))


def test_cutout_zeroes_exactly_the_clipped_square():
  x = jnp.ones((256, 12, 12, 3))
  y = np.asarray(augment.cutout(jax.random.PRNGKey(0), x, 4))
  zero = (y == 0).all(-1)
  for m in zero:
    ys, xs = np.nonzero(m)
    assert len(ys) > 0
    # a full rectangle, at most 4x4, clipped at the border
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    assert len(ys) == h * w and h <= 4 and w <= 4
    if 0 < ys.min() and ys.max() < 11:
      assert h == 4
  sizes = zero.reshape(256, -1).sum(1)
  assert (sizes < 16).any() and (sizes == 16).any()   # some squares cross the border


@pytest.mark.skipif(not os.path.exists(CIFAR_JPEG), reason="../shared/data/cifar10-jpeg absent")
def test_cifar10_jpeg_short_run_learns(tmp_path, cache_env):
  """ResNet-8 on the real CIFAR-10 JPEG images, 150 steps: well above 10% chance."""
  from experiments import cifar10_jpeg_resnet20
  config = cifar10_jpeg_resnet20.get_config()
  config.data.root = CIFAR_JPEG
  config.model.kwargs.depth = 8
  config.batch_size = 64
  config.num_steps = 150
  config.eval_batch_size = 1000
  config.log_every_steps = 50
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["validation"]["count"] == 5000
  assert summary["validation"]["accuracy"] > 0.30
