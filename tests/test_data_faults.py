"""Data faults: differing class sets, stale caches, one-line errors."""
import glob
import os
import tarfile
import time

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config
from flaxcnn import data as data_lib
from flaxcnn.data import sources


def _folder(root, classes=("cat", "dog"), per_class=3, splits=("train", "test"), size=(12, 16)):
  rng = np.random.RandomState(0)
  for split in splits:
    for cls in (classes[split] if isinstance(classes, dict) else classes):
      d = root / split / cls
      d.mkdir(parents=True, exist_ok=True)
      for i in range(per_class):
        Image.fromarray(rng.randint(0, 256, size + (3,)).astype(np.uint8)).save(d / f"{i}.png")
  return root


def _streaming(root):
  return tiny_config(**{"data.source": "folder", "data.root": str(root), "data.in_memory": False,
                        "data.image_size": 8, "data.validation_size": 0})


@pytest.mark.parametrize("streamed", [False, True])
def test_test_class_missing_from_train_is_an_error(tmp_path, cache_env, streamed):
  root = _folder(tmp_path / "pets", {"train": ("cat", "dog"), "test": ("cat", "dog", "emu")})
  with pytest.raises(ValueError) as e:
    if streamed:
      data_lib.load(_streaming(root))
    else:
      sources.image_folder(str(root))
  msg = str(e.value)
  assert "emu" in msg and "test" in msg and "\n" not in msg


@pytest.mark.parametrize("streamed", [False, True])
def test_train_class_without_test_images_is_a_warning(tmp_path, cache_env, streamed):
  root = _folder(tmp_path / "pets", {"train": ("cat", "dog", "emu"), "test": ("cat", "dog")})
  with pytest.warns(UserWarning, match="emu"):
    d = data_lib.load(_streaming(root)) if streamed else sources.image_folder(str(root))
  assert d.num_classes == 3 and d.sizes["test"] == 6


def test_decoded_cache_follows_the_files(tmp_path, cache_env, capsys):
  root = _folder(tmp_path / "pets")
  assert sources.image_folder(str(root)).sizes == {"train": 6, "test": 6}
  assert "cached in" in capsys.readouterr().out
  again = sources.image_folder(str(root))
  out = capsys.readouterr().out
  assert "Using decoded images cached in" in out and str(cache_env) in out
  assert again.sizes == {"train": 6, "test": 6}
  # a new image, then a new class: never the old arrays
  Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(root / "train" / "dog" / "new.png")
  assert sources.image_folder(str(root)).sizes == {"train": 7, "test": 6}
  _folder(root, classes=("emu",), splits=("train", "test"))
  d = sources.image_folder(str(root))
  assert d.num_classes == 3 and d.sizes == {"train": 10, "test": 9}
  # an image replaced in place (same name, new content)
  path = root / "test" / "cat" / "0.png"
  Image.fromarray(np.full((12, 16, 3), 7, np.uint8)).save(path)
  os.utime(path, ns=(time.time_ns() + 10 ** 9,) * 2)
  test = sources.image_folder(str(root)).splits["test"]
  assert (test.images == 7).all(axis=(1, 2, 3)).any()


def test_a_cut_short_cache_is_named_and_rebuilt_and_an_unwritable_one_only_warns(
    tmp_path, capsys):
  """A truncated decoded-image cache gave a 41-line traceback naming no file; an
  unwritable cache directory stopped folder runs."""
  root = _folder(tmp_path / "pets")
  cache_dir = tmp_path / "cache"
  first = sources.image_folder(str(root), cache_dir=str(cache_dir))
  (cached,) = glob.glob(str(cache_dir / "arrays" / "*.npz"))
  with open(cached, "r+b") as f:
    f.truncate(os.path.getsize(cached) // 2)
  capsys.readouterr()
  again = sources.image_folder(str(root), cache_dir=str(cache_dir))
  out = capsys.readouterr().out
  assert f"the decoded-image cache {cached} is unreadable" in out and "cached in" in out
  np.testing.assert_array_equal(again.splits["test"].images, first.splits["test"].images)
  blocked = tmp_path / "a-file"
  blocked.write_text("not a directory")
  third = sources.image_folder(str(root), cache_dir=str(blocked / "cache"))
  assert "could not cache them in" in capsys.readouterr().out
  assert third.sizes == first.sizes


def test_archive_cache_follows_the_content(tmp_path, cache_env):
  """A rewritten archive of the same size and modification time is not stale."""
  root = _folder(tmp_path / "pets")
  image = root / "test" / "cat" / "0.bmp"
  Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(image)
  archive = tmp_path / "pets.tar"
  with tarfile.open(archive, "w") as tar:
    tar.add(root, arcname="pets")
  stat = os.stat(archive)
  assert not sources.image_folder(str(archive)).splits["test"].images.all(axis=(1, 2, 3)).any()
  Image.fromarray(np.full((12, 16, 3), 9, np.uint8)).save(image)   # same size, new pixels
  os.utime(image, ns=(stat.st_atime_ns, os.stat(image).st_mtime_ns - 10 ** 9))
  with tarfile.open(archive, "w") as tar:
    tar.add(root, arcname="pets")
  assert os.stat(archive).st_size == stat.st_size
  os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns))
  test = sources.image_folder(str(archive)).splits["test"]
  assert (test.images == 9).all(axis=(1, 2, 3)).any()


def test_truncated_archive_is_one_line_and_leaves_nothing(tmp_path, cache_env):
  root = _folder(tmp_path / "pets", per_class=20, size=(32, 32))
  archive = tmp_path / "pets.tar.xz"
  with tarfile.open(archive, "w:xz") as tar:
    tar.add(root, arcname="pets")
  data = archive.read_bytes()
  archive.write_bytes(data[:len(data) // 2])
  with pytest.raises(ValueError) as e:
    sources.image_folder(str(archive))
  msg = str(e.value)
  assert "pets.tar.xz" in msg and "truncated" in msg and "\n" not in msg
  assert not glob.glob(str(cache_env / "extracted" / "*.tmp*"))


@pytest.mark.parametrize("kind,said", [
    ("dotdot", "a member 'pets/../../evil.png' whose path leads out of the archive"),
    ("symlink", "a symlink 'pets/train/cat/link.png' -> '../../../../etc/passwd' pointing "
                "out of the archive"),
    ("hardlink", "a hardlink 'pets/train/cat/link.png' -> '../etc/passwd' pointing out of "
                 "the archive")])
def test_an_archive_member_out_of_the_archive_is_named_and_refused(tmp_path, cache_env,
                                                                   kind, said):
  """Such a member was refused with "probably truncated or corrupt: copy or download it
  again"; now the answer names the member and says it is refused."""
  import io
  root = _folder(tmp_path / "pets")
  archive = tmp_path / "pets.tar"
  with tarfile.open(archive, "w") as tar:
    tar.add(root, arcname="pets")
    info = tarfile.TarInfo("pets/../../evil.png" if kind == "dotdot"
                           else "pets/train/cat/link.png")
    if kind == "symlink":
      info.type, info.linkname = tarfile.SYMTYPE, "../../../../etc/passwd"
    elif kind == "hardlink":
      info.type, info.linkname = tarfile.LNKTYPE, "../etc/passwd"
    tar.addfile(info, io.BytesIO(b""))
  extracted = str(cache_env / "extracted" / "*")
  before = set(glob.glob(extracted))   # the cache is shared by the tests of this worker
  with pytest.raises(ValueError) as e:
    sources.image_folder(str(archive))
  msg = str(e.value)
  assert msg.startswith(f"config.data.root={archive} holds {said}, which is refused "
                        "(nothing of the archive is used)"), msg
  assert "truncated" not in msg and "\n" not in msg
  assert set(glob.glob(extracted)) == before


def test_unknown_tfds_name_is_one_line(tmp_path):
  t = time.time()
  with pytest.raises(ValueError) as e:
    sources.tfds_builder("cifar1O", str(tmp_path))
  assert time.time() - t < 30
  msg = str(e.value)
  assert "cifar1O" in msg and "cifar10" in msg and "\n" not in msg and len(msg) < 300


@pytest.mark.parametrize("size", [-3, 0, 10 ** 6])
def test_absurd_image_size_is_rejected_before_allocating(size):
  config = tiny_config(**{"data.source": "synthetic", "data.image_size": size,
                          "data.num_classes": 10})
  with pytest.raises(ValueError, match="image_size") as e:
    data_lib.load(config)
  assert "\n" not in str(e.value)


def test_synthetic_data_validate_on_validation_size_other_images():
  """The validation split of synthetic data was the training split itself, whatever
  data.validation_size said."""
  config = tiny_config(**{"data.source": "synthetic", "data.image_size": 4,
                          "data.num_classes": 3, "data.synthetic_size": 40,
                          "data.validation_size": 12})
  dataset = data_lib.load(config)
  train, val = dataset.splits["train"], dataset.splits["validation"]
  assert len(train) == 40 and len(val) == 12
  assert not any((train.images == im).all(axis=(1, 2, 3)).any() for im in val.images)
  config.data.validation_size = 0
  assert "validation" not in data_lib.load(config).splits
  assert (data_lib.load(config).splits["train"].images == train.images).all()


def test_huge_synthetic_data_is_rejected():
  config = tiny_config(**{"data.source": "synthetic", "data.image_size": 2048,
                          "data.num_classes": 10, "data.synthetic_size": 100_000})
  with pytest.raises(ValueError, match="GiB"):
    data_lib.load(config)
