"""The bfloat16 training step is ready for an accelerator, checked on the CPU.

The project's streaming train step is lowered (not compiled, not run) for
WRN-28-10 (batch 8) and ResNet-50 (batch 2) with abstract inputs, and its
StableHLO text is read: every convolution and matmul takes bfloat16 operands,
BatchNorm statistics, the loss and the parameters stay float32, nothing goes to
the host, and the train state is donated (each output buffer of the state
aliases its input). The lowered module is what XLA receives on any backend; the
CPU compiler's own rewrites (e.g. upcasting bf16 convolutions) do not show here.
"""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxcnn import config as config_lib, train
from flaxcnn.data import Dataset, Split
from flaxcnn.models import registry


def lower_train_step(name: str, batch: int, dtype: str = "bfloat16", **model_kwargs) -> str:
  """StableHLO text of the project's batch train step for preset `name`."""
  preset = registry.get_preset(name)
  c = config_lib.default_config()
  c.model.name = name
  for k, v in model_kwargs.items():
    c.model.kwargs[k] = v
  c.dtype = dtype
  c.batch_size = batch
  c.num_steps = 100
  size = preset.image_size
  images = np.zeros((batch, size, size, 3), np.uint8)
  labels = np.zeros((batch,), np.int32)
  dataset = Dataset("synthetic", preset.num_classes, {"train": Split(images, labels)},
                    (0.5,) * 3, (0.25,) * 3)
  run = train.setup(c, dataset)
  state = jax.eval_shape(lambda: train.create_state(run, dataset.image_shape))
  x = jax.ShapeDtypeStruct(images.shape, jnp.uint8, sharding=run.batch_sharding)
  y = jax.ShapeDtypeStruct(labels.shape, jnp.int32, sharding=run.batch_sharding)
  return train.make_batch_train_step(run).lower(state, x, y).as_text()


# ----------------------------------------------------------------------------- parsing

def element_type(tensor_type: str) -> str:
  """'8x32x32x3xbf16' -> 'bf16', 'f32' -> 'f32'."""
  return tensor_type.split("x")[-1]


def op_signatures(text: str, op: str):
  """(operand types, result type) of every `op` (e.g. 'convolution') in the module."""
  sigs = []
  for line in text.splitlines():
    if f"stablehlo.{op}" in line:
      m = re.search(r": \(([^()]*)\) -> (tensor<[^>]*>)\s*$", line)
      assert m, f"cannot parse the signature of: {line.strip()[:200]}"
      operands = re.findall(r"tensor<([^>]*)>", m.group(1))
      sigs.append(([element_type(t) for t in operands], element_type(m.group(2)[7:-1])))
  return sigs


def reductions(text: str):
  """(input shape-and-type, reducer) of every stablehlo.reduce."""
  return re.findall(r"stablehlo\.reduce\(.*?applies stablehlo\.(\w+) .*?: \(tensor<([^>]*)>", text)


def main_signature(text: str):
  """Arguments [(type, aliased output index or None)] and results [(type, name)] of @main."""
  line = next(l for l in text.splitlines() if "func.func public @main(" in l)
  head, results = line.split(") -> (", 1)
  args = []
  for chunk in head.split("%arg")[1:]:
    alias = re.search(r"tf\.aliasing_output = (\d+)", chunk)
    args.append((re.match(r"\d+: tensor<([^>]*)>", chunk).group(1),
                 int(alias.group(1)) if alias else None))
  outs = re.findall(r'tensor<([^>]*)> \{jax\.result_info = "([^"]*)"', results)
  return args, outs


HOST_TRANSFER = re.compile(r"callback|stablehlo\.(outfeed|infeed|send|recv)\b|"
                           r"_xla_host_transfer|pinned_host")


# ----------------------------------------------------------------------------- the steps

MODELS = {"wrn28_10": 8, "resnet50": 2}


@pytest.fixture(scope="module", params=sorted(MODELS))
def step(request):
  name = request.param
  text = lower_train_step(name, MODELS[name])
  return name, text, registry.get_preset(name).num_classes


def test_convolutions_and_matmuls_take_bfloat16(step):
  name, text, _ = step
  convs, dots = op_signatures(text, "convolution"), op_signatures(text, "dot_general")
  # Forward, input-gradient and weight-gradient convolutions of every layer
  # (the first layer has no input gradient): 3 x 28 - 1 for WRN-28-10 + shortcuts,
  # and the classifier's forward and two gradient matmuls. On the CPU a 1x1
  # convolution is lowered as a matmul (layers.conv_general_dilated).
  assert len(convs) + len(dots) >= 3 * (28 if name == "wrn28_10" else 53) - 1 + 3
  assert len(dots) >= 3
  for operands, _ in convs + dots:
    assert operands == ["bf16", "bf16"]


def test_batchnorm_statistics_loss_and_reductions_stay_float32(step):
  _, text, num_classes = step
  reds = reductions(text)
  assert len(reds) > 100
  # Every reduction (BN mean and variance, their gradients, global pooling, the
  # classifier bias gradient: layers.Head keeps logits and bias float32) accumulates
  # in float32.
  low = [shape for _, shape in reds if element_type(shape) not in ("f32", "i32")]
  assert low == [], low
  _, outs = main_signature(text)
  types = dict((name, t) for t, name in outs)
  stats = [t for n, t in types.items() if n.startswith("result[0].batch_stats")]
  assert stats and all(element_type(t) == "f32" for t in stats)
  assert types["result[1]['loss']"] == "f32"
  for call in re.findall(r"call @log_softmax\w*\(.*", text):
    assert "bf16" not in call


def test_parameters_and_optimizer_state_stay_float32(step):
  _, text, _ = step
  args, outs = main_signature(text)
  params = [t for t, n in outs if n.startswith("result[0].params")]
  assert len(params) > 50 and all(element_type(t) == "f32" for t in params)
  is_float = lambda t: element_type(t).startswith(("f", "bf"))
  opt_state = [t for t, n in outs if n.startswith("result[0].opt_state") and is_float(t)]
  assert len(opt_state) >= len(params) and all(element_type(t) == "f32" for t in opt_state)
  assert all(element_type(t) == "f32" for t, _ in args if is_float(t))   # no bf16 inputs


def test_no_host_callback_or_transfer(step):
  _, text, _ = step
  assert not HOST_TRANSFER.search(text)


def test_train_state_is_donated(step):
  _, text, _ = step
  args, outs = main_signature(text)
  aliased = {out: t for t, out in args if out is not None}
  state = [(i, t) for i, (t, n) in enumerate(outs)
           if n.startswith(("result[0].params", "result[0].batch_stats", "result[0].opt_state"))]
  assert state
  for i, t in state:
    assert aliased.get(i) == t, outs[i][1]   # the update is written in place


# ----------------------------------------------------------------------------- the checks can fail

def test_checks_see_float32_convolutions_host_callbacks_and_missing_donation():
  text = lower_train_step("resnet20_cifar", 4, dtype="float32", depth=8)
  assert op_signatures(text, "convolution")
  assert all(ops == ["f32", "f32"] for ops, _ in op_signatures(text, "convolution"))

  def f(x):
    jax.debug.callback(lambda v: None, x)
    return x + 1
  assert HOST_TRANSFER.search(jax.jit(f).lower(jnp.ones(3)).as_text())
  g = lambda s, x: jax.tree.map(lambda a: a + x, s)
  state = {"w": jnp.ones(3)}
  assert all(out is None for _, out in main_signature(jax.jit(g).lower(state, 1.0).as_text())[0])
  assert [out for _, out in main_signature(
      jax.jit(g, donate_argnums=0).lower(state, 1.0).as_text())[0]] == [0, None]
