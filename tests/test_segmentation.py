"""Segmentation: generated craters, metrics, the U-Net training path end to end."""
import io
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxcnn import metrics, tasks, train
from flaxcnn.tasks import segmentation
from flaxcnn.config import default_config
from flaxcnn.data import shapes


def seg_config(**overrides):
  """unet_small (8-64 channels) on 32x32 craters: learns in well under a minute."""
  c = default_config()
  c.model.name = "unet_small"
  c.model.kwargs.base_features = 8
  c.data.source = "synthetic"
  c.data.name = "craters"
  c.data.image_size = 32
  c.data.num_classes = 2
  c.data.synthetic_size = 512
  c.data.validation_size = 128
  c.augment.crop_padding = 0
  c.augment.flip = True
  c.batch_size = 32
  c.eval_batch_size = 128
  c.num_steps = 80
  c.optimizer.name = "adam"
  c.optimizer.lr = 3e-3
  c.optimizer.weight_decay = 0.0
  c.schedule.name = "cosine"
  c.log_every_steps = 20
  c.eval_every_epochs = 100.0
  c.checkpoint_every_steps = 40
  for k, v in overrides.items():
    node = c
    parts = k.split(".")
    for p in parts[:-1]:
      node = node[p]
    node[parts[-1]] = v
  return c


# ----------------------------------------------------------------------------- data

def test_craters_are_deterministic_discs_with_masks():
  a_img, a_mask = shapes.craters(16, 32, seed=3)
  b_img, b_mask = shapes.craters(16, 32, seed=3)
  c_img, _ = shapes.craters(16, 32, seed=4)
  assert a_img.shape == (16, 32, 32, 1) and a_img.dtype == np.uint8
  assert a_mask.shape == (16, 32, 32) and set(np.unique(a_mask)) <= {0, 1}
  np.testing.assert_array_equal(a_img, b_img)
  np.testing.assert_array_equal(a_mask, b_mask)
  assert not np.array_equal(a_img, c_img)
  assert all(m.any() for m in a_mask)                 # every image has a crater
  frac = a_mask.mean()
  assert 0.05 < frac < 0.5
  # Craters are darker than the terrain, but the noise overlaps the two.
  inside, outside = a_img[..., 0][a_mask == 1], a_img[..., 0][a_mask == 0]
  assert inside.mean() + 20 < outside.mean()
  assert inside.max() > np.percentile(outside, 10)
  rgb, _ = shapes.craters(2, 16, seed=0, channels=3)
  assert rgb.shape == (2, 16, 16, 3)


def test_craters_dataset_splits():
  ds = shapes.craters_dataset(train_size=64, validation_size=16, test_size=24, image_size=16)
  assert ds.sizes == {"train": 64, "validation": 16, "test": 24}
  assert ds.num_classes == 2 and ds.class_names == ("background", "crater")
  assert ds.splits["train"].labels.shape == (64, 16, 16)
  assert ds.image_shape == (16, 16, 1)


def test_tfds_oxford_pets_fails_fast_offline(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  config = seg_config(**{"data.source": "tfds", "data.name": "oxford_iiit_pet",
                         "data.data_dir": str(tmp_path)})
  t = time.time()
  with pytest.raises(FileNotFoundError, match="not prepared"):
    segmentation.load_dataset(config)
  assert time.time() - t < 60


def test_tfds_segmentation_resizes_images_and_maps_trimaps(monkeypatch):
  """The Oxford-IIIT Pet path on a stand-in builder (the real data cannot be
  downloaded here): variable-size images are resized to data.image_size, the
  trimap values 1/2/3 become classes 0/1/2 (nearest neighbour, no blending)."""
  tf = pytest.importorskip("tensorflow")
  from flaxcnn.data import sources

  class FakeBuilder:
    class info:
      splits = {"train": None, "test": None}

    def as_dataset(self, split):
      sizes = [(20, 30), (37, 24), (16, 16), (40, 40), (21, 33), (18, 50)]
      sizes = sizes if split == "train" else sizes[:4]

      def gen():
        rng = np.random.RandomState(0)
        for h, w in sizes:
          mask = np.full((h, w, 1), 1, np.uint8)      # pet
          mask[: h // 2] = 2                           # background above
          mask[:, : w // 4] = 3                        # border on the left
          yield {"image": rng.randint(0, 256, (h, w, 3)).astype(np.uint8),
                 "segmentation_mask": mask}
      return tf.data.Dataset.from_generator(gen, output_signature={
          "image": tf.TensorSpec((None, None, 3), tf.uint8),
          "segmentation_mask": tf.TensorSpec((None, None, 1), tf.uint8)})

  monkeypatch.setattr(sources, "tfds_builder", lambda name, data_dir: FakeBuilder())
  config = seg_config(**{"data.source": "tfds", "data.name": "oxford_iiit_pet",
                         "data.image_size": 16, "data.validation_size": 2})
  ds = segmentation.load_dataset(config)
  assert ds.sizes == {"train": 4, "validation": 2, "test": 4}
  assert ds.num_classes == 3 and ds.class_names == ("pet", "background", "border")
  assert ds.splits["test"].images.shape == (4, 16, 16, 3)
  masks = ds.splits["test"].labels
  assert masks.shape == (4, 16, 16) and set(np.unique(masks)) == {0, 1, 2}
  np.testing.assert_array_equal(masks[:, -1, -1], 0)   # bottom right: pet
  np.testing.assert_array_equal(masks[:, 0, -1], 1)    # top right: background
  np.testing.assert_array_equal(masks[:, -1, 0], 2)    # left: border


# ----------------------------------------------------------------------------- metrics

def test_iou_and_pixel_accuracy_by_hand():
  # labels / predictions of 1 image 2x3, 3 classes (class 2 never occurs anywhere)
  labels = jnp.array([[[0, 0, 1], [1, 1, 0]]])
  pred = jnp.array([[[0, 1, 1], [1, 0, 0]]])
  logits = jax.nn.one_hot(pred, 3) * 10.0
  sums = segmentation.eval_sums(logits, labels, jnp.ones(1), 3)
  assert float(sums["correct"]) == 4 and float(sums["pixels"]) == 6
  conf = np.asarray(sums["confusion"])
  np.testing.assert_array_equal(conf, [[2, 1, 0], [1, 2, 0], [0, 0, 0]])
  iou, miou = segmentation.iou_from_confusion(conf)
  assert iou[0] == pytest.approx(2 / 4) and iou[1] == pytest.approx(2 / 4)
  assert np.isnan(iou[2]) and miou == pytest.approx(0.5)
  # Padding images (valid 0) count nowhere.
  sums = segmentation.eval_sums(jnp.concatenate([logits, logits]), jnp.concatenate([labels, labels]),
                                jnp.array([1.0, 0.0]), 3)
  assert float(sums["pixels"]) == 6 and float(sums["count"]) == 1
  np.testing.assert_array_equal(np.asarray(sums["confusion"]), conf)


def test_augmentation_moves_image_and_mask_together():
  images, masks = shapes.craters(8, 16, seed=0)
  key = jax.random.key(0, impl="rbg")
  x, y = jax.jit(lambda k, a, b: segmentation.augment_pair(k, a, b, 3, True))(key, images, masks)
  assert x.shape == images.shape and y.shape == masks.shape
  # The mask still marks exactly the dark crater pixels of the moved image: the
  # transform is the same for both (compare with every candidate shift/flip).
  for i in range(8):
    found = False
    padded_img = np.pad(images[i, ..., 0], 3, mode="reflect")
    padded_mask = np.pad(masks[i], 3, mode="reflect")
    for dy in range(7):
      for dx in range(7):
        img = padded_img[dy:dy + 16, dx:dx + 16]
        msk = padded_mask[dy:dy + 16, dx:dx + 16]
        for flip in (False, True):
          a, b = (img[:, ::-1], msk[:, ::-1]) if flip else (img, msk)
          if np.array_equal(a, np.asarray(x[i, ..., 0])):
            found = found or np.array_equal(b, np.asarray(y[i]))
    assert found


def test_validate_rejects_classification_models_and_augmentations():
  with pytest.raises(ValueError, match="not a segmentation model"):
    segmentation.validate(seg_config(**{"model.name": "resnet20_cifar"}))
  with pytest.raises(ValueError, match="Cutout"):
    segmentation.validate(seg_config(**{"augment.cutout": 8}))
  segmentation.validate(seg_config(**{"augment.mixup_alpha": 0.2}))  # mixes masks too
  assert segmentation.is_segmentation(seg_config())
  assert not segmentation.is_segmentation(default_config())


def test_a_num_classes_the_craters_do_not_have_is_refused():
  """config.data.num_classes is checked against the generated craters' two classes
  (it was recorded in the config and ignored)."""
  with pytest.raises(ValueError, match=r"num_classes=5: the generated craters have 2 "
                     r"classes \(background, crater\); set it to 2"):
    segmentation.validate(seg_config(**{"data.num_classes": 5}))
  segmentation.validate(seg_config())


# ----------------------------------------------------------------------------- training

def test_unet_learns_to_segment_craters(tmp_path):
  config = seg_config()
  t = time.time()
  summary = train.train_and_evaluate(config, str(tmp_path))
  seconds = time.time() - t
  test = summary["test"]
  # The trivial predictor (all background) has mIoU = (background fraction) / 2.
  ds = shapes.craters_dataset(512, 128, 128, 32)
  trivial = float((ds.splits["test"].labels == 0).mean()) / 2
  assert trivial < 0.45
  assert test["mean_iou"] > 0.6, summary
  assert test["mean_iou"] > trivial + 0.2
  assert test["accuracy"] > 0.85 and test["count"] == 128
  assert set(test) >= {"loss", "accuracy", "mean_iou", "iou/background", "iou/crater"}
  assert summary["step"] == 80 and not summary["interrupted"]
  assert seconds < 180   # ~40 s on 2 idle CPU cores
  lines = metrics.read_jsonl(str(tmp_path))
  train_lines = [l for l in lines if l["split"] == "train"]
  assert len(train_lines) == 4 and train_lines[-1]["loss"] < train_lines[0]["loss"]
  assert [l["split"] for l in lines if l["split"] != "train"] == ["validation", "test"]
  assert (tmp_path / "summary.json").exists() and (tmp_path / "config.json").exists()
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["40", "80"]
  # TensorBoard: the first training batch, and after each evaluation 4 validation
  # images beside their true and predicted masks (image | true | predicted).
  from PIL import Image
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  events = EventAccumulator(str(tmp_path / "tensorboard"))
  events.Reload()
  assert set(events.Tags()["images"]) == {"train/augmented_images", "validation/predictions"}
  [panels] = events.Images("validation/predictions")[-1:]
  grid = np.asarray(Image.open(io.BytesIO(panels.encoded_image_string)))
  assert grid.shape == (2 * 34 - 2, 2 * (3 * 32 + 2) - 2, 3)
  truth = grid[:32, 32:64]
  first = tasks.for_config(config).load_data(config).splits["validation"].labels[0]
  np.testing.assert_array_equal(truth, segmentation.PALETTE[first])
  predicted = grid[:32, 64:96].reshape(-1, 3)
  assert {tuple(c) for c in predicted} <= {tuple(c) for c in segmentation.PALETTE[:2]}

  # The checkpoint evaluates to the same numbers.
  results = train.evaluate_checkpoint(config, str(tmp_path))
  assert results["test"]["mean_iou"] == pytest.approx(test["mean_iou"], abs=1e-6)


def test_segmentation_gains_the_loops_ema_mixup_and_bfloat16(tmp_path):
  """The one loop gives segmentation what classification has: weight EMA (evaluated
  separately), mixup of images and per-pixel targets, bfloat16 compute."""
  config = seg_config(num_steps=6, ema_decay=0.9, dtype="bfloat16", log_every_steps=3,
                      **{"augment.mixup_alpha": 0.2, "model.kwargs.base_features": 4,
                         "model.kwargs.depth": 1})
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert {"test", "test_ema", "validation_ema"} <= set(summary)
  assert np.isfinite(summary["test_ema"]["mean_iou"])
  state = train.load_state(config, str(tmp_path))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
