"""The public import of the README, ``import rldarts.cells as cells``: DARTS search and
fixed cells, alphas and discretization, under one stable name. The code lives in the
``rldarts.model`` layer (``cells``, ``genotypes``); this module only re-exports it."""

from rldarts.model.cells import (
    METHODS,
    OUTPUT_MODES,
    FixedCell,
    MixedOp,
    SampledOp,
    SearchCell,
    channel_shuffle,
    check_partial_channels,
    edge_probabilities,
    gumbel_hard_weights,
    init_alphas,
    init_edge_weights,
    mean_entropy,
    one_hot_alphas,
    parameter_free_share,
)
from rldarts.model.genotypes import (
    EDGE_WEIGHTS,
    CellGenotype,
    NetworkGenotype,
    discretize,
    discretize_cell,
    split_alphas,
)

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
