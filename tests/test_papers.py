"""The papers' numbers as data (flaxcnn.papers): every config file's paper rows are
reproduced by real variants of its sweep (no orphan rows), and every variant either
has a paper row or its file says why not."""
import glob
import os

import pytest

from conftest import ROOT
from flaxcnn import papers, sweep

FILES = sorted(glob.glob(os.path.join(ROOT, "experiments", "*.py"))
               + glob.glob(os.path.join(ROOT, "experiments", "ablations", "*.py")))
ABLATIONS = [f for f in FILES if os.sep + "ablations" + os.sep in f]
WITH_ROWS = [f for f in FILES if papers.rows_of(sweep.load_module(f))]


def _name(path):
  return os.path.relpath(path, os.path.join(ROOT, "experiments"))[:-3]


def _variants(path, arg):
  return [(name, papers.flatten(cfg)) for name, cfg in sweep.variants(path, arg)]


def test_tables_cite_a_source_and_hold_percentages():
  tables = [v for v in vars(papers).values() if isinstance(v, papers.Table)]
  assert len(tables) >= 20
  for t in tables:
    assert t.source in papers.SOURCES and t.values, t.key
    assert t.column.startswith("final_") or t.column == "test_error_at_best_validation", t.key
    assert "%" in t.metric, t.key
    for label, v in t.values.items():
      assert v == papers.FAIL or 0 < v < 100, (t.key, label)
  # Huang et al. 2016 report the test error at the epoch of the best validation error.
  assert {t.column for t in (papers.SD_T1_C10, papers.SD_T1_C100, papers.SD_1202_C10)} == {
      "test_error_at_best_validation"}


@pytest.mark.parametrize("path", ABLATIONS, ids=[_name(p) for p in ABLATIONS])
def test_every_ablation_carries_paper_rows_or_says_why_not(path):
  module = sweep.load_module(path)
  assert papers.rows_of(module) or getattr(module, "PAPER_UNREPORTED", ""), path


@pytest.mark.parametrize("path", WITH_ROWS, ids=[_name(p) for p in WITH_ROWS])
def test_paper_rows_match_real_variants(path):
  """No orphan rows: each row is reproduced by a variant of its argument's sweep
  (for a recipe, the config of that argument); on the default sweep, a variant
  without a row needs the file's PAPER_UNREPORTED reason."""
  module = sweep.load_module(path)
  rows = papers.rows_of(module)
  by_arg = {}
  for row in rows:
    by_arg.setdefault(row.arg, []).append(row)
  for arg, group in by_arg.items():
    variants = _variants(path, arg)
    for row in group:
      hits = [name for name, settings in variants if row.matches(settings)]
      assert hits, f"{_name(path)}:{arg}: paper row {row.label!r} ({row.table.key}) " \
                   f"matches no variant"
  if hasattr(module, "get_sweep") and not getattr(module, "PAPER_UNREPORTED", ""):
    for name, settings in _variants(path, ""):
      assert any(r.matches(settings) for r in rows), \
          f"{_name(path)}: variant {name} has no paper row and no PAPER_UNREPORTED reason"


def test_row_matching_and_ordering_helpers():
  t = papers.HE2016_T1
  rows = papers.rows(t, {"original": {"model.kwargs.shortcut_variant": "identity"}})
  assert rows[0].match == {"data.name": "cifar10", "model.kwargs.shortcut_variant": "identity"}
  assert rows[0].value == 6.61
  assert rows[0].matches({"data.name": "cifar10", "model.kwargs.shortcut_variant": "identity"})
  assert not rows[0].matches({"data.name": "cifar100",
                              "model.kwargs.shortcut_variant": "identity"})
  assert papers.better(t, 6.61, 8.70) and papers.better(t, 12.0, papers.FAIL)
  assert not papers.better(t, papers.FAIL, 12.0)
  assert papers.better(papers.DROPBLOCK_T1, 78.13, 76.51)          # accuracy: higher
  with pytest.raises(ValueError, match="no row"):
    papers.rows(t, {"no such row": {}})


def test_a_row_is_reproduced_only_by_its_own_test_protocol():
  """A 10-crop evaluation of a run is not a second seed of a single-crop row."""
  row = papers.rows(papers.HE2015_T6, {"ResNet-20": {"model.name": "resnet20_cifar"}})[0]
  trained = {"data.name": "cifar10", "model.name": "resnet20_cifar", "eval_mode": "center",
             "data.eval_image_size": None}
  assert row.matches(trained)
  assert row.matches({"data.name": "cifar10", "model.name": "resnet20_cifar"})  # older runs
  assert not row.matches({**trained, "eval_mode": "ten_crop"})
  assert not row.matches({**trained, "data.eval_image_size": 320})
  ten_crop = papers.rows(papers.HE2015_T3, {"ResNet-34 B": {
      "model.name": "resnet34", "eval_mode": "ten_crop"}})[0]
  assert ten_crop.matches({"data.name": "imagenet2012", "model.name": "resnet34",
                           "eval_mode": "ten_crop"})
  assert not ten_crop.matches({"data.name": "imagenet2012", "model.name": "resnet34",
                               "eval_mode": "center"})
