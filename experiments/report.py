"""Evaluation report over finished (or partial) runs: report.md + PNG figures.

python -m experiments.report --runs=DIR[,DIR...] --out=DIR

Each DIR is a workdir (config.json + metrics.csv) or a folder whose subfolders (depth <= 4,
as launch/sweep.py lays them out) are workdirs. See rldarts/report/writer.py for the sections
(section 7, cells along the search: rldarts/report/report_milestones.py). Paths in report.md are
relative to it. `python -m launch.sweep ... --report=DIR` runs a sweep and then this.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from experiments.configs import base
from rldarts.run import errors

RUNS = flags.DEFINE_list("runs", None, "Workdirs or folders of workdirs, comma-separated.")
OUT = flags.DEFINE_string("out", None, "Output folder for report.md and its figures.")


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}")
    if not RUNS.value or not OUT.value:
        sys.exit("error: both --runs=DIR[,DIR...] and --out=DIR are required")
    from rldarts.report import writer as report  # heavy imports after flag parsing

    try:
        path = report.write_report(
            [os.path.abspath(d) for d in RUNS.value],
            os.path.abspath(OUT.value),
            presets=base.preset_dicts(),
        )
    except ValueError as e:
        errors.exit_with(e)
    print(f"report: {path}")


if __name__ == "__main__":
    app.run(main)
