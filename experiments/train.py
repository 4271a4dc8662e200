"""Train a fixed network (IMPALA-CNN or a discretized cell) from scratch with PPO.

python -m experiments.train --config=experiments/configs/train.py:cpu_demo --workdir=DIR \
    [--config.network=darts_standard --config.genotype=SEARCH_DIR/genotype.json]
"""
from experiments.common import run_main

if __name__ == "__main__":
    run_main(require_supernet=False)
