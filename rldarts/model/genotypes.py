"""Genotypes: discrete cells as plain data, and the discretization rule.

A cell genotype lists, for each intermediate node, its kept incoming edges
``(input_index, op_name)`` ordered by input index. Indices below ``num_inputs``
are cell inputs; ``num_inputs + j`` is node j. A network genotype maps each cell
type (``normal``, ``reduction``) to a cell genotype, and may record how it was found
(``Provenance``: method, DARTS network, search space, nodes, output mode, widths), so
that a genotype file alone rebuilds the network it belongs to. Both serialise to JSON
with a format version, and loading validates everything.

Format 2 (written now) adds the optional ``found_with`` object to network genotypes;
format 1 files (no provenance) still load, with ``found_with`` None.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rldarts.model import ops as ops_lib

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: no provenance (found_with)
CELL_TYPES = ("normal", "reduction")
# The DARTS networks (rldarts.model.networks) and the cell types each is built from; here
# because a genotype file names its network, and loading it checks the cells against it.
NETWORK_CELL_TYPES = {
    "darts_impala": ("normal",),
    "darts_standard": ("normal", "reduction"),
    "darts_minatar": ("normal",),  # 10x10 MinAtar grids: no reduction
    "darts_dmc": ("normal",),  # DM-Control: stride-2 stem, IMPALA stages of normal cells
}
# How a cell combines its intermediate nodes into its output (cells.SearchCell / FixedCell).
OUTPUT_MODES = ("concat_conv", "sum", "average", "weighted_sum", "last_node")

Edge = tuple[int, str]


@dataclasses.dataclass(frozen=True)
class CellGenotype:
    nodes: tuple[tuple[Edge, ...], ...]
    num_inputs: int = 1

    def __post_init__(self):
        nodes = tuple(tuple((int(i), str(op)) for i, op in node) for node in self.nodes)
        object.__setattr__(self, "nodes", nodes)
        validate_cell(self)

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    @property
    def op_names(self) -> tuple[str, ...]:
        return tuple(op for node in self.nodes for _, op in node)

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_inputs": self.num_inputs,
            "nodes": [[[i, op] for i, op in node] for node in self.nodes],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CellGenotype:
        if not isinstance(data, Mapping) or "nodes" not in data:
            raise ValueError(
                f"malformed cell genotype: expected an object with 'nodes', got {str(data)[:80]!r}"
            )
        nodes = data["nodes"]
        if not isinstance(nodes, Sequence) or isinstance(nodes, str):
            raise ValueError("malformed cell genotype: 'nodes' must be a list of nodes")
        parsed = []
        for j, node in enumerate(nodes):
            if not isinstance(node, Sequence) or isinstance(node, str):
                raise ValueError(
                    f"malformed cell genotype: node {j} must be a list of "
                    "[input_index, op_name] edges"
                )
            edges = []
            for edge in node:
                if (
                    not isinstance(edge, Sequence)
                    or isinstance(edge, str)
                    or len(edge) != 2
                    or not isinstance(edge[0], int)
                    or isinstance(edge[0], bool)
                    or not isinstance(edge[1], str)
                ):
                    raise ValueError(
                        f"malformed cell genotype: node {j} has edge {edge!r}; "
                        "an edge is [input_index, op_name]"
                    )
                edges.append((edge[0], edge[1]))
            parsed.append(tuple(edges))
        num_inputs = data.get("num_inputs", 1)
        if not isinstance(num_inputs, int):
            raise ValueError(
                f"malformed cell genotype: num_inputs must be an int, got {num_inputs!r}"
            )
        return cls(nodes=tuple(parsed), num_inputs=num_inputs)

    def to_json(self) -> str:
        return _dumps({"format_version": FORMAT_VERSION, **self.to_dict()})

    @classmethod
    def from_json(cls, text: str) -> CellGenotype:
        return cls.from_dict(_load_versioned(text))


def validate_cell(cell: CellGenotype) -> None:
    """Raises ValueError naming the first problem: unknown op, bad index, empty node."""
    if cell.num_inputs <= 0:
        raise ValueError(f"num_inputs must be positive, got {cell.num_inputs}")
    if not cell.nodes:
        raise ValueError("a cell genotype needs at least one node")
    for j, node in enumerate(cell.nodes):
        if not node:
            raise ValueError(f"node {j} has no incoming edge")
        limit = cell.num_inputs + j
        seen = set()
        for i, op in node:
            if op not in ops_lib.OPS:
                raise ValueError(
                    f"node {j} uses unknown op {op!r}; valid ops: {', '.join(sorted(ops_lib.OPS))}"
                )
            if op in ops_lib.ZERO_OPS:
                raise ValueError(f"node {j} keeps a {op!r} edge; a genotype holds real ops")
            if not 0 <= i < limit:
                raise ValueError(
                    f"node {j} has input index {i} out of range [0, {limit}) "
                    f"({cell.num_inputs} cell input(s) + {j} earlier node(s))"
                )
            if i in seen:
                raise ValueError(f"node {j} has two edges from input {i}")
            seen.add(i)
        if [i for i, _ in node] != sorted(i for i, _ in node):
            raise ValueError(f"node {j}: edges must be ordered by input index")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclasses.dataclass(frozen=True)
class Provenance:
    """How a network genotype was found: the method ('darts': a supernet search,
    'random': rldarts.model.random_search) and the config fields of the network it belongs
    to (``network``, ``net.search_space``, ``net.num_nodes``, ``net.output_mode``,
    ``net.first_conv``, ``net.depths``, ``net.dense``), enough to rebuild it."""

    method: str
    network: str
    search_space: str
    num_nodes: int
    output_mode: str
    first_conv: bool
    depths: tuple[int, ...]
    dense: int

    def __post_init__(self):
        def bad(field, value, what):
            raise ValueError(f"found_with.{field}={value!r} is not valid; {what}")

        if not isinstance(self.method, str) or not self.method:
            bad("method", self.method, "expected a non-empty string (e.g. darts, random)")
        for field, choices in (
            ("network", tuple(sorted(NETWORK_CELL_TYPES))),
            ("search_space", tuple(ops_lib.SEARCH_SPACES)),
            ("output_mode", OUTPUT_MODES),
        ):
            value = getattr(self, field)
            if not isinstance(value, str) or value not in choices:
                bad(field, value, f"valid choices: {', '.join(choices)}")
        for field in ("num_nodes", "dense"):
            value = getattr(self, field)
            if not _is_int(value) or value <= 0:
                bad(field, value, "expected a positive int")
            object.__setattr__(self, field, int(value))
        if not isinstance(self.first_conv, (bool, np.bool_)):
            bad("first_conv", self.first_conv, "expected true or false")
        object.__setattr__(self, "first_conv", bool(self.first_conv))
        depths = self.depths
        if (
            not isinstance(depths, (list, tuple))
            or not depths
            or not all(_is_int(d) and d > 0 for d in depths)
        ):
            bad("depths", depths, "expected a non-empty list of positive ints")
        object.__setattr__(self, "depths", tuple(int(d) for d in depths))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["depths"] = list(self.depths)
        return d

    @classmethod
    def from_dict(cls, data: Any) -> Provenance:
        fields = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(data, Mapping):
            raise ValueError(
                f"malformed genotype found_with: expected an object with "
                f"{', '.join(fields)}, got {str(data)[:80]!r}"
            )
        missing = [f for f in fields if f not in data]
        unknown = sorted(set(data) - set(fields))
        if missing or unknown:
            raise ValueError(
                "malformed genotype found_with: "
                + (
                    f"missing {', '.join(missing)}"
                    if missing
                    else f"unknown field(s) {', '.join(map(str, unknown))}"
                )
                + f"; its fields: {', '.join(fields)}"
            )
        return cls(**{f: data[f] for f in fields})


@dataclasses.dataclass(frozen=True)
class NetworkGenotype:
    """Cell type ('normal', 'reduction') -> CellGenotype, and optionally how it was found."""

    cells: Mapping[str, CellGenotype]
    found_with: Provenance | None = None

    def __post_init__(self):
        if not self.cells:
            raise ValueError("a network genotype needs at least one cell type")
        for name, cell in self.cells.items():
            if name not in CELL_TYPES:
                raise ValueError(f"unknown cell type {name!r}; valid: {', '.join(CELL_TYPES)}")
            if not isinstance(cell, CellGenotype):
                raise ValueError(f"cell type {name!r} must map to a CellGenotype")
        object.__setattr__(self, "cells", dict(self.cells))
        if self.found_with is not None:
            if not isinstance(self.found_with, Provenance):
                raise ValueError("found_with must be a Provenance or None")
            self._check_found_with()

    def _check_found_with(self) -> None:
        """The cells must be what the recorded network and search space produce."""
        p = self.found_with
        needed = NETWORK_CELL_TYPES[p.network]
        if sorted(self.cells) != sorted(needed):
            raise ValueError(
                f"found_with.network={p.network!r} has cell types "
                f"{sorted(needed)}, the genotype has {sorted(self.cells)}"
            )
        space = ops_lib.SEARCH_SPACES[p.search_space]
        for name, cell in self.cells.items():
            if cell.num_nodes != p.num_nodes:
                raise ValueError(
                    f"found_with.num_nodes={p.num_nodes} but the {name} cell "
                    f"has {cell.num_nodes} nodes"
                )
            outside = sorted(set(cell.op_names) - set(space))
            if outside:
                raise ValueError(
                    f"the {name} cell uses {', '.join(outside)}, outside "
                    f"found_with.search_space={p.search_space!r}"
                )

    def __hash__(self):  # hashable so it can be a (static) Flax module attribute
        return hash(self.to_json())

    def __getitem__(self, cell_type: str) -> CellGenotype:
        return self.cells[cell_type]

    def with_provenance(self, found_with: Provenance | None) -> NetworkGenotype:
        return dataclasses.replace(self, found_with=found_with)

    def to_json(self) -> str:
        body = {name: cell.to_dict() for name, cell in self.cells.items()}
        head = {"format_version": FORMAT_VERSION}
        if self.found_with is not None:
            head["found_with"] = self.found_with.to_dict()
        return _dumps({**head, "cells": body})

    @classmethod
    def from_json(cls, text: str) -> NetworkGenotype:
        data = _load_versioned(text)
        cells = data.get("cells")
        if not isinstance(cells, Mapping):
            raise ValueError(
                "malformed network genotype: expected a 'cells' object mapping "
                f"cell types ({', '.join(CELL_TYPES)}) to cell genotypes"
            )
        found = data.get("found_with") if data["format_version"] >= 2 else None
        return cls(
            {name: CellGenotype.from_dict(cell) for name, cell in cells.items()},
            None if found is None else Provenance.from_dict(found),
        )

    @classmethod
    def load(cls, path: str) -> NetworkGenotype:
        try:
            with open(path) as f:
                text = f.read()
        except OSError as e:
            raise ValueError(f"cannot read genotype file {path}: {e.strerror}") from None
        try:
            return cls.from_json(text)
        except ValueError as e:
            raise ValueError(f"genotype file {path}: {e}") from None


def _dumps(obj) -> str:
    """Indented JSON with each edge ``[index, "op"]`` and each list of ints (depths) kept
    on one line, for reading."""
    text = json.dumps(obj, indent=2)
    text = re.sub(r'\[\s+(\d+),\s+("[^"]*")\s+\]', r"[\1, \2]", text)
    return re.sub(
        r"\[\s+(\d+(?:,\s+\d+)*)\s+\]",
        lambda m: "[" + ", ".join(re.split(r",\s+", m.group(1))) + "]",
        text,
    )


def _load_versioned(text: str) -> dict:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed genotype JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError("malformed genotype JSON: expected an object")
    version = data.get("format_version")
    if not _is_int(version) or version not in READABLE_VERSIONS:
        raise ValueError(
            f"unsupported genotype format_version {version!r}; "
            f"this rldarts reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    return data


def softmax(x: np.ndarray) -> np.ndarray:
    """NumPy softmax over the last axis (alphas -> op probabilities)."""
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


# The key under which a PC-DARTS supernet keeps its edge-normalisation weights in the
# alpha pytree: {cell type: [per node (num_inputs + i,)]}, beside the cell types' alphas.
EDGE_WEIGHTS = "edge_weights"


def split_alphas(alphas: Mapping) -> tuple[dict, dict]:
    """A supernet's alpha pytree -> ({cell type: op alphas}, {cell type: edge weights})
    (the second empty unless the supernet is a PC-DARTS one)."""
    ops_alphas = {k: v for k, v in alphas.items() if k != EDGE_WEIGHTS}
    return ops_alphas, dict(alphas.get(EDGE_WEIGHTS, {}))


def discretize_cell(
    alphas: Sequence[Any],
    ops: Sequence[str],
    k: int = 2,
    inverse_temperature: float = 1.0,
    edge_weights: Sequence[Any] | None = None,
) -> CellGenotype:
    """The official rule: drop Zero, argmax op per edge, keep each node's k strongest edges.

    An edge's strength is the probability of its best non-zero op (probabilities from
    the full softmax; the zero op's share is set to 0, not renormalised), times
    softmax(edge_weights of its node) for that edge when the supernet has PC-DARTS edge
    weights (as PC-DARTS). Ties go to the lower op / input index, so the result is
    deterministic.
    """
    ops = ops_lib.resolve_search_space(tuple(ops))
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    real = [j for j, op in enumerate(ops) if op not in ops_lib.ZERO_OPS]
    if not real:
        raise ValueError(f"search space {ops} has only zero ops: nothing to keep")
    num_inputs = np.asarray(alphas[0]).shape[0]
    if edge_weights is not None and len(edge_weights) != len(alphas):
        raise ValueError(f"edge weights for {len(edge_weights)} nodes, alphas for {len(alphas)}")
    nodes = []
    for j, node_alpha in enumerate(alphas):
        a = np.asarray(node_alpha, dtype=np.float64)
        if a.shape != (num_inputs + j, len(ops)):
            raise ValueError(
                f"alphas of node {j} have shape {a.shape}; expected "
                f"{(num_inputs + j, len(ops))} for {len(ops)} ops"
            )
        probs = softmax(inverse_temperature * a)[:, real]
        best = probs.argmax(axis=1)
        strength = probs[np.arange(len(probs)), best]
        if edge_weights is not None:
            beta = np.asarray(edge_weights[j], dtype=np.float64)
            if beta.shape != (num_inputs + j,):
                raise ValueError(
                    f"edge weights of node {j} have shape {beta.shape}; "
                    f"expected {(num_inputs + j,)}"
                )
            strength = strength * softmax(beta)
        # Stable sort on -strength: equal strengths keep the lower input index.
        kept = sorted(np.argsort(-strength, kind="stable")[:k])
        nodes.append(tuple((int(i), ops[real[best[i]]]) for i in kept))
    return CellGenotype(nodes=tuple(nodes), num_inputs=num_inputs)


def discretize(alphas, ops: Sequence[str], k: int = 2, inverse_temperature: float = 1.0):
    """Cell alphas (list per node) -> CellGenotype; a supernet's alpha dict (cell type ->
    alphas, plus ``EDGE_WEIGHTS`` for PC-DARTS) -> NetworkGenotype."""
    if isinstance(alphas, Mapping):
        cells, edge_weights = split_alphas(alphas)
        return NetworkGenotype(
            {
                name: discretize_cell(a, ops, k, inverse_temperature, edge_weights.get(name))
                for name, a in cells.items()
            }
        )
    return discretize_cell(alphas, ops, k, inverse_temperature)
