"""Recipe step parity with the authors' frameworks, on the CPU.

For each CIFAR recipe trained with SGD in (Lua)Torch by its authors, K training
steps of flaxcnn's update (`train.steps.update`: loss, gradients, coupled weight
decay on the recipe's mask, SGD with the recipe's momentum and Nesterov form,
BatchNorm in training mode, the recipe's warm-up and step schedule) are compared
with the same K steps in PyTorch, written with its own objects: `torch.optim.SGD`
(`weight_decay` on a parameter group, dampening 0), `nn.BatchNorm2d`
(momentum 0.1 = our 0.9), `nn.CrossEntropyLoss(label_smoothing=...)` and
`torch.optim.lr_scheduler` (ConstantLR / LinearLR warm-up chained with MultiStepLR).
The recipe's schedule is shrunk (2 steps per epoch, warm-up 1 step, boundaries at
epochs 1, 1.5, 1.75) so the K = 3 steps cross the warm-up and a decay. The network
is the same for every recipe, a small torchvision-layout ResNet whose initial
weights come from the torch model through `pretrained.convert`: what is compared is
the recipe; the architectures have their own conversion tests (test_pretrained.py).

Tolerance, derived from the computation: the reference is PyTorch in float64; the
errors of PyTorch's own float32 runs against it (on the inputs and on inputs moved
by float32 rounding), e_32, measure what float32 does to these K steps, and ours
(float32) must be within 30 max(e_32) (and at least 30 float32 epsilons): XLA's
float32 convolutions sum in other orders than PyTorch's (and differently from one
CPU to another), 2-6 x PyTorch's own spread where measured. Parameters are compared by their change over the K steps
(each leaf relative to its largest change), so a wrong weight decay (about 1% of an
update here) shows as clearly as a wrong momentum.

One difference is kept, not fixed, and accounted for: PyTorch (like Torch7, Caffe
and TensorFlow) updates the running variance with the unbiased batch variance
(x n/(n-1), n = batch x height x width), flax's BatchNorm with the biased one. The
test converts with each layer's n. Its size in real runs: 1/(n-1), 1.2e-4 for the
8x8 maps of a CIFAR batch of 128, below 1e-4 on ImageNet; at test time the running
variance enters as sqrt(var + eps), half that relative size.
"""
import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT
from flaxcnn import pretrained, sweep, train
from flaxcnn.data import Dataset, Split
from flaxcnn.train import steps

torch = pytest.importorskip("torch", reason="PyTorch is not installed: the parity "
                            "tests need the reference framework (pip install torch)")
from test_pretrained import BasicBlock, TorchResNet, state_dict_numpy  # noqa: E402

K, BATCH, SPE = 3, 32, 2                     # 3 steps, 2 per epoch
MODEL = dict(stem_width=16, stage_planes=(8, 16, 16, 16))     # resnet18's layout, tiny
BOUNDARIES = (1.0, 1.5, 1.75)                # epochs: steps 2, 3, 4
RECIPES = [("resnet_cifar.py", ""), ("resnet_cifar.py", "110"), ("preact_resnet.py", ""),
           ("wrn_28_10.py", ""), ("cutout_wrn.py", ""), ("densenet_bc_100_12.py", ""),
           ("pyramidnet.py", ""), ("resnext29.py", "")]


def shrunk_recipe(path, arg):
  """The recipe's optimizer, loss and schedule form, on the tiny ResNet and a
  schedule short enough for K steps."""
  c = sweep.load_module(os.path.join(ROOT, "experiments", path)).get_config(arg)
  c.model.name = "resnet18"
  c.model.kwargs = dict(MODEL)
  c.batch_size = BATCH
  c.num_steps = K
  c.dtype = "float32"
  assert c.optimizer.name == "sgd" and c.schedule.name == "piecewise", path
  c.schedule.boundaries = BOUNDARIES[:len(c.schedule.boundaries)]
  if c.schedule.warmup_epochs:
    c.schedule.warmup_epochs = 1 / SPE
  return c


def _batches(perturb=None):
  """The K batches; `perturb` (a seed) changes every input by float32's rounding
  (a relative 2^-24 x a normal draw): what float32 can not tell apart."""
  rng = np.random.default_rng(0)
  xs = rng.normal(size=(K, BATCH, 32, 32, 3)).astype(np.float32)
  ys = rng.integers(0, 10, size=(K, BATCH)).astype(np.int32)
  if perturb is not None:
    noise = np.random.default_rng(perturb).normal(size=xs.shape)
    xs = (xs * (1 + 2.0 ** -24 * noise)).astype(np.float32)
  return xs, ys


def _torch_model():
  torch.manual_seed(0)
  return TorchResNet(BasicBlock, (2, 2, 2, 2), 10, stem=MODEL["stem_width"],
                     widths=MODEL["stage_planes"])


def run_ours(config, initial):
  images = np.zeros((SPE * BATCH, 32, 32, 3), np.uint8)
  dataset = Dataset("synthetic", 10, {"train": Split(images, np.zeros(SPE * BATCH, np.int32))},
                    (0.5,) * 3, (0.25,) * 3)
  run = train.setup(config, dataset)
  variables = pretrained.convert("resnet18", initial, num_classes=10, **MODEL)
  state = train.create_state(run, dataset.image_shape)
  state = state.replace(params=variables["params"], batch_stats=variables["batch_stats"],
                        opt_state=run.tx.init(variables["params"]))
  update = jax.jit(functools.partial(steps.update, run))
  rates = []
  for x, y in zip(*_batches()):
    state, metrics = update(state, jnp.asarray(x), jnp.asarray(y), jax.random.PRNGKey(0))
    rates.append(float(metrics["lr"]))
  return jax.device_get({"params": state.params, "batch_stats": state.batch_stats}), rates


def _schedulers(config, opt):
  s = config.schedule
  warmup = int(round(s.warmup_epochs * SPE))
  chain = []
  if warmup and s.warmup == "constant":
    chain.append(torch.optim.lr_scheduler.ConstantLR(opt, factor=s.warmup_factor,
                                                     total_iters=warmup))
  elif warmup:
    chain.append(torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / warmup,
                                                   end_factor=1.0, total_iters=warmup - 1))
  chain.append(torch.optim.lr_scheduler.MultiStepLR(
      opt, milestones=[math.ceil(b * SPE - 1e-9) for b in s.boundaries], gamma=s.factor))
  return torch.optim.lr_scheduler.ChainedScheduler(chain)


def run_torch(config, dtype, nesterov=None, perturb=None):
  """K steps in PyTorch; returns (state dict, learning rates, BN sample counts)."""
  model = _torch_model().to(dtype).train()
  o = config.optimizer
  decay = [p for n, p in model.named_parameters()
           if o.decay_all or (n.endswith("weight") and p.ndim > 1)]
  rest = [p for p in model.parameters() if not any(p is q for q in decay)]
  opt = torch.optim.SGD([{"params": decay, "weight_decay": o.weight_decay},
                         {"params": rest, "weight_decay": 0.0}], lr=o.lr,
                        momentum=o.momentum, dampening=0,
                        nesterov=o.nesterov if nesterov is None else nesterov)
  schedule = _schedulers(config, opt)
  loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
  counts = {}
  for name, m in model.named_modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      m.register_forward_hook(lambda mod, inp, out, name=name: counts.__setitem__(
          name, inp[0].numel() // inp[0].shape[1]))
  rates = []
  for x, y in zip(*_batches(perturb)):
    rates.append(opt.param_groups[0]["lr"])
    opt.zero_grad()
    loss = loss_fn(model(torch.from_numpy(x).permute(0, 3, 1, 2).to(dtype)),
                   torch.from_numpy(y).long())
    loss.backward()
    opt.step()
    schedule.step()
  sd = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
  return sd, rates, counts


def _biased_running_var(sd, counts):
  """PyTorch's running variances as flax keeps them (biased batch variances)."""
  out = dict(sd)
  w0 = 0.9 ** K                      # the initial variance's weight after K updates
  for name, n in counts.items():
    var = sd[f"{name}.running_var"]
    out[f"{name}.running_var"] = w0 + (var - w0) * (n - 1) / n
  return out


def _as_flax(sd):
  return pretrained.convert("resnet18", sd, num_classes=10, **MODEL)


def _error(variables, reference, initial):
  """max over leaves of |change - reference change| / max |reference change| for the
  parameters, |value - reference| / max |reference| for the running statistics."""
  errors = []
  for part in ("params", "batch_stats"):
    got = jax.tree_util.tree_flatten_with_path(variables[part])[0]
    ref = dict(jax.tree_util.tree_flatten_with_path(reference[part])[0])
    start = dict(jax.tree_util.tree_flatten_with_path(initial[part])[0])
    for path, a in got:
      a, r = np.asarray(a, np.float64), np.asarray(ref[path], np.float64)
      if part == "params":
        a, r = a - np.asarray(start[path], np.float64), r - np.asarray(start[path], np.float64)
      errors.append(np.abs(a - r).max() / max(np.abs(r).max(), 1e-12))
  return max(errors)


def reference_and_tolerance(config, initial):
  """(PyTorch float64 result as flax variables, BN counts, learning rates, tolerance).

  The tolerance is 30 x the largest error of PyTorch's float32 runs, on the batches
  as they are and as float32 rounding could have left them (3 perturbations):
  a few steps of SGD at lr 0.1 on a small network can turn one rounding into a
  different ReLU or max-pool choice, and then every float32 run, ours included,
  may land on either side."""
  start = _as_flax(initial)
  ref_sd, rates, counts = run_torch(config, torch.float64)
  reference = _as_flax(_biased_running_var(ref_sd, counts))
  e32 = max(_error(_as_flax(_biased_running_var(run_torch(config, torch.float32,
                                                          perturb=seed)[0], counts)),
                   reference, start)
            for seed in (None, 1, 2, 3))
  return reference, counts, rates, 30 * max(e32, float(np.finfo(np.float32).eps))


@functools.lru_cache(maxsize=None)
def compared(path, arg):
  """(initial weights, our K steps, our rates, reference, BN counts, reference rates,
  tolerance) of a recipe: computed once per process, as both tests below need them
  for wrn_28_10 (the computation is deterministic)."""
  config = shrunk_recipe(path, arg)
  initial = state_dict_numpy(_torch_model())
  ours, our_rates = run_ours(config, initial)
  reference, counts, ref_rates, tol = reference_and_tolerance(config, initial)
  return initial, ours, our_rates, reference, counts, ref_rates, tol


@pytest.mark.parametrize("path,arg", RECIPES, ids=[f"{p[:-3]}{':' + a if a else ''}"
                                                   for p, a in RECIPES])
def test_sgd_recipe_steps_match_pytorch(path, arg):
  initial, ours, our_rates, reference, _, ref_rates, tol = compared(path, arg)
  np.testing.assert_allclose(our_rates, ref_rates, rtol=1e-6)
  assert len(set(ref_rates)) >= 2          # the K steps cross the warm-up or a decay
  err = _error(ours, reference, _as_flax(initial))
  print(f"{path}:{arg} error {err:.2e} tolerance {tol:.2e}")
  assert err <= tol, (path, arg, err, tol)


def test_parity_fails_for_a_wrong_setting():
  """The same comparison tells a wrong Nesterov form or a missing weight decay apart."""
  config = shrunk_recipe("wrn_28_10.py", "")
  initial, ours, _, reference, counts, _, tol = compared("wrn_28_10.py", "")
  start = _as_flax(initial)
  assert _error(ours, reference, start) <= tol
  wrong, _, _ = run_torch(config, torch.float64, nesterov=False)
  e_nesterov = _error(ours, _as_flax(_biased_running_var(wrong, counts)), start)
  config.optimizer.weight_decay = 0.0
  no_decay, _, _ = run_torch(config, torch.float64)
  e_decay = _error(ours, _as_flax(_biased_running_var(no_decay, counts)), start)
  print(f"tolerance {tol:.2e}; against Nesterov off {e_nesterov:.2e}, "
        f"against no weight decay {e_decay:.2e}")
  assert e_nesterov > 5 * tol and e_decay > 5 * tol
