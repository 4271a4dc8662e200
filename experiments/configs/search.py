"""Search configs: the supernet acts and learns its alphas.

Use: --config=experiments/configs/search.py:PRESET (smoke | cpu_demo | paper | paper_official
| minatar | minatar_smoke | dmc | dmc_smoke)
"""

from experiments.configs import base


def get_config(preset: str = "cpu_demo"):
    preset = preset or "cpu_demo"
    return base.build(preset, network=base.networks_of(preset)[0])
