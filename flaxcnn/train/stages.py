"""EfficientNetV2's progressive learning (Tan & Le 2021, Algorithm 1): training in
stages whose image size and regularization grow from stage to stage."""
import dataclasses

from flaxcnn import config as config_lib
from flaxcnn.data import feeds
from flaxcnn.train.state import setup


def stage_plan(config, total_steps: int):
  """[(first_step, end_step, overrides)]: equal stages whose image size and
  regularization (dropout, RandAugment magnitude, mixup alpha) grow linearly from
  the first to the second value; one stage without overrides otherwise."""
  p = config.progressive
  if not p.stages:
    return [(0, total_steps, {})]
  plan = []
  for i in range(p.stages):
    t = i / (p.stages - 1) if p.stages > 1 else 1.0
    lerp = lambda pair: pair[0] + (pair[1] - pair[0]) * t  # noqa: E731
    size = int(round(lerp(p.image_size)))
    # streaming: the scale-augmentation range shrinks with the stage's image size
    ratio = size / p.image_size[1]   # scale_range is set for the last stage
    overrides = {"data.image_size": size,
                 "augment.scale_range": tuple(max(size, int(round(r * ratio)))
                                              for r in config.augment.scale_range),
                 "model.kwargs.dropout": float(lerp(p.dropout)),
                 "augment.randaugment_magnitude": float(lerp(p.randaugment_magnitude)),
                 "augment.mixup_alpha": float(lerp(p.mixup_alpha))}
    plan.append((i * total_steps // p.stages, (i + 1) * total_steps // p.stages, overrides))
  return plan


def stage_run(config, dataset, overrides, base=None):
  """(Run, dataset) of one stage (its model and compiled shapes); the train state,
  optimizer state included, carries over from the stage before. Without overrides
  it is `base` (the run already set up), else a new setup."""
  if not overrides:
    return base or setup(config, dataset), dataset
  stage_config = config_lib.apply_overrides(config, overrides)
  if feeds.is_streaming(dataset):
    dataset = dataclasses.replace(dataset, image_size=stage_config.data.image_size)
  run = setup(stage_config, dataset)
  run.train_size = stage_config.data.image_size
  return run, dataset
