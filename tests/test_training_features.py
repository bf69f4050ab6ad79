"""EMA, progressive training stages, evaluation modes and fine-tuning, end to end."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from flaxcnn import augment, train


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def test_ema_is_evaluated_separately_and_follows_its_decay(tmp_path):
  slow = train.train_and_evaluate(tiny_config(ema_decay=0.999999, num_steps=6),
                                  str(tmp_path / "slow"))
  assert "validation_ema" in slow and "test_ema" in slow
  state = train.load_state(tiny_config(ema_decay=0.999999), str(tmp_path / "slow"))
  init = train.create_state(train.setup(tiny_config(ema_decay=0.999999),
                                        __import__("flaxcnn").data.load(tiny_config())),
                            (8, 8, 1))
  # decay ~1: the average stays at the initial weights; the weights moved away
  for e, p0, p in zip(_leaves(state.ema["params"]), _leaves(init.params), _leaves(state.params)):
    np.testing.assert_allclose(e, p0, atol=1e-4)
  assert any(np.abs(p - p0).max() > 1e-3 for p0, p in zip(_leaves(init.params),
                                                          _leaves(state.params)))
  train.train_and_evaluate(tiny_config(ema_decay=1e-6, num_steps=6), str(tmp_path / "fast"))
  state = train.load_state(tiny_config(ema_decay=1e-6), str(tmp_path / "fast"))
  for e, p in zip(_leaves(state.ema["params"]), _leaves(state.params)):
    np.testing.assert_allclose(e, p, atol=1e-5)


def test_stage_plan_grows_linearly():
  c = tiny_config()
  c.progressive.stages = 4
  c.progressive.image_size = (128, 320)
  c.progressive.dropout = (0.1, 0.4)
  plan = train.stage_plan(c, 100)
  assert [(a, b) for a, b, _ in plan] == [(0, 25), (25, 50), (50, 75), (75, 100)]
  assert [o["data.image_size"] for _, _, o in plan] == [128, 192, 256, 320]
  np.testing.assert_allclose([o["model.kwargs.dropout"] for _, _, o in plan],
                             [0.1, 0.2, 0.3, 0.4])


def test_progressive_training_runs_stages_and_resumes(tmp_path, capsys):
  c = tiny_config(num_steps=8, checkpoint_every_steps=2)
  c.progressive.stages = 2
  c.progressive.image_size = (6, 8)
  c.progressive.dropout = (0.0, 0.2)
  c.progressive.randaugment_magnitude = (0.0, 0.0)
  s = train.train_and_evaluate(c, str(tmp_path))
  out = capsys.readouterr().out
  assert "stage 1/2 from step 0: image_size=6" in out and "stage 2/2 from step 4: image_size=8" in out
  assert s["step"] == 8 and np.isfinite(s["test"]["loss"])


def test_ten_crop_views():
  x = jnp.arange(6 * 6, dtype=jnp.float32).reshape(1, 6, 6, 1)
  views = augment.ten_crop(x, 4)
  assert views.shape == (10, 1, 4, 4, 1)
  np.testing.assert_array_equal(views[0, 0], x[0, :4, :4])        # top-left
  np.testing.assert_array_equal(views[3, 0], x[0, 2:, 2:])        # bottom-right
  np.testing.assert_array_equal(views[4, 0], x[0, 1:5, 1:5])      # centre
  np.testing.assert_array_equal(views[5 + 4, 0], x[0, 1:5, 1:5][:, ::-1])  # its flip


@pytest.mark.parametrize("mode", ["ten_crop", "multiscale"])
def test_eval_modes_on_a_checkpoint(tmp_path, mode):
  train.train_and_evaluate(tiny_config(num_steps=20), str(tmp_path))
  center = train.evaluate_checkpoint(tiny_config(), str(tmp_path))
  c = tiny_config(eval_mode=mode, **{"augment.flip": True})   # mirrored views: declared valid
  c.eval_scales = (8, 10)
  res = train.evaluate_checkpoint(c, str(tmp_path))
  assert res["test"]["count"] == center["test"]["count"] == 360
  assert res["test"]["accuracy"] != pytest.approx(center["test"]["accuracy"], abs=1e-9) or \
      res["test"]["loss"] != pytest.approx(center["test"]["loss"], abs=1e-9)
  # each eval job is recorded (results --paper puts a 10-crop test beside the paper)
  from flaxcnn import metrics, workdir as workdir_lib
  records = metrics.read_jsonl(str(tmp_path), workdir_lib.EVALUATIONS)
  assert [(r["step"], r["eval_mode"]) for r in records] == [(20, "center"), (20, mode)]
  assert records[1]["test"] == res["test"] and records[0]["validation"] == center["validation"]
  assert records[1]["eval_scales"] == ([8, 10] if mode == "multiscale" else None)


def test_finetuning_head_first_then_all_with_frozen_stem(tmp_path, capsys):
  def synthetic(num_classes, **kw):   # 8x8 RGB images, 38 steps per epoch
    return tiny_config(**{"data.source": "synthetic", "data.image_size": 8,
                          "data.num_classes": num_classes, "data.synthetic_size": 1216}, **kw)
  src = tmp_path / "source"
  train.train_and_evaluate(synthetic(12, num_steps=6), str(src))   # another head size
  source = train.load_state(synthetic(12), str(src))
  c = synthetic(10, num_steps=4, init_from=str(src), checkpoint_every_steps=2, seed=1)
  c.finetune.head_epochs = 2 / 38         # 2 steps of the head alone (38 steps/epoch)
  c.finetune.freeze = ("^stem_conv",)     # the stem convolution stays fixed
  c.finetune.freeze_bn = True
  train.train_and_evaluate(c, str(tmp_path / "ft"))
  out = capsys.readouterr().out
  assert "fresh: params/head/bias, params/head/kernel" in out
  assert (f"  start:   from {src} (init_from; the head alone for 2 steps, then all "
          f"parameters at {c.finetune.lr_mult:g} x the rate)") in out
  assert "fine-tuning from step 2: all parameters train now" in out
  steps = {}
  import orbax.checkpoint as ocp
  from flaxcnn.checkpoint import Checkpointer
  for step in (2, 4):
    ck = Checkpointer(str(tmp_path / "ft"))
    raw = ck.manager.restore(step, args=ocp.args.StandardRestore())
    ck.close()
    steps[step] = jax.device_get(raw)
  p0, p2, p4 = source.params, steps[2]["params"], steps[4]["params"]
  # head phase: the backbone is exactly the source, the head moved
  np.testing.assert_array_equal(p2["stage1_block1"]["conv1"]["kernel"],
                                p0["stage1_block1"]["conv1"]["kernel"])
  # then everything but the frozen stem trains
  assert np.abs(p4["stage1_block1"]["conv1"]["kernel"]
                - p0["stage1_block1"]["conv1"]["kernel"]).max() > 0
  np.testing.assert_array_equal(p4["stem_conv"]["kernel"], p0["stem_conv"]["kernel"])
  assert p4["head"]["kernel"].shape == (16 * 4, 10)
  # frozen BatchNorm: the running averages are the source's
  np.testing.assert_array_equal(steps[4]["batch_stats"]["stem_bn"]["mean"],
                                source.batch_stats["stem_bn"]["mean"])
  # the logged learning rate is the one the parameters get: x lr_mult after the head
  from flaxcnn import metrics, optim
  schedule = optim.make_schedule(c, 38, 4)
  logged = {r["step"]: r["lr"] for r in metrics.read_jsonl(str(tmp_path / "ft"))
            if r["split"] == "train"}
  assert logged[2] == pytest.approx(float(schedule(1)), rel=1e-6)          # head phase
  assert logged[4] == pytest.approx(float(schedule(3)) * 0.1, rel=1e-6)    # then x lr_mult


def test_init_from_a_source_that_matches_under_half_the_arrays_is_refused(tmp_path):
  """A ResNet-8 source for a ResNet-20 matched 1 in 3 arrays and trained on silently."""
  src = tmp_path / "resnet8"
  train.train_and_evaluate(tiny_config(num_steps=2), str(src))
  wide = tiny_config(num_steps=2, init_from=str(src))
  wide.model.kwargs.depth = 20
  with pytest.raises(ValueError, match=r"\(resnet20_cifar\) matches only \d+ of the \d+ "
                                       r"arrays of resnet20_cifar.*allow_partial=True"):
    train.train_and_evaluate(wide, str(tmp_path / "ft"))
  wide.finetune.allow_partial = True
  assert train.train_and_evaluate(wide, str(tmp_path / "ft"))["step"] == 2


def test_a_checkpoint_of_an_earlier_train_state_layout_is_one_line(tmp_path):
  """Fine-tuning's optimizer state gained its phase transforms (an optax chain): a
  fine-tuning run checkpointed with the earlier layout and resumed with the same
  config is refused in one line that says why (the layout, not the config)."""
  import dataclasses
  from flaxcnn import checkpoint, data as data_lib, optim
  src = tmp_path / "source"
  train.train_and_evaluate(tiny_config(num_steps=2), str(src))
  config = tiny_config(num_steps=4, init_from=str(src))
  dataset = data_lib.load(config)
  run = train.setup(config, dataset)
  old = dataclasses.replace(run, tx=optim.make_optimizer(config, run.model.init(
      jax.random.PRNGKey(0), np.zeros((1, 8, 8, 1), np.float32))["params"]))
  ck = checkpoint.Checkpointer(str(tmp_path / "ft"))
  ck.save(train.create_state(old, dataset.image_shape).replace(step=jnp.int32(2)))
  ck.close()
  from flaxcnn import workdir as workdir_lib
  workdir_lib.save_config(config, str(tmp_path / "ft"))
  with pytest.raises(ValueError, match=r"although the config is the run's own: .*another "
                                       r"version of flaxcnn's train state"):
    train.train_and_evaluate(config, str(tmp_path / "ft"), dataset=dataset)


def test_profile_trace_hparams_and_norms(tmp_path):
  """--config.profile_steps writes a jax.profiler trace; TensorBoard gets the run's
  hyperparameters (HParams view); gradient and parameter norms are logged."""
  import glob
  import os
  from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
  from flaxcnn import metrics
  train.train_and_evaluate(tiny_config(num_steps=5, profile_steps=2), str(tmp_path))
  # under the TensorBoard log dir, where its profile tab looks
  assert glob.glob(str(tmp_path / "tensorboard" / "plugins" / "profile" / "**" / "*.xplane.pb"),
                   recursive=True)
  events = glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
  plugins = {v.metadata.plugin_data.plugin_name for f in events
             for e in EventFileLoader(f).Load() for v in e.summary.value}
  assert "hparams" in plugins
  line = [r for r in metrics.read_jsonl(str(tmp_path)) if r["split"] == "train"][-1]
  assert line["grad_norm"] > 0 and line["param_norm"] > 0
  assert os.path.exists(tmp_path / "config.json")


def test_multiscale_sides_far_above_the_images_are_refused_before_compiling():
  """The ImageNet default sides (224-640) on 8x8 digits asked XLA for 56 GB."""
  import types
  from flaxcnn import tasks
  config = tiny_config()
  config.eval_mode = "multiscale"
  digits = types.SimpleNamespace(image_shape=(8, 8, 1))
  with pytest.raises(ValueError, match=r"config.eval_scales=\(224, .* far above these 8x8 "
                                       r"images.*eval_scales='\(8, 12, 16\)'"):
    tasks.get("classification").check(config, None, digits)
  config.eval_scales = (8, 12, 16)
  tasks.get("classification").check(config, None, digits)


def test_a_freeze_regex_that_matches_no_parameter_is_an_error():
  """finetune.freeze=('^stemm',), a typo for '^stem', froze nothing, silently."""
  import flax
  config = tiny_config()
  config.finetune.freeze = ("^stem_conv", "^stemm")
  params = flax.core.unfreeze({"stem_conv": {"kernel": np.zeros((3, 3))},
                               "head": {"kernel": np.zeros((2, 2))}})
  with pytest.raises(ValueError, match=r"config.finetune.freeze: '\^stemm' matches no "
                                       r"parameter of resnet20_cifar.*head/kernel"):
    train.finetune_masks(config, params, 10)
  config.finetune.freeze = ("^stem_conv",)
  _, trainable, _ = train.finetune_masks(config, params, 10)
  assert trainable["stem_conv"]["kernel"] == 0 and trainable["head"]["kernel"] == 1


def test_a_mirrored_evaluation_of_data_declared_not_mirror_symmetric_is_refused():
  """Ten-crop and multi-scale tests flip the images; the digits config says flipped
  digits are not digits (augment.flip=False), so the two are refused together."""
  from flaxcnn import config as config_lib
  for mode in ("ten_crop", "multiscale"):
    with pytest.raises(ValueError, match=f"eval_mode='{mode}' also evaluates mirrored "
                                         "images, but config.augment.flip=False"):
      config_lib.validate(tiny_config(eval_mode=mode))
  config_lib.validate(tiny_config(eval_mode="ten_crop", **{"augment.flip": True}))
