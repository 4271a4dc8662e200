"""Train a fixed network (a discretized cell or IMPALA-CNN) from scratch.

A found cell, in the network its genotype file records (network, search space, nodes,
output mode, widths; see experiments/configs/train.py for what a --config.net.* key may
change):
    python -m experiments.train --config=experiments/configs/train.py:cpu_demo \
        --config.genotype=SEARCH_DIR/genotype.json --workdir=DIR
IMPALA-CNN at the preset's widths (the default without a genotype):
    python -m experiments.train --config=experiments/configs/train.py:cpu_demo \
        --config.network=impala --workdir=DIR
A genotype file from before provenance (format 1) also needs
--config.network=darts_standard (or darts_impala).
"""

from experiments.common import run_main

if __name__ == "__main__":
    run_main(require_supernet=False)
