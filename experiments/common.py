"""The command-line shell around rldarts.experiment.run shared by search and train."""
from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

CONFIG = config_flags.DEFINE_config_file("config", None, "experiments/configs/*.py:PRESET")
WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (resumed if it has a checkpoint).")


def run_main(require_supernet: bool) -> None:
    def main(argv):
        if len(argv) > 1:
            sys.exit(f"error: unexpected arguments {argv[1:]}")
        if CONFIG.value is None or not WORKDIR.value:
            sys.exit("error: both --config=experiments/configs/FILE.py:PRESET and "
                     "--workdir=DIR are required")
        from rldarts import experiment  # heavy imports after flag parsing

        workdir = os.path.abspath(WORKDIR.value)
        try:
            result = experiment.run(CONFIG.value, workdir, require_supernet)
        except (ValueError, experiment.NonFiniteLossError) as e:
            sys.exit(f"error: {e}")
        print(f"\ndone: {result['env_steps']:,} env steps in {workdir}")
        for name, what in [("metrics.csv", "metrics"), ("tb", "TensorBoard events"),
                           ("genotype.json", "genotype"), ("cells", "cell diagrams"),
                           ("alpha_evolution.png", "alpha plot"),
                           ("checkpoints", "checkpoints")]:
            path = os.path.join(workdir, name)
            if os.path.exists(path):
                print(f"  {what:<20} {path}")

    app.run(main)
