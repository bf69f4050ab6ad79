"""Sweeps: a config file declares its variants as products and zips of overrides.

An experiment file may define, next to `get_config(arg)`, a `get_sweep(arg)` that
returns a list of override dicts (dotted field names), built with these helpers:

    from flaxcnn import sweep

    def get_sweep(arg=""):
      return sweep.product(
          sweep.axis("model.kwargs.widen_factor", [1, 2, 4, 8]),  # WRN k
          sweep.seeds(3))

Each variant is the base config with its overrides applied; its name is made of
the overrides ("widen_factor=4,seed=1"), and it runs in WORKDIR/<name>/:

    python launch.py --config=experiments/ablations/digits_depth.py --workdir=DIR --sweep
    python launch.py --config=... --workdir=DIR --list_variants     # names, count, status
    python launch.py --config=... --workdir=DIR --sweep_index=3     # one variant per job

or from Python: `sweep.variants(path)`, `sweep.run(path, workdir, index=None)`, and
`sweep.launch(path, workdir, "local", parallel=2)` (or "slurm"), which runs each
variant as its own job (flaxcnn/sweep/launchers/) and returns a handle with
`status()` (a DataFrame), `done()` and `wait()`.
Finished variants (summary.json present) are skipped, interrupted ones resume from
their checkpoints, and a variant that fails (an impossible combination, a NaN loss)
is recorded as failed in its variant.json without stopping the others.
`flaxcnn.results.load(DIR)` collects the outcome.

The package: declare.py (axes, names, the variants of a file), runner.py (running
them here), tracking.py (variant.json, status, listing), launchers/ (variants as
submitit jobs, locally or on SLURM: one file per launcher), command.py (launch.py's sweep flags).
"""
from flaxcnn.sweep.declare import (Overrides, apply_overrides, axis, chain,  # noqa: F401
                                   check_command_line, load_module, overrides_of, product,
                                   seeds, source_path, variant_name, variants, zip)
from flaxcnn.sweep.tracking import (FAILED, FINISHED, INCOMPLETE, INTERRUPTED,  # noqa: F401
                                   PENDING, QUEUED, RUNNING, STATUS_COLUMNS, describe,
                                   describe_state, one_line, read_json, records, status,
                                   summary_line, variant_status, write_json)
from flaxcnn.sweep.runner import plan, run  # noqa: F401
from flaxcnn.sweep.launchers import Launch, Resources, launch  # noqa: F401
from flaxcnn.sweep.command import main  # noqa: F401
