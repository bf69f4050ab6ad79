"""The model summary: one trace per preset gives the numbers the model tests pin."""
import numpy as np
import pytest

from flaxcnn.models import registry, summary

# Exact published figures, also pinned by the family tests: torchvision's
# num_params and multiply-adds (its '_ops' GFLOPS) at 224x224; Huang et al. 2017
# Table 2 for the CIFAR DenseNet-BC (0.8M).
PINNED = {
    "densenet121": (7_978_856, 2.834),
    "resnet18": (11_689_512, 1.814),
    "efficientnet_b0": (5_288_548, None),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_summarize_gives_the_pinned_numbers(name):
  params, gmacs = PINNED[name]
  got_name, got_params, got_macs, size = summary.summarize(name)
  assert (got_name, got_params, size) == (name, params, registry.get_preset(name).image_size)
  if gmacs is not None:
    assert round(got_macs / 1e9, 3) == gmacs


def test_one_trace_agrees_with_separate_counts():
  model = registry.create_model("densenet_bc_100_12")
  params, macs = summary.profile(model, 32)
  assert params == summary.count_params(model, 32)
  assert round(params / 1e6, 1) == 0.8
  assert macs == summary.count_macs(model, 32) > 0
  # Multiply-adds of the convolutions scale with the pixels; the classifier's
  # (after global pooling) and the parameters do not.
  head = int(np.prod(summary.init_shapes(model, 32)["params"]["head"]["kernel"].shape))
  params64, macs64 = summary.profile(model, 64)
  assert params64 == params and macs64 - head == 4 * (macs - head)


@pytest.mark.parametrize("name", ["resnet110_cifar", "preact_resnet164_cifar_v1", "wrn16_4",
                                  "efficientnetv2_s"])
def test_scanned_blocks_count_the_same(name):
  """summarize traces repeated blocks once (scan_blocks); a scan's body counts
  `length` times, so the numbers equal the unscanned model's."""
  size = registry.get_preset(name).image_size
  assert summary.profile(registry.create_model(name, scan_blocks=True), size) == \
      summary.profile(registry.create_model(name), size)


def test_list_prints_every_preset(capsys):
  assert summary.main(["summary", "--list"]) == 0
  assert capsys.readouterr().out.split() == registry.list_models()


def test_main_prints_the_same_table_with_and_without_worker_processes(capsys):
  names = ["resnet20_cifar", "densenet_40_12"]
  assert summary.main(["summary", *names, "--jobs=1"]) == 0
  one = capsys.readouterr().out
  assert summary.main(["summary", *names, "--jobs=2"]) == 0
  assert capsys.readouterr().out == one
  rows = one.splitlines()[1:]
  assert [r.split()[0] for r in rows] == names
  assert rows[0].split()[1] == f"{summary.count_params(registry.create_model(names[0])):,d}"


def test_unknown_preset_fails_before_any_work():
  with pytest.raises(ValueError, match="unknown model preset"):
    summary.main(["summary", "resnet20_cifar", "resnet_unknown"])


def test_parameter_paths_and_a_given_input_size(capsys):
  """--params lists what finetune.freeze regexes match; --image_size changes the
  multiply-adds; an unknown flag is an argparse error, not silently ignored."""
  assert summary.main(["summary", "resnet20_cifar", "--params"]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert "resnet20_cifar stem_conv/kernel 3x3x3x16" in [" ".join(l.split()) for l in lines]
  assert summary.main(["summary", "resnet50", "--image_size=112", "--jobs=1"]) == 0
  row = capsys.readouterr().out.splitlines()[1].split()
  assert row[0] == "resnet50" and row[-1] == "112"
  assert row[2] == f"{summary.count_macs(registry.create_model('resnet50'), 112) / 1e9:.3f}G"
  with pytest.raises(SystemExit):
    summary.main(["summary", "resnet50", "--image_sz=32"])
  with pytest.raises(ValueError, match="Did you mean .*resnet20_cifar"):
    summary.main(["summary", "resnet_20"])
