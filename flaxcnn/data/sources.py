"""Loaders of the in-memory dataset sources. TensorFlow is imported only for TFDS."""
import concurrent.futures
import difflib
import functools
import gzip
import hashlib
import io
import lzma
import os
import shutil
import tarfile
import warnings
import zipfile
import zlib
from importlib.metadata import version
from typing import Optional

import numpy as np

from flaxcnn.data.core import Dataset, Split, finalize

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def default_cache_dir(cache_dir: Optional[str]) -> str:
  return os.path.expanduser(cache_dir or os.environ.get("FLAXCNN_CACHE", "~/.cache/flaxcnn"))


def digits(validation_size: int = 0) -> Dataset:
  """scikit-learn's handwritten digits: 1,797 8x8 images (values 0..16), offline.

  A fixed, stratified 80/20 train/test split; validation held out from train.
  The split is cached as arrays (importing scikit-learn takes ~2.5 s of every start).
  """
  cache = os.path.join(default_cache_dir(None), "arrays",
                       f"digits-sklearn-{version('scikit-learn')}.npz")
  try:
    with np.load(cache, allow_pickle=False) as z:
      xtr, ytr, xte, yte = (z[k] for k in ("xtr", "ytr", "xte", "yte"))
  except (OSError, KeyError, ValueError, zipfile.BadZipFile):   # absent or unreadable
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = d.target.astype(np.int32)
    xtr, xte, ytr, yte = train_test_split(images, labels, test_size=0.2,
                                          random_state=0, stratify=labels)
    try:
      os.makedirs(os.path.dirname(cache), exist_ok=True)
      tmp = cache + f".tmp{os.getpid()}.npz"
      np.savez(tmp, xtr=xtr, ytr=ytr, xte=xte, yte=yte)
      os.replace(tmp, cache)
    except OSError:   # a read-only cache only costs the next start the import
      pass
  splits = {"train": Split(xtr, ytr), "test": Split(xte, yte)}
  return finalize("digits", 10, splits, validation_size,
                  tuple(str(i) for i in range(10)))


def synthetic(size: int, image_size: int, num_classes: int, seed: int = 0,
              validation_size: int = 0) -> Dataset:
  """Random uint8 images and labels (benchmarks only: nothing to learn): `size`
  training examples and `validation_size` other ones for validation."""
  rng = np.random.RandomState(seed)

  def draw(n):
    images = rng.randint(0, 256, (n, image_size, image_size, 3), dtype=np.uint8)
    return Split(images, rng.randint(0, num_classes, (n,)).astype(np.int32))
  splits = {"train": draw(size)}
  if validation_size:
    splits["validation"] = draw(validation_size)
  return Dataset("synthetic", num_classes, splits, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


# ----------------------------------------------------------------------------- folders

def _is_archive(path: str) -> bool:
  return path.endswith((".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz"))


def _stat_key(path: str) -> str:
  st = os.stat(path)
  key = f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"
  return hashlib.sha1(key.encode()).hexdigest()[:16]


def archive_key(path: str, cache_dir: Optional[str] = None) -> str:
  """A content hash (SHA-256) of an archive, remembered per (path, size, mtime, ctime,
  inode) in the cache so an unchanged archive is read once (any write or `touch`
  changes the ctime, so a rewritten archive is hashed again)."""
  memo = os.path.join(default_cache_dir(cache_dir), "hashes", _stat_key(path))
  if os.path.exists(memo):
    with open(memo) as f:
      return f.read().strip()
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 22), b""):
      h.update(chunk)
  key = h.hexdigest()[:16]
  os.makedirs(os.path.dirname(memo), exist_ok=True)
  tmp = memo + f".tmp{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(key)
  os.replace(tmp, memo)
  return key


def folder_key(root: str, split_names=()) -> str:
  """A hash of the image files under `root`: relative names, sizes and modification
  times, and the split names, so adding, removing or editing an image or a class
  gives another key."""
  h = hashlib.sha256(repr(tuple(split_names)).encode())
  count = 0
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for name in sorted(filenames):
      if name.lower().endswith(IMAGE_EXTENSIONS):
        path = os.path.join(dirpath, name)
        st = os.stat(path)
        h.update(f"{os.path.relpath(path, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        count += 1
  return h.hexdigest()[:16] + f"-{count}"


def _refused(path: str, info: tarfile.TarInfo) -> ValueError:
  return ValueError(f"config.data.root={path} holds {_member(info)}, which is refused "
                    "(nothing of the archive is used): remove that member from the archive, "
                    "or unpack it yourself and set config.data.root to the folder")


def _unreadable(path: str, e: BaseException) -> ValueError:
  reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
  return ValueError(f"config.data.root={path} is not a readable archive ({reason}); it is "
                    "probably truncated or corrupt: copy or download it again")


_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error, gzip.BadGzipFile)


def extract_archive(path: str, cache_dir: Optional[str] = None) -> str:
  """Unpacks an archive of an image folder once into the cache (keyed by its content
  hash); returns the folder. A truncated or corrupt archive is a one-line error."""
  dest = os.path.join(default_cache_dir(cache_dir), "extracted", archive_key(path, cache_dir))
  done = os.path.join(dest, ".complete")
  if os.path.exists(done):
    print(f"Using the extracted archive {dest} (of {path})", flush=True)
    return dest
  print(f"Extracting {path} into {dest}", flush=True)
  tmp = dest + f".tmp{os.getpid()}"
  try:
    os.makedirs(tmp, exist_ok=True)
    with tarfile.open(path) as tar:
      tar.extractall(tmp, filter="data")
  except tarfile.FilterError as e:   # a member that would write or link outside `tmp`
    shutil.rmtree(tmp, ignore_errors=True)
    raise _refused(path, e.tarinfo) from None
  except _ARCHIVE_ERRORS as e:
    shutil.rmtree(tmp, ignore_errors=True)
    raise _unreadable(path, e) from None
  except OSError as e:   # e.g. a full disk
    shutil.rmtree(tmp, ignore_errors=True)
    raise OSError(e.errno, f"extracting {path} into {tmp} failed: {e.strerror or e}") from None
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  if os.path.exists(dest):  # a concurrent extraction finished first
    shutil.rmtree(tmp, ignore_errors=True)
  else:
    os.replace(tmp, dest)
  open(done, "w").close()
  return dest


class _Disk:
  """The file system, as the folder readers below see it."""
  isdir = staticmethod(os.path.isdir)
  listdir = staticmethod(os.listdir)

  @staticmethod
  def source(path: str):
    return path

  @staticmethod
  def name(path: str) -> str:
    return path


DISK = _Disk()


class ArchiveTree:
  """The folders and image files of a tar archive, read in memory without unpacking
  it (the first load of the 50,000 CIFAR JPEGs on 2 cores: 11.5 s, against 26.1 s
  unpacking them first, measured one after the other on one machine). Every member
  passes tarfile's "data" filter, as an extraction would: one leading out of the
  archive is refused. Paths are "/"-joined member names under `root` ("")."""

  def __init__(self, path: str):
    self.path, self.dirs, self.files = path, {""}, {}
    notional = os.path.join(os.path.abspath(os.sep), "flaxcnn-archive")
    try:
      with tarfile.open(path) as tar:
        for member in tar:
          member = tarfile.data_filter(member, notional)
          name = os.path.normpath(member.name).replace(os.sep, "/").strip("/")
          name = "" if name == "." else name
          parts = name.split("/")
          self.dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
          if member.isdir():
            self.dirs.add(name)
          elif member.name.lower().endswith(IMAGE_EXTENSIONS) and (
              member.isfile() or member.islnk() or member.issym()):
            try:
              self.files[name] = tar.extractfile(member).read()
            except KeyError:   # a link to a member the archive lacks
              raise ValueError(f"config.data.root={path}: {member.name!r} links to "
                               f"{member.linkname!r}, which the archive lacks; remove the "
                               "link or add its target") from None
          elif member.issym():   # a linked folder: only an extraction follows it
            raise _LinkedFolder
    except tarfile.FilterError as e:
      raise _refused(path, e.tarinfo) from None
    except _ARCHIVE_ERRORS as e:
      raise _unreadable(path, e) from None
    self.children = {}
    for entry in list(self.dirs) + list(self.files):
      if entry:
        parent, _, base = entry.rpartition("/")
        self.children.setdefault(parent, []).append(base)

  def isdir(self, path: str) -> bool:
    return path in self.dirs

  def listdir(self, path: str) -> list:
    return list(self.children.get(path, []))

  def source(self, path: str):
    return io.BytesIO(self.files[path])

  def name(self, path: str) -> str:
    return f"{self.path}:{path}"


class _LinkedFolder(Exception):
  """An archive with a symbolic link that is not an image: it is extracted instead."""


def _member(info: tarfile.TarInfo) -> str:
  """What a refused tar member is, e.g. "a symlink 'a/x.png' -> '../../etc/passwd'"."""
  if info.issym() or info.islnk():
    kind = "a symlink" if info.issym() else "a hardlink"
    return f"{kind} {info.name!r} -> {info.linkname!r} pointing out of the archive"
  if info.isfile() or info.isdir():
    return f"a member {info.name!r} whose path leads out of the archive"
  return f"a member {info.name!r} that is a device or pipe"


def _decode(path: str, fs=DISK) -> np.ndarray:
  from PIL import Image
  try:
    with Image.open(fs.source(path)) as im:
      return np.asarray(im.convert("RGB"), dtype=np.uint8)
  except Exception as e:  # PIL raises many kinds
    raise ValueError(f"unreadable image {fs.name(path)}: {e}. Remove or replace the file.") from None


def _decode_all(files, fs=DISK) -> list:
  """The images of `files`, in order: small ones (CIFAR's 32x32) one after the other, as
  a thread per image passes Python's lock more than it decodes (50,000 CIFAR JPEGs on
  2 cores: 3.3 s, 6.3 s with two threads); from about 160x160 pixels on, in threads."""
  from PIL import Image
  try:
    with Image.open(fs.source(files[0])) as im:     # reads the header only
      small = im.size[0] * im.size[1] < 160 * 160
  except Exception:  # noqa: BLE001 - _decode names the file
    small = True
  if small:
    return [_decode(f, fs) for f in files]
  with concurrent.futures.ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
    return list(pool.map(functools.partial(_decode, fs=fs), files))


def _find_root(root: str, splits, fs=DISK) -> str:
  """The folder holding the split folders (descending through a single wrapper folder)."""
  while not any(fs.isdir(os.path.join(root, s)) for s in splits):
    entries = [e for e in fs.listdir(root) if not e.startswith(".")]
    if len(entries) == 1 and fs.isdir(os.path.join(root, entries[0])):
      root = os.path.join(root, entries[0])
    else:
      raise FileNotFoundError(
          f"config.data.root: no split folder ({', '.join(splits)}) in {fs.name(root)}; "
          "expected ROOT/<split>/<class>/*.jpg")
  return root


def _subfolders(folder: str, fs=DISK) -> list:
  return [e for e in fs.listdir(folder) if fs.isdir(os.path.join(folder, e))]


def _classes_with_images(folder: str, fs=DISK):
  return {e for e in _subfolders(folder, fs) if any(
      n.lower().endswith(IMAGE_EXTENSIONS) for n in fs.listdir(os.path.join(folder, e)))}


def split_classes(root: str, split_names: dict, fs=DISK) -> tuple:
  """The class names: the train split's class folders, sorted. A validation or test
  split with a class that train lacks is an error (its images would be dropped); a
  train class with no images in another split is a warning."""
  train_split = split_names["train"]
  train_dir = os.path.join(root, train_split)
  if not fs.isdir(train_dir):
    raise FileNotFoundError(f"config.data.root: no training folder {fs.name(train_dir)}")
  class_names = tuple(sorted(_subfolders(train_dir, fs)))
  for key, name in split_names.items():
    folder = os.path.join(root, name)
    if key == "train" or name == train_split or not fs.isdir(folder):
      continue
    have = _classes_with_images(folder, fs)
    extra = sorted(have - set(class_names))
    if extra:
      raise ValueError(
          f"config.data.root: the {name} split has {len(extra)} classes that the {train_split} "
          f"split lacks ({', '.join(extra[:10])}{', ...' if len(extra) > 10 else ''}); add "
          f"{train_split} images for them or remove them from {fs.name(folder)}")
    missing = [c for c in class_names if c not in have]
    if missing:
      warnings.warn(
          f"config.data.root: {len(missing)} {train_split} classes have no {name} images "
          f"({', '.join(missing[:10])}{', ...' if len(missing) > 10 else ''})", stacklevel=3)
  return class_names


def _read_split(folder: str, class_names, fs=DISK) -> Split:
  files, labels = [], []
  for label, cls in enumerate(class_names):
    d = os.path.join(folder, cls)
    if not fs.isdir(d):
      continue
    names = sorted(n for n in fs.listdir(d) if n.lower().endswith(IMAGE_EXTENSIONS))
    files += [os.path.join(d, n) for n in names]
    labels += [label] * len(names)
  if not files:
    raise FileNotFoundError(f"config.data.root: no images (*.jpg, *.png) under "
                            f"{fs.name(folder)}/<class>/")
  if len(files) >= 2000:   # seconds for tens of thousands (larger images: more): say so
    print(f"Decoding {len(files):,} images of {fs.name(folder)} (once: they are cached) ...",
          flush=True)
  images = _decode_all(files, fs)
  shapes = {im.shape for im in images}
  if len(shapes) > 1:
    raise ValueError(f"config.data: images under {fs.name(folder)} have different sizes ({sorted(shapes)[:3]}...); "
                     "use config.data.in_memory=False (streaming resizes them)")
  return Split(np.stack(images), np.asarray(labels, np.int32))


def _read_cached_folder(cache: str, root: str):
  """(class_names, splits) of a decoded-image cache; None when there is none, or when
  it cannot be read (cut short by a kill, a full disk): then it is removed, named,
  and the folder is decoded again."""
  if not os.path.exists(cache):
    return None
  try:
    with np.load(cache, allow_pickle=False) as z:
      class_names = tuple(z["class_names"].tolist())
      names = {k.split("/")[0] for k in z.files if "/" in k}
      splits = {s: Split(z[f"{s}/images"], z[f"{s}/labels"]) for s in sorted(names)}
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
    print(f"WARNING: the decoded-image cache {cache} is unreadable "
          f"({type(e).__name__}: {str(e)[:80]}); removing it and decoding {root} again",
          flush=True)
    try:
      os.remove(cache)
    except OSError:
      pass
    return None
  print(f"Using decoded images cached in {cache} (of {root})", flush=True)
  return class_names, splits


def _cache_folder(cache: str, root: str, class_names, splits) -> None:
  """Saves decoded splits for the next start; an unwritable cache only warns."""
  arrays = {"class_names": np.asarray(class_names)}
  for s, split in splits.items():
    arrays[f"{s}/images"], arrays[f"{s}/labels"] = split.images, split.labels
  n = sum(len(v) for v in splits.values())
  tmp = cache + f".tmp{os.getpid()}.npz"
  try:
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    np.savez(tmp, **arrays)
    os.replace(tmp, cache)
  except OSError as e:
    print(f"WARNING: decoded {n} images of {root} but could not cache them in {cache} "
          f"({e.strerror or e}); the next start decodes them again (set FLAXCNN_CACHE or "
          "config.data.cache_dir to a writable folder)", flush=True)
    try:
      os.remove(tmp)
    except OSError:
      pass
    return
  print(f"Decoded {n} images of {root}; cached in {cache}", flush=True)


def _open_folder(root: str, cache_dir: Optional[str]):
  """(folder, the tree it lies in): a folder on disk, or an archive's members read in
  memory (extracted instead when it links a folder)."""
  if not _is_archive(root):
    return root, DISK
  print(f"Reading {root}", flush=True)
  try:
    return "", ArchiveTree(root)
  except _LinkedFolder:
    return extract_archive(root, cache_dir), DISK


def image_folder(root: str, cache_dir: Optional[str] = None, validation_size: int = 0,
                 train_split="train", validation_split="validation",
                 test_split="test") -> Dataset:
  """ROOT/<split>/<class>/*.jpg, or an archive of it (.tar, .tar.gz, .tar.xz), decoded
  once and cached as .npz in the cache."""
  if not os.path.exists(root):
    raise FileNotFoundError(f"config.data.root={root} does not exist; give the image folder "
                            "(ROOT/<split>/<class>/*.jpg) or an archive of it")
  split_names = {"train": train_split, "validation": validation_split, "test": test_split}
  if _is_archive(root):
    key = archive_key(root, cache_dir)
    key = hashlib.sha1(f"{key}:{tuple(split_names.values())}".encode()).hexdigest()[:16]
  else:
    key = folder_key(root, split_names.values())
  cache = os.path.join(default_cache_dir(cache_dir), "arrays", key + ".npz")
  cached = _read_cached_folder(cache, root)
  if cached is not None:
    class_names, splits = cached
  else:
    folder, fs = _open_folder(root, cache_dir)
    folder = _find_root(folder, split_names.values(), fs)
    class_names = split_classes(folder, split_names, fs)
    splits = {}
    for key, name in split_names.items():
      if fs.isdir(os.path.join(folder, name)):
        splits[key] = _read_split(os.path.join(folder, name), class_names, fs)
    _cache_folder(cache, root, class_names, splits)
  return finalize(folder_name(root), len(class_names), splits, validation_size, class_names)


def folder_name(root: str) -> str:
  """The name of the data in folder `root` (or archive): its base name, e.g. 'cifar10'
  of /data/cifar10.tar.gz."""
  return os.path.basename(os.path.normpath(root)).split(".")[0]


# ----------------------------------------------------------------------------- TFDS

def tfds_builder(name: str, data_dir: Optional[str]):
  """The TFDS builder of a dataset that is already prepared on disk.

  Fails within seconds (never tries to download) when it is not.
  """
  import tensorflow_datasets as tfds
  data_dir = os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR",
                                                           "~/tensorflow_datasets"))
  try:
    builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
  except Exception as e:
    if type(e).__name__ == "DatasetNotFoundError":
      close = difflib.get_close_matches(name.split(":")[0].split("/")[0],
                                        tfds.list_builders(with_community_datasets=False), 3)
      hint = f"; did you mean {', '.join(close)}?" if close else ""
      raise ValueError(f"config.data.name={name!r} is not a TFDS dataset{hint} (the names: "
                       f"https://www.tensorflow.org/datasets/catalog)") from None
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise FileNotFoundError(f"config.data.name={name!r}: TFDS cannot build it ({reason})") from None
  if not os.path.exists(os.path.join(builder.data_dir, "dataset_info.json")):
    raise FileNotFoundError(
        f"dataset {name!r} is not prepared in {builder.data_dir} (data_dir {data_dir}). flaxcnn never "
        f"downloads at run time. On a machine with internet run `python -c \"import "
        f"tensorflow_datasets as tfds; tfds.builder('{name}', data_dir='DIR')"
        f".download_and_prepare()\"` and copy DIR here, then pass "
        f"--config.data.data_dir=DIR; or use --config.data.source=folder with "
        f"--config.data.root=ROOT/<split>/<class>/*.jpg")
  return builder


def tfds_in_memory(name: str, data_dir: Optional[str], validation_size: int = 0,
                   train_split="train", validation_split="validation",
                   test_split="test") -> Dataset:
  """A prepared TFDS dataset read whole into uint8 arrays."""
  import tensorflow_datasets as tfds
  builder = tfds_builder(name, data_dir)
  available = set(builder.info.splits.keys())
  splits = {}
  for key, split in (("train", train_split), ("validation", validation_split),
                     ("test", test_split)):
    if split in available:
      data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1,
                                              as_supervised=True))
      images, labels = data
      if images.ndim == 3:
        images = images[..., None]
      splits[key] = Split(images.astype(np.uint8), labels.astype(np.int32))
  num_classes = builder.info.features["label"].num_classes
  names = tuple(builder.info.features["label"].names)
  return finalize(name, num_classes, splits, validation_size, names)
