"""Train-from-scratch configs: IMPALA-CNN (default) or a discretized cell.

Use: --config=experiments/configs/train.py:PRESET with --config.network=impala, or
--config.network=darts_standard --config.genotype=RUN/genotype.json. The preset's net
widths (depths, dense) apply to both, so a cell and IMPALA compare at equal widths.
"""
from experiments.configs import base


def get_config(preset: str = "cpu_demo"):
    c = base.build(preset or "cpu_demo", network="impala")
    c.arch.mode = "frozen"  # fixed networks have no alphas
    return c
