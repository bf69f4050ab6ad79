"""The papers' reported results as data, each number typed once, here.

A `Table` is one column of a paper's table or figure: its source (a key of
`SOURCES`), where in the paper, the metric, our matching column of
`flaxcnn.results.load`, and the values by the paper's own row labels. A config file
binds the rows it reproduces to config fields with `rows`:

    from flaxcnn import papers

    PAPER = papers.rows(papers.WRN_T4_C10, {
        f"WRN-{d}-{k}": {"model.kwargs.depth": d, "model.kwargs.widen_factor": k}
        for d, k in ROWS})
    PAPER_UNREPORTED = "why some variants have no paper value" (optional)

A run reproduces a row when its config has every field of the row's `match`.
`flaxcnn.results.compare(DIR)` prints each row's paper value beside ours.
Values are in the metric's unit (%); FAIL marks a paper's "did not converge".
"""
import dataclasses
from typing import Dict, List, Mapping, Optional, Union

FAIL = "fail"

SOURCES = {
    "he2015": "K. He, X. Zhang, S. Ren, J. Sun. Deep Residual Learning for Image "
              "Recognition. CVPR 2016, arXiv:1512.03385.",
    "he2016": "K. He, X. Zhang, S. Ren, J. Sun. Identity Mappings in Deep Residual "
              "Networks. ECCV 2016, arXiv:1603.05027.",
    "zagoruyko2016": "S. Zagoruyko, N. Komodakis. Wide Residual Networks. BMVC 2016, "
                     "arXiv:1605.07146.",
    "huang2016": "G. Huang, Y. Sun, Z. Liu, D. Sedra, K. Weinberger. Deep Networks with "
                 "Stochastic Depth. ECCV 2016, arXiv:1603.09382.",
    "huang2017": "G. Huang, Z. Liu, L. van der Maaten, K. Weinberger. Densely Connected "
                 "Convolutional Networks. CVPR 2017, arXiv:1608.06993.",
    "han2017": "D. Han, J. Kim, J. Kim. Deep Pyramidal Residual Networks. CVPR 2017, "
               "arXiv:1610.02915.",
    "xie2017": "S. Xie, R. Girshick, P. Dollar, Z. Tu, K. He. Aggregated Residual "
               "Transformations for Deep Neural Networks. CVPR 2017, arXiv:1611.05431.",
    "hu2018": "J. Hu, L. Shen, S. Albanie, G. Sun, E. Wu. Squeeze-and-Excitation Networks. "
              "TPAMI 2019 (CVPR 2018), arXiv:1709.01507 (v4).",
    "devries2017": "T. DeVries, G. Taylor. Improved Regularization of Convolutional Neural "
                   "Networks with Cutout. arXiv:1708.04552, 2017.",
    "ghiasi2018": "G. Ghiasi, T.-Y. Lin, Q. Le. DropBlock: A regularization method for "
                  "convolutional networks. NeurIPS 2018, arXiv:1810.12890.",
    "tan2019": "M. Tan, Q. Le. EfficientNet: Rethinking Model Scaling for Convolutional "
               "Neural Networks. ICML 2019, arXiv:1905.11946 (v5).",
    "tan2021": "M. Tan, Q. Le. EfficientNetV2: Smaller Models and Faster Training. "
               "ICML 2021, arXiv:2104.00298.",
}

Value = Union[float, str]


@dataclasses.dataclass(frozen=True)
class Table:
  """One column of a paper's table: values by the paper's row labels."""
  source: str
  where: str                     # "Table 2", "Figure 8"
  values: Mapping[str, Value]
  metric: str                    # "CIFAR-10 test error (%)"
  column: str                    # ours, a column of results.load: "final_test_error"
  data: str = ""                 # config.data.name of the runs that reproduce it
  note: str = ""

  @property
  def higher_is_better(self) -> bool:
    return "accuracy" in self.column

  @property
  def citation(self) -> str:
    return SOURCES[self.source]

  @property
  def key(self) -> str:
    return f"{self.source} {self.where}: {self.metric}"


@dataclasses.dataclass(frozen=True)
class Row:
  """A paper row bound to the config fields (`match`) of the runs that reproduce it;
  `arg` is the config file argument whose sweep has those runs."""
  table: Table
  label: str
  match: Dict[str, object]
  arg: str = ""

  @property
  def value(self) -> Value:
    return self.table.values[self.label]

  def matches(self, settings: Mapping[str, object]) -> bool:
    """Whether a run (or a recorded evaluation of one) with these config `settings`
    reproduces this row: its fields, and the row's test protocol (a row that names
    none is the table's single centre crop, so a 10-crop evaluation is not its test)."""
    for k, v in {**TEST_PROTOCOL, **self.match}.items():
      if norm(settings.get(k, TEST_PROTOCOL.get(k, _MISSING))) != norm(v):
        return False
    return True


# The test protocol a paper row implies unless it names another (config fields).
TEST_PROTOCOL = {"eval_mode": "center", "data.eval_image_size": None}


_MISSING = object()


def norm(v):
  if isinstance(v, (list, tuple)):
    return tuple(norm(x) for x in v)
  if isinstance(v, bool) or v is None or v is _MISSING:
    return v
  if isinstance(v, (int, float)):
    return float(v)
  return v


def rows(table: Table, overrides: Mapping[str, Mapping[str, object]],
         when: Optional[Mapping[str, object]] = None, arg: str = "") -> List[Row]:
  """Binds paper rows (labels of `table`) to config fields; `when` adds fields to
  every row (the table's dataset is one), `arg` names the config argument."""
  out = []
  for label, match in overrides.items():
    if label not in table.values:
      raise ValueError(f"papers: {table.key} has no row {label!r}; rows: "
                       f"{', '.join(table.values)}")
    data = {"data.name": table.data} if table.data else {}
    out.append(Row(table, label, {**data, **(when or {}), **match}, arg))
  return out


def flatten(config, prefix: str = "") -> Dict[str, object]:
  """{dotted field: value} of a ConfigDict or nested dict."""
  d = config.to_dict() if hasattr(config, "to_dict") else config
  out = {}
  for k, v in d.items():
    if isinstance(v, Mapping):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def load_config_module(path: str):
  """Imports a config file by path: config.load_config_module (kept here for the
  config files that import it from this module)."""
  from flaxcnn import config
  return config.load_config_module(path)


def rows_of(module) -> List[Row]:
  """The paper rows a config module carries (its PAPER list; none if absent)."""
  return list(getattr(module, "PAPER", None) or [])


def better(table: Table, a: Value, b: Value) -> bool:
  """Is value `a` strictly better than `b` (a FAIL is worse than any number)?"""
  if a == FAIL or a == b:
    return False
  if b == FAIL:
    return True
  return a > b if table.higher_is_better else a < b


# ----------------------------------------------------------------------------- the tables
# Where a value is uncertain it is said in the table's note.

# What a run's data must be to stand beside a table of that dataset: classes and
# image shape (None: any size), checked against the run's data.json (what it really
# trained on), not against the config's data.name label.
DATASETS = {"cifar10": (10, (32, 32, 3)), "cifar100": (100, (32, 32, 3)),
            "imagenet2012": (1000, None)}


def data_mismatch(dataset: str, trained_on: Optional[Mapping]) -> Optional[str]:
  """Why data a run trained on (its data.json) cannot be the paper's `dataset`, or
  None when it can (or the run recorded nothing, or the dataset is not listed)."""
  if not trained_on or dataset not in DATASETS:
    return None
  classes, shape = DATASETS[dataset]
  got = (trained_on.get("num_classes"), tuple(trained_on.get("image_shape") or ()))
  if got[0] != classes or (shape is not None and got[1] != shape):
    return (f"{trained_on.get('label') or trained_on.get('name')}: {got[0]} classes, "
            f"{'x'.join(map(str, got[1]))} images")
  return None


C10 = dict(metric="CIFAR-10 test error (%)", column="final_test_error", data="cifar10")
C100 = dict(metric="CIFAR-100 test error (%)", column="final_test_error", data="cifar100")


def _imagenet(metric):
  column = "final_validation_accuracy" if "accuracy" in metric else "final_validation_error"
  return dict(metric=f"ImageNet {metric}", column=column, data="imagenet2012")


# He et al. 2015, Table 6: CIFAR-10, option-A shortcuts.
HE2015_T6 = Table("he2015", "Table 6", {
    "ResNet-20": 8.75, "ResNet-32": 7.51, "ResNet-44": 7.17, "ResNet-56": 6.97,
    "ResNet-110": 6.43, "ResNet-1202": 7.93}, **C10,
    note="ResNet-110: best of 5 runs (mean 6.61 +- 0.16)")

# He et al. 2015, Table 3: ImageNet validation, 10-crop testing.
HE2015_T3 = Table("he2015", "Table 3", {
    "plain-34": 28.54, "ResNet-34 A": 25.03, "ResNet-34 B": 24.52, "ResNet-34 C": 24.19,
    "ResNet-50": 22.85, "ResNet-101": 21.75, "ResNet-152": 21.43},
    **_imagenet("top-1 error (%), 10-crop"))

# He et al. 2015, Table 4: single model, multi-scale fully convolutional testing.
HE2015_T4 = Table("he2015", "Table 4", {
    "ResNet-34 B": 21.84, "ResNet-34 C": 21.53, "ResNet-50": 20.74, "ResNet-101": 19.87,
    "ResNet-152": 19.38}, **_imagenet("top-1 error (%), multi-scale"))

# He et al. 2016, Table 5: ImageNet top-1 error of single crops; nets trained on 224
# crops, tested on the 224 centre of a 256 shorter side or on the 320 x 320 centre of
# a 320 shorter side (Section 5: "a single 320x320 crop from s = 320"). Its last row
# is fb.resnet.torch's model (scale and aspect ratio augmentation, the caption's dagger).
HE2016_T5_224 = Table("he2016", "Table 5", {"ResNet-152 original": 23.0},
                      **_imagenet("top-1 error (%), 224 crop"))
HE2016_T5_320 = Table("he2016", "Table 5", {
    "ResNet-152 original": 21.3, "ResNet-152 pre-act": 21.1, "ResNet-200 original": 21.8,
    "ResNet-200 pre-act": 20.7, "ResNet-200 pre-act, scale+aspect ratio": 20.1},
    **_imagenet("top-1 error (%), 320 crop"))

# He et al. 2016, Table 1: ResNet-110 (original units), CIFAR-10, shortcut variants.
HE2016_T1 = Table("he2016", "Table 1", {
    "original": 6.61, "constant scaling 0.5/0.5": 12.35,
    "exclusive gating b_g=0": FAIL, "exclusive gating b_g=-6": 8.70,
    "shortcut-only gating b_g=0": 12.86, "shortcut-only gating b_g=-6": 6.91,
    "1x1 conv shortcut": 12.22, "dropout shortcut": FAIL}, **C10)

# He et al. 2016, Table 2: activation placement (Figure 4 (a)-(e)), CIFAR-10.
_T2_LABELS = ("(a) original", "(b) BN after addition", "(c) ReLU before addition",
              "(d) ReLU-only pre-activation", "(e) full pre-activation")
HE2016_T2_110 = Table("he2016", "Table 2, ResNet-110",
                      dict(zip(_T2_LABELS, (6.61, 8.17, 7.84, 6.71, 6.37))), **C10)
HE2016_T2_164 = Table("he2016", "Table 2, ResNet-164",
                      dict(zip(_T2_LABELS, (5.93, 6.50, 6.14, 5.91, 5.46))), **C10)

# He et al. 2016, Table 3: pre-activation ResNets (its CIFAR-10 110/164 rows are
# Table 2's (e)). ResNet-1001: median of 5 runs (Table 4's caption), means
# 4.89 +- 0.14 and 22.68 +- 0.22.
HE2016_T3_C10 = Table("he2016", "Table 3", {"pre-act ResNet-1001": 4.92}, **C10)
HE2016_T3_C100 = Table("he2016", "Table 3", {
    "pre-act ResNet-164": 24.33, "pre-act ResNet-1001": 22.71}, **C100)

# Zagoruyko & Komodakis 2016.
WRN_T2 = Table("zagoruyko2016", "Table 2", {
    "WRN-40-2 B(1,3,1)": 6.06, "WRN-40-2 B(3,1)": 5.78, "WRN-40-2 B(1,3)": 6.42,
    "WRN-40-2 B(3,1,1)": 5.86, "WRN-28-2 B(3,3)": 5.73, "WRN-22-2 B(3,1,3)": 5.78},
    **C10, note="median of 5 runs")
_T4 = {(40, 1): (6.85, 30.89), (40, 2): (5.33, 26.04), (40, 4): (4.97, 22.89),
       (40, 8): (4.66, None), (28, 10): (4.17, 20.50), (28, 12): (4.33, 20.43),
       (22, 8): (4.38, 21.22), (22, 10): (4.44, 20.75), (16, 8): (4.81, 22.07),
       (16, 10): (4.56, 21.59)}
WRN_T4_C10 = Table("zagoruyko2016", "Table 4",
                   {f"WRN-{d}-{k}": v[0] for (d, k), v in _T4.items()}, **C10)
WRN_T4_C100 = Table("zagoruyko2016", "Table 4", {
    f"WRN-{d}-{k}": v[1] for (d, k), v in _T4.items() if v[1] is not None}, **C100)
# Table 6: (no dropout, dropout 0.3) on CIFAR-10, then on CIFAR-100.
_T6 = {(16, 4): (5.02, 5.24, 24.03, 23.91), (28, 10): (4.00, 3.89, 19.25, 18.85),
       (52, 1): (6.43, 6.28, 29.89, 29.78)}
WRN_T6_C10 = Table("zagoruyko2016", "Table 6", {
    f"WRN-{d}-{k}{' dropout' if i else ''}": v[i] for (d, k), v in _T6.items()
    for i in (0, 1)}, **C10)
WRN_T6_C100 = Table("zagoruyko2016", "Table 6", {
    f"WRN-{d}-{k}{' dropout' if i else ''}": v[2 + i] for (d, k), v in _T6.items()
    for i in (0, 1)}, **C100)

# Zagoruyko & Komodakis 2016, Table 8: ImageNet single-crop top-1 error of bottleneck
# nets; the ResNet rows are fb.resnet.torch's models, which WRN trained with.
WRN_T8 = Table("zagoruyko2016", "Table 8", {
    "ResNet-50": 24.01, "ResNet-101": 22.44, "ResNet-152": 22.16, "WRN-50-2-bottleneck": 21.9,
    "pre-ResNet-200": 21.66}, **_imagenet("top-1 error (%), single crop"),
    note="WRN-50-2's top-5 is 6.03 in Table 8 and 5.79 in Table 9 (top-1 21.9 in both)")

# Huang et al. 2016, Table 1 (C10+/C100+: standard augmentation). The C100+
# constant-depth value is the table's 27.76 (Section 4's text says 27.22). The paper
# reports the test error at the epoch of the lowest validation error (Section 4, its
# 45k/5k split), so ours is compared in that column, not the final one.
def _at_best_validation(kind):
  return {**kind, "column": "test_error_at_best_validation",
          "metric": kind["metric"] + " at the best validation epoch"}


SD_T1_C10 = Table("huang2016", "Table 1", {
    "ResNet-110 constant depth": 6.41, "ResNet-110 stochastic depth": 5.25},
    **_at_best_validation(C10))
SD_T1_C100 = Table("huang2016", "Table 1", {
    "ResNet-110 constant depth": 27.76, "ResNet-110 stochastic depth": 24.98},
    **_at_best_validation(C100),
    note="Section 4's text gives 27.22 for the constant-depth net; Table 1 says 27.76")
# Huang et al. 2016, Section 4 and Figure 4 (right): the 1202-layer ResNet, CIFAR-10
# only, so not in Table 1 (the paper's footnote 2).
SD_1202_C10 = Table("huang2016", "Section 4, Figure 4 (right)", {
    "ResNet-1202 constant depth": 6.67, "ResNet-1202 stochastic depth": 4.91},
    **_at_best_validation(C10))

# Huang et al. 2017, Table 2, columns C10+ and C100+ (k = growth rate).
_DN = {"DenseNet L=40 k=12": (5.24, 24.42), "DenseNet L=100 k=12": (4.10, 20.20),
       "DenseNet L=100 k=24": (3.74, 19.25), "DenseNet-BC L=100 k=12": (4.51, 22.27),
       "DenseNet-BC L=250 k=24": (3.62, 17.60), "DenseNet-BC L=190 k=40": (3.46, 17.18)}
DENSENET_T2_C10 = Table("huang2017", "Table 2 (C10+)", {k: v[0] for k, v in _DN.items()}, **C10)
DENSENET_T2_C100 = Table("huang2017", "Table 2 (C100+)", {k: v[1] for k, v in _DN.items()},
                         **C100)

# Huang et al. 2017, Table 3: ImageNet top-1 error, single-crop / 10-crop (224 crops).
_DN_IN = {"DenseNet-121": (25.02, 23.61), "DenseNet-169": (23.80, 22.08),
          "DenseNet-201": (22.58, 21.46), "DenseNet-264": (22.15, 20.80)}
DENSENET_T3 = Table("huang2017", "Table 3", {k: v[0] for k, v in _DN_IN.items()},
                    **_imagenet("top-1 error (%), single crop"))
DENSENET_T3_10CROP = Table("huang2017", "Table 3", {k: v[1] for k, v in _DN_IN.items()},
                           **_imagenet("top-1 error (%), 10-crop"))

# Han et al. 2017, Table 4 (the paper's +- omitted).
_PYR = {"PyramidNet-110 alpha=48": (4.58, 23.12), "PyramidNet-110 alpha=84": (4.26, 20.66),
        "PyramidNet-110 alpha=270": (3.73, 18.25),
        "PyramidNet-164 bottleneck alpha=270": (3.48, 17.01),
        "PyramidNet-200 bottleneck alpha=240": (3.44, 16.51),
        "PyramidNet-236 bottleneck alpha=220": (3.40, 16.37),
        "PyramidNet-272 bottleneck alpha=200": (3.31, 16.35)}
PYRAMIDNET_T4_C10 = Table("han2017", "Table 4", {k: v[0] for k, v in _PYR.items()}, **C10)
PYRAMIDNET_T4_C100 = Table("han2017", "Table 4", {k: v[1] for k, v in _PYR.items()}, **C100)

# Han et al. 2017 on ImageNet: the authors' models (jhkim89/PyramidNet README, "single-
# model, single-crop (224*224)"; additive PyramidNets).
PYRAMIDNET_IMAGENET = Table("han2017", "ImageNet results (the authors' code, README)", {
    "PyramidNet-200 alpha=300": 20.47, "PyramidNet-200 alpha=450, dropout 0.5": 20.11},
    **_imagenet("top-1 error (%), single 224 crop"))

# Hu et al. 2018, Table 2 (arXiv v4): ImageNet single-crop top-1 error (224 centre of a
# 256 shorter side); the plain nets are the paper's re-implementations, trained with
# the same recipe as their SE versions.
_SE = {"ResNet-50": (24.80, 23.29), "ResNet-101": (23.17, 22.38),
       "ResNet-152": (22.42, 21.57), "ResNeXt-50": (22.11, 21.10),
       "ResNeXt-101": (21.18, 20.70)}
SENET_T2 = Table("hu2018", "Table 2", {
    label: v for name, (plain, se) in _SE.items()
    for label, v in ((name, plain), (f"SE-{name}", se))},
    **_imagenet("top-1 error (%), single 224 crop"),
    note="the 'original' column of the table (the first papers' own numbers): ResNet-50 "
         "24.7, -101 23.6, -152 23.0, ResNeXt-50 22.2, -101 21.2")

# Xie et al. 2017, Table 3 (ImageNet-1K, 224 single crop; C x d at equal
# complexity) and Table 7 (CIFAR).
_RX = {50: (23.9, 23.0, 22.6, 22.3, 22.2), 101: (22.0, 21.7, 21.4, 21.3, 21.2)}
RESNEXT_SETTINGS = ((1, 64), (2, 40), (4, 24), (8, 14), (32, 4))
RESNEXT_T3 = Table("xie2017", "Table 3", {
    f"{'ResNet' if c == 1 else 'ResNeXt'}-{depth} ({c} x {d}d)": v
    for depth, vals in _RX.items() for (c, d), v in zip(RESNEXT_SETTINGS, vals)},
    **_imagenet("top-1 error (%), 224 crop"))
# Xie et al. 2017, Table 4 (twice ResNet-101's complexity; 224 crop; ResNet-200 is
# fb.resnet.torch's pre-activation model) and Table 5 (the 320 x 320 test of He et al.
# 2016).
RESNEXT_T4 = Table("xie2017", "Table 4", {
    "ResNet-101 (1 x 64d)": 22.0, "ResNeXt-101 (32 x 4d)": 21.2, "ResNet-200": 21.7,
    "ResNet-101, wider (1 x 100d)": 21.3, "ResNeXt-101 (2 x 64d)": 20.7,
    "ResNeXt-101 (64 x 4d)": 20.4}, **_imagenet("top-1 error (%), 224 crop"))
RESNEXT_T5_320 = Table("xie2017", "Table 5", {
    "ResNet-200": 20.1, "ResNeXt-101 (64 x 4d)": 19.1}, **_imagenet("top-1 error (%), 320 crop"))
RESNEXT_T7_C10 = Table("xie2017", "Table 7", {
    "ResNeXt-29 8x64d": 3.65, "ResNeXt-29 16x64d": 3.58}, **C10)
RESNEXT_T7_C100 = Table("xie2017", "Table 7", {
    "ResNeXt-29 8x64d": 17.77, "ResNeXt-29 16x64d": 17.31}, **C100)

# DeVries & Taylor 2017, Table 1 (mean of 5 runs, 50k training images; +- omitted).
CUTOUT_T1_C10 = Table("devries2017", "Table 1", {
    "ResNet-18": 4.72, "ResNet-18 + cutout": 3.99, "WRN-28-10": 3.87,
    "WRN-28-10 + cutout": 3.08}, **C10, note="mean of 5 runs")
CUTOUT_T1_C100 = Table("devries2017", "Table 1", {
    "ResNet-18": 22.46, "ResNet-18 + cutout": 21.96, "WRN-28-10": 18.80,
    "WRN-28-10 + cutout": 18.41}, **C100, note="mean of 5 runs")

# Ghiasi et al. 2018, Table 1: ResNet-50 on ImageNet, 270 epochs (mean of 3 runs).
DROPBLOCK_T1 = Table("ghiasi2018", "Table 1", {
    "ResNet-50": 76.51, "ResNet-50 + DropBlock (keep_prob 0.9)": 78.13},
    **_imagenet("top-1 accuracy (%)"), note="mean of 3 runs")

# Tan & Le 2019, Table 2 (arXiv v5, the TF reference's 350-epoch recipe).
EFFICIENTNET_T2 = Table("tan2019", "Table 2", dict(zip(
    (f"EfficientNet-B{i}" for i in range(8)),
    (77.1, 79.1, 80.1, 81.6, 82.9, 83.6, 84.0, 84.3))), **_imagenet("top-1 accuracy (%)"))

# Tan & Le 2021, Table 7: EfficientNetV2 trained on ImageNet-1k.
EFFICIENTNETV2_T7 = Table("tan2021", "Table 7", {
    "EfficientNetV2-S": 83.9, "EfficientNetV2-M": 85.1, "EfficientNetV2-L": 85.7},
    **_imagenet("top-1 accuracy (%)"))
