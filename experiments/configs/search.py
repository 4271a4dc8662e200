"""Search configs: the supernet acts and learns its alphas.

Use: --config=experiments/configs/search.py:PRESET (smoke | cpu_demo | paper | paper_official)
"""

from experiments.configs import base


def get_config(preset: str = "cpu_demo"):
    return base.build(preset or "cpu_demo", network="darts_standard")
