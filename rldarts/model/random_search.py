"""Random search baseline: genotypes drawn uniformly under the discretization constraints.

A discretized cell keeps, for node i, the ``min(k, num_inputs + i)`` strongest of its
``num_inputs + i`` incoming edges, each with one non-zero op (``genotypes.discretize``).
``sample_cell_genotype`` draws from exactly that set, uniformly: the kept inputs are a
uniform subset of that size, each kept edge's op is uniform over the non-zero ops.

Samples form a seeded stream: sample ``index`` of seed ``seed`` uses the generator
``np.random.default_rng([seed, index])``, so the same N genotypes come back whatever
order (or subset) they are asked for in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from rldarts.common.files import atomic_write_json, atomic_write_text
from rldarts.model import ops as ops_lib
from rldarts.model.genotypes import NETWORK_CELL_TYPES, CellGenotype, NetworkGenotype, Provenance

GENOTYPE_FILE = "genotype.json"
INFO_FILE = "random_search.json"


def real_ops(ops: Sequence[str] | str) -> tuple[str, ...]:
    """The ops a genotype may hold: the search space without its zero ops."""
    ops = ops_lib.resolve_search_space(ops if isinstance(ops, str) else tuple(ops))
    real = tuple(op for op in ops if op not in ops_lib.ZERO_OPS)
    if not real:
        raise ValueError(f"search space {ops} has only zero ops: nothing to sample")
    return real


def sample_cell_genotype(
    ops: Sequence[str] | str, num_nodes: int, k: int, rng: np.random.Generator, num_inputs: int = 1
) -> CellGenotype:
    """One cell drawn uniformly among the cells ``discretize(alphas, ops, k)`` can return."""
    if num_nodes <= 0 or k <= 0 or num_inputs <= 0:
        raise ValueError(
            f"num_nodes, k and num_inputs must be positive, got "
            f"num_nodes={num_nodes}, k={k}, num_inputs={num_inputs}"
        )
    real = real_ops(ops)
    nodes = []
    for i in range(num_nodes):
        candidates = num_inputs + i
        kept = np.sort(rng.choice(candidates, size=min(k, candidates), replace=False))
        nodes.append(tuple((int(j), real[int(rng.integers(len(real)))]) for j in kept))
    return CellGenotype(nodes=tuple(nodes), num_inputs=num_inputs)


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` in the stream of ``seed``."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    return np.random.default_rng([int(seed), int(index)])


def sample_network_genotype(
    cell_types: Sequence[str],
    ops: Sequence[str] | str,
    num_nodes: int,
    k: int,
    seed: int,
    index: int,
) -> NetworkGenotype:
    """The ``index``-th genotype of the stream ``seed``: one random cell per cell type
    (drawn in the order of ``cell_types``)."""
    if not cell_types:
        raise ValueError("need at least one cell type")
    rng = sample_rng(seed, index)
    return NetworkGenotype({t: sample_cell_genotype(ops, num_nodes, k, rng) for t in cell_types})


def sample_dir(out_dir: str, index: int) -> str:
    return os.path.join(out_dir, f"random_{index:03d}")


def write_random_genotypes(
    out_dir: str,
    n: int,
    seed: int,
    network: str,
    search_space: Sequence[str] | str,
    num_nodes: int,
    k: int,
    *,
    depths: Sequence[int] | None = None,
    dense: int | None = None,
    output_mode: str | None = None,
    first_conv: bool | None = None,
) -> list[str]:
    """Writes samples 0..n-1 as ``out_dir/random_{i:03d}/genotype.json`` (what
    ``--config.genotype`` reads) plus ``random_search.json`` (sample index, seed,
    genotype); returns the genotype paths. Atomic, and idempotent for a fixed seed.

    Given the other ``net.*`` keys of the config they are for (``depths``, ``dense``,
    ``output_mode``, ``first_conv``; ``search_space`` then a name), each genotype
    records its provenance (method 'random'), so the file alone rebuilds its network."""

    if network not in NETWORK_CELL_TYPES:
        raise ValueError(
            f"network {network!r} has no cells; DARTS networks: {', '.join(NETWORK_CELL_TYPES)}"
        )
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    net = (depths, dense, output_mode, first_conv)
    found_with = (
        None
        if any(v is None for v in net)
        else Provenance(
            "random", network, search_space, num_nodes, output_mode, first_conv, depths, dense
        )
    )
    paths = []
    for i in range(n):
        genotype = sample_network_genotype(
            NETWORK_CELL_TYPES[network], search_space, num_nodes, k, seed, i
        ).with_provenance(found_with)
        d = sample_dir(out_dir, i)
        path = os.path.join(d, GENOTYPE_FILE)
        atomic_write_text(path, genotype.to_json())
        atomic_write_json(
            os.path.join(d, INFO_FILE),
            {
                "sample_index": i,
                "seed": int(seed),
                "network": network,
                "search_space": (
                    search_space if isinstance(search_space, str) else list(search_space)
                ),
                "num_nodes": int(num_nodes),
                "k": int(k),
                "genotype": json.loads(genotype.to_json()),
            },
        )
        paths.append(path)
    return paths
