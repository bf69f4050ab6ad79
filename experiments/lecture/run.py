"""The lecture on a laptop: runs the claims' experiments and builds their page.

  python experiments/lecture/run.py                     # every claim, then docs/lecture.md
  python experiments/lecture/run.py depth transfer      # some claims (then the page)
  python experiments/lecture/run.py --budget=paper --workdir=/scratch/lecture  # a GPU: the papers' budgets
  python experiments/lecture/run.py --page_only         # redraw the page from docs/lecture/

A claim's stages are the commands of its experiment files (`launch.py --config=
experiments/lecture/<file>.py[:args] --workdir=WORKDIR/<claim>[/<stage>] [--sweep]`) or
of a benchmark, run one after the other; rerunning resumes them (finished variants are
skipped, interrupted ones continue from their checkpoints). Then every run of every
seed is collected into OUT/<claim>.json (the numbers, the verdict, the machine, the
commands) and OUT/<claim>_curves.csv (the curves), from which OUT/<claim>.png and the
page are drawn: the page is rebuilt from those files, never edited by hand
(`claims.py` says what each claim collects and how it is judged).
"""
import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
sys.path.insert(0, _ROOT)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import pandas as pd  # noqa: E402

from flaxcnn import backend, sweep  # noqa: E402

claims = sweep.load_module(os.path.join(_HERE, "claims.py"))

BUDGETS = ("laptop", "paper", "smoke")


def _short(path: str) -> str:
  """`path` relative to the project root where it lies inside it (commands run there)."""
  rel = os.path.relpath(os.path.abspath(path), _ROOT)
  return path if rel.startswith("..") else rel


def stage_command(stage, workdir: str, budget: str, seeds: int = 0):
  """The command line of one stage (a list of arguments), run from the project root."""
  workdir = _short(workdir)
  if stage.benchmark:
    return [sys.executable, os.path.join("benchmarks", stage.benchmark),
            *stage.args_for(budget), f"--json={os.path.join(workdir, stage.name + '.json')}"]
  args = [a for a in (stage.arg.format(workdir=workdir), f"budget={budget}",
                      f"seeds={seeds}" if seeds and stage.sweep else "") if a]
  cmd = [sys.executable, "launch.py",
         f"--config={_short(os.path.join(_HERE, stage.file))}:{','.join(args)}",
         f"--workdir={os.path.join(workdir, stage.name) if stage.name else workdir}"]
  return cmd + (["--sweep"] if stage.sweep else [])


def run_claim(claim, workdir: str, budget: str, seeds: int) -> None:
  for i, stage in enumerate(claim.stages):
    cmd = stage_command(stage, os.path.join(workdir, claim.key), budget, seeds)
    if stage.benchmark and os.path.exists(os.path.join(_ROOT, cmd[-1].split("=", 1)[1])):
      print(f"[{claim.key} {i + 1}/{len(claim.stages)}] {stage.benchmark}: measured, skipped",
            flush=True)
      continue
    print(f"[{claim.key} {i + 1}/{len(claim.stages)}] {shlex.join(cmd)}", flush=True)
    rc = subprocess.run(cmd, cwd=_ROOT).returncode
    if rc:
      raise SystemExit(f"error: the {claim.key} stage `{shlex.join(cmd)}` stopped with exit "
                       f"code {rc}; rerun this command to resume it")


def machine() -> str:
  return f"{backend.host_description()}, {platform.system()}"


def collect(claim, workdir: str, out: str, budget: str, seeds: int) -> dict:
  """OUT/<claim>.json and OUT/<claim>_curves.csv from the claim's run directories."""
  claim_dir = os.path.join(workdir, claim.key)
  result, curves = claim.collect(claim_dir)
  os.makedirs(out, exist_ok=True)
  if claim.images:
    result["images"] = claim.images(claim_dir, out)
  result.update(key=claim.key, title=claim.title, lecture=claim.lecture, paper=claim.paper,
                claim=claim.claim, budget=claim.budget if budget == "laptop" else budget,
                machine=machine(), collected=time.strftime("%Y-%m-%d"),
                command=f"python experiments/lecture/run.py {claim.key}"
                        + (f" --budget={budget}" if budget != "laptop" else "")
                        + (f" --seeds={seeds}" if seeds else ""),
                stages=["python " + shlex.join(stage_command(
                    s, os.path.join(workdir, claim.key), budget, seeds)[1:])
                    for s in claim.stages])
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, f"{claim.key}.json"), "w") as f:
    json.dump(result, f, indent=1, sort_keys=True, default=float)
  if curves is not None:
    curves.to_csv(os.path.join(out, f"{claim.key}_curves.csv"), index=False,
                  float_format="%.6g")
  return result


def build_page(out: str, page: str) -> str:
  """The page from OUT/<claim>.json (and the curves beside them): figures redrawn, text
  written, in the lecture's order; claims not collected yet are listed as such."""
  sections, missing = [], []
  for claim in claims.CLAIMS:
    path = os.path.join(out, f"{claim.key}.json")
    if not os.path.exists(path):
      missing.append(claim)
      continue
    with open(path) as f:
      result = json.load(f)
    csv = os.path.join(out, f"{claim.key}_curves.csv")
    curves = pd.read_csv(csv) if os.path.exists(csv) else None
    figure = os.path.join(out, f"{claim.key}.png")
    claim.figure(result, curves, figure)
    sections.append(claims.section(result, os.path.relpath(figure, os.path.dirname(page))))
  text = claims.page_header() + "\n".join(sections)
  if missing:
    text += "\n## Not run yet\n\n" + "".join(
        f"- {c.title}: `python experiments/lecture/run.py {c.key}`\n" for c in missing)
  os.makedirs(os.path.dirname(os.path.abspath(page)), exist_ok=True)
  with open(page, "w") as f:
    f.write(text)
  return page


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("claims", nargs="*", help=f"claims to run (default all): "
                 f"{', '.join(c.key for c in claims.CLAIMS)}")
  p.add_argument("--workdir", default=os.path.join(_ROOT, "runs", "lecture"))
  p.add_argument("--budget", default="laptop", choices=BUDGETS,
                 help="laptop: minutes on a CPU; paper: the papers' steps (a GPU); smoke: "
                      "a few steps on tiny data (tests)")
  p.add_argument("--seeds", type=int, default=0, help="seeds per arm (0: as each file declares)")
  p.add_argument("--out", default=os.path.join(_ROOT, "docs", "lecture"),
                 help="where the results files and figures go")
  p.add_argument("--page", default=None, help="the page (default: OUT/../lecture.md)")
  p.add_argument("--page_only", action="store_true", help="redraw the page from OUT only")
  args = p.parse_args(argv)
  known = {c.key: c for c in claims.CLAIMS}
  unknown = [k for k in args.claims if k not in known]
  if unknown:
    p.error(f"unknown claim {unknown[0]!r}; the claims are {', '.join(known)}")
  args.workdir, args.out = os.path.abspath(args.workdir), os.path.abspath(args.out)
  page = args.page or os.path.join(os.path.dirname(args.out), "lecture.md")
  if not args.page_only:
    for claim in [known[k] for k in args.claims] or claims.CLAIMS:
      run_claim(claim, args.workdir, args.budget, args.seeds)
      collect(claim, args.workdir, args.out, args.budget, args.seeds)
  print(f"wrote {build_page(args.out, page)}")


if __name__ == "__main__":
  main()
