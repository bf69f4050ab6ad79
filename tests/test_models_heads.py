"""Every classification family names its classifier `head` and returns the pooled
pre-logits with `pre_logits=True`."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxcnn.models import create_model
from flaxcnn.models import efficientnet as E

TINY_EFFNET = dict(stages=(E.Stage(1, 3, 1, 8, 1, fused=True, se_ratio=0.0),
                           E.Stage(4, 3, 2, 8, 2)), stem_features=8, head_features=16)
FAMILIES = [
    ("resnet20_cifar", dict(depth=8, stage_planes=(4, 8, 8), stem_width=4), 8),
    ("preact_resnet164_cifar", dict(depth=11, stage_planes=(2, 4, 4), stem_width=4), 16),
    ("wrn16_4", dict(depth=10, widen_factor=1), 64),
    ("pyramidnet110_a48", dict(depth=8, alpha=6), 22),
    ("resnext29_8x64d", dict(depth=11, stage_planes=(4, 8, 8), stem_width=4,
                             cardinality=2, width=32), 32),
    ("densenet_bc_100_12", dict(depth=10, growth_rate=4), None),
    ("efficientnet_b0", TINY_EFFNET, 16),
]


@pytest.mark.parametrize("name,kwargs,features", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_head_params_and_pre_logits(name, kwargs, features):
  model = create_model(name, num_classes=5, **kwargs)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 16, 16, 3)), jnp.float32)
  variables = model.init(jax.random.PRNGKey(0), x)
  head = variables["params"]["head"]
  assert set(head) == {"kernel", "bias"} and head["kernel"].shape[-1] == 5
  logits = model.apply(variables, x)
  feats = model.apply(variables, x, pre_logits=True)
  assert logits.shape == (3, 5)
  assert feats.shape == (3, head["kernel"].shape[0])
  if features is not None:
    assert feats.shape[1] == features
  np.testing.assert_allclose(feats @ head["kernel"] + head["bias"], logits,
                             atol=1e-5, rtol=1e-5)
  # The pre-logits do not need the head's parameters.
  no_head = dict(variables, params={k: v for k, v in variables["params"].items() if k != "head"})
  np.testing.assert_allclose(model.apply(no_head, x, pre_logits=True), feats, atol=1e-6)


def test_unet_head_is_named_head():
  model = create_model("unet_small", base_features=4, depth=2, num_classes=3)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)),
                                             train=False))
  assert shapes["params"]["head"]["kernel"].shape == (1, 1, 4, 3)
