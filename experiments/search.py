"""RL-DARTS search: the supernet acts in Procgen and learns weights and alphas with PPO.

python -m experiments.search --config=experiments/configs/search.py:cpu_demo --workdir=DIR
"""

from experiments.common import run_main

if __name__ == "__main__":
    run_main(require_supernet=True)
