"""Train-from-scratch configs: a discretized cell from a genotype file, or IMPALA-CNN.

Use: --config=experiments/configs/train.py:PRESET --config.genotype=RUN/genotype.json
(the network the genotype was found with, as its file records), or no genotype for
IMPALA-CNN (--config.network=impala says so explicitly).

``network`` and the ``net.*`` keys start unset here: a genotype file that records how it
was found fills them (rldarts.run.config_checks.resolve_genotype_config); without one (or
with a format-1 file, which records nothing) they take ``without_genotype``: IMPALA-CNN
at this preset's widths, so a cell and IMPALA compare at equal widths (MinAtar presets:
``minatar_cnn``; DM-Control presets: ``drq``, ``base.NETWORKS_OF_PRESET``). A key given on
the command line wins where it shapes the network around the cells (net.depths,
net.dense, net.first_conv) and must agree with the file where it describes the cells
(network, net.search_space, net.num_nodes, net.output_mode).
"""

from ml_collections import config_dict

from experiments.configs import base


def get_config(preset: str = "cpu_demo"):
    preset = preset or "cpu_demo"
    c = base.build(preset, network=base.networks_of(preset)[1])
    c.arch.mode = "frozen"  # fixed networks have no alphas
    c.without_genotype = config_dict.ConfigDict({"network": c.network, "net": c.net.to_dict()})
    c.network = config_dict.placeholder(str)
    for key, value in c.without_genotype.net.items():
        if key != "remat":  # a memory setting, not a network key a genotype file records
            c.net[key] = config_dict.placeholder(type(value))
    return c
