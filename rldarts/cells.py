"""The public import of the README, ``import rldarts.cells as cells``: DARTS search and
fixed cells, their edges, alphas and discretization, under one stable name. The code
lives in the ``rldarts.model`` layer (``cells``, ``edges``, ``methods``, ``genotypes``);
this module only re-exports it."""

from rldarts.model import methods as _methods
from rldarts.model.cells import (
    FixedCell,
    SearchCell,
    edge_probabilities,
    init_alphas,
    mean_entropy,
    one_hot_alphas,
    parameter_free_share,
)
from rldarts.model.edges import (
    MixedOp,
    SampledOp,
    channel_shuffle,
    check_partial_channels,
    gumbel_hard_weights,
)
from rldarts.model.genotypes import (
    EDGE_WEIGHTS,
    OUTPUT_MODES,
    CellGenotype,
    NetworkGenotype,
    discretize,
    discretize_cell,
    split_alphas,
)
from rldarts.model.methods import init_edge_weights

METHODS = tuple(_methods.METHODS)

__all__ = [
    "EDGE_WEIGHTS",
    "METHODS",
    "OUTPUT_MODES",
    "CellGenotype",
    "FixedCell",
    "MixedOp",
    "NetworkGenotype",
    "SampledOp",
    "SearchCell",
    "channel_shuffle",
    "check_partial_channels",
    "discretize",
    "discretize_cell",
    "edge_probabilities",
    "gumbel_hard_weights",
    "init_alphas",
    "init_edge_weights",
    "mean_entropy",
    "one_hot_alphas",
    "parameter_free_share",
    "split_alphas",
]
