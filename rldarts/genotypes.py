"""Genotypes: discrete cells as plain data, and the discretization rule.

A cell genotype lists, for each intermediate node, its kept incoming edges
``(input_index, op_name)`` ordered by input index. Indices below ``num_inputs``
are cell inputs; ``num_inputs + j`` is node j. A network genotype maps each cell
type (``normal``, ``reduction``) to a cell genotype. Both serialise to JSON with
a format version, and loading validates everything.
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Mapping, Sequence

import numpy as np

from rldarts import ops as ops_lib

FORMAT_VERSION = 1
CELL_TYPES = ("normal", "reduction")

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
        return {"num_inputs": self.num_inputs,
                "nodes": [[[i, op] for i, op in node] for node in self.nodes]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CellGenotype":
        if not isinstance(data, Mapping) or "nodes" not in data:
            raise ValueError(f"malformed cell genotype: expected an object with 'nodes', "
                             f"got {str(data)[:80]!r}")
        nodes = data["nodes"]
        if not isinstance(nodes, Sequence) or isinstance(nodes, str):
            raise ValueError("malformed cell genotype: 'nodes' must be a list of nodes")
        parsed = []
        for j, node in enumerate(nodes):
            if not isinstance(node, Sequence) or isinstance(node, str):
                raise ValueError(f"malformed cell genotype: node {j} must be a list of "
                                 "[input_index, op_name] edges")
            edges = []
            for edge in node:
                if (not isinstance(edge, Sequence) or isinstance(edge, str) or len(edge) != 2
                        or not isinstance(edge[0], int) or isinstance(edge[0], bool)
                        or not isinstance(edge[1], str)):
                    raise ValueError(f"malformed cell genotype: node {j} has edge {edge!r}; "
                                     "an edge is [input_index, op_name]")
                edges.append((edge[0], edge[1]))
            parsed.append(tuple(edges))
        num_inputs = data.get("num_inputs", 1)
        if not isinstance(num_inputs, int):
            raise ValueError(f"malformed cell genotype: num_inputs must be an int, "
                             f"got {num_inputs!r}")
        return cls(nodes=tuple(parsed), num_inputs=num_inputs)

    def to_json(self) -> str:
        return _dumps({"format_version": FORMAT_VERSION, **self.to_dict()})

    @classmethod
    def from_json(cls, text: str) -> "CellGenotype":
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
                raise ValueError(f"node {j} uses unknown op {op!r}; valid ops: "
                                 f"{', '.join(sorted(ops_lib.OPS))}")
            if op in ops_lib.ZERO_OPS:
                raise ValueError(f"node {j} keeps a {op!r} edge; a genotype holds real ops")
            if not 0 <= i < limit:
                raise ValueError(f"node {j} has input index {i} out of range [0, {limit}) "
                                 f"({cell.num_inputs} cell input(s) + {j} earlier node(s))")
            if i in seen:
                raise ValueError(f"node {j} has two edges from input {i}")
            seen.add(i)
        if [i for i, _ in node] != sorted(i for i, _ in node):
            raise ValueError(f"node {j}: edges must be ordered by input index")


@dataclasses.dataclass(frozen=True)
class NetworkGenotype:
    """Cell type ('normal', 'reduction') -> CellGenotype."""
    cells: Mapping[str, CellGenotype]

    def __post_init__(self):
        if not self.cells:
            raise ValueError("a network genotype needs at least one cell type")
        for name, cell in self.cells.items():
            if name not in CELL_TYPES:
                raise ValueError(f"unknown cell type {name!r}; valid: {', '.join(CELL_TYPES)}")
            if not isinstance(cell, CellGenotype):
                raise ValueError(f"cell type {name!r} must map to a CellGenotype")
        object.__setattr__(self, "cells", dict(self.cells))

    def __hash__(self):  # hashable so it can be a (static) Flax module attribute
        return hash(self.to_json())

    def __getitem__(self, cell_type: str) -> CellGenotype:
        return self.cells[cell_type]

    def to_json(self) -> str:
        body = {name: cell.to_dict() for name, cell in self.cells.items()}
        return _dumps({"format_version": FORMAT_VERSION, "cells": body})

    @classmethod
    def from_json(cls, text: str) -> "NetworkGenotype":
        data = _load_versioned(text)
        cells = data.get("cells")
        if not isinstance(cells, Mapping):
            raise ValueError("malformed network genotype: expected a 'cells' object mapping "
                             f"cell types ({', '.join(CELL_TYPES)}) to cell genotypes")
        return cls({name: CellGenotype.from_dict(cell) for name, cell in cells.items()})

    @classmethod
    def load(cls, path: str) -> "NetworkGenotype":
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
    """Indented JSON with each edge ``[index, "op"]`` kept on one line, for reading."""
    text = json.dumps(obj, indent=2)
    return re.sub(r'\[\s+(\d+),\s+("[^"]*")\s+\]', r'[\1, \2]', text)


def _load_versioned(text: str) -> dict:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed genotype JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError("malformed genotype JSON: expected an object")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"unsupported genotype format_version {version!r}; "
                         f"this rldarts reads version {FORMAT_VERSION}")
    return data


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def discretize_cell(alphas: Sequence[Any], ops: Sequence[str], k: int = 2,
                    inverse_temperature: float = 1.0) -> CellGenotype:
    """The official rule: drop Zero, argmax op per edge, keep each node's k strongest edges.

    An edge's strength is the probability of its best non-zero op (probabilities from
    the full softmax; the zero op's share is set to 0, not renormalised). Ties go to the
    lower op / input index, so the result is deterministic.
    """
    ops = ops_lib.resolve_search_space(tuple(ops))
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    real = [j for j, op in enumerate(ops) if op not in ops_lib.ZERO_OPS]
    if not real:
        raise ValueError(f"search space {ops} has only zero ops: nothing to keep")
    num_inputs = np.asarray(alphas[0]).shape[0]
    nodes = []
    for j, node_alpha in enumerate(alphas):
        a = np.asarray(node_alpha, dtype=np.float64)
        if a.shape != (num_inputs + j, len(ops)):
            raise ValueError(f"alphas of node {j} have shape {a.shape}; expected "
                             f"{(num_inputs + j, len(ops))} for {len(ops)} ops")
        probs = _softmax(inverse_temperature * a)[:, real]
        best = probs.argmax(axis=1)
        strength = probs[np.arange(len(probs)), best]
        # Stable sort on -strength: equal strengths keep the lower input index.
        kept = sorted(np.argsort(-strength, kind="stable")[:k])
        nodes.append(tuple((int(i), ops[real[best[i]]]) for i in kept))
    return CellGenotype(nodes=tuple(nodes), num_inputs=num_inputs)


def discretize(alphas, ops: Sequence[str], k: int = 2, inverse_temperature: float = 1.0):
    """Cell alphas (list per node) -> CellGenotype; dict cell type -> alphas -> NetworkGenotype."""
    if isinstance(alphas, Mapping):
        return NetworkGenotype({name: discretize_cell(a, ops, k, inverse_temperature)
                                for name, a in alphas.items()})
    return discretize_cell(alphas, ops, k, inverse_temperature)
