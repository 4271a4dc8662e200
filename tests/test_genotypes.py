"""Discretization on hand-built alphas, JSON round trips and validation."""
import json

import numpy as np
import pytest

from rldarts.cells import discretize
from rldarts.genotypes import CellGenotype, NetworkGenotype

OPS = ("Conv3x3", "Relu", "Tanh", "SkipConnection", "Zero")


def _alphas_from_probs(rows_per_node):
    """log-probabilities are alphas whose softmax is exactly the given probabilities."""
    return [np.log(np.asarray(rows, np.float64)) for rows in rows_per_node]


def test_discretize_hand_built():
    alphas = _alphas_from_probs([
        # node 0: one edge, kept whatever its strength; Zero is ignored even when largest.
        [[0.1, 0.2, 0.1, 0.1, 0.5]],
        # node 1: both edges kept (k=2 and only 2 edges).
        [[0.6, 0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.3, 0.4]],
        # node 2: edge 1 (Tanh .5) and edge 2 (Conv .7) win over edge 0 (Relu .3).
        [[0.2, 0.3, 0.2, 0.2, 0.1], [0.1, 0.1, 0.5, 0.2, 0.1], [0.7, 0.1, 0.1, 0.05, 0.05]],
        # node 3: edge 3 has Zero .9 -> its best real op (.04) is weakest; keep 0 and 1.
        [[0.1, 0.1, 0.1, 0.6, 0.1], [0.1, 0.5, 0.2, 0.1, 0.1], [0.3, 0.2, 0.2, 0.2, 0.1],
         [0.01, 0.02, 0.03, 0.04, 0.9]],
    ])
    g = discretize(alphas, OPS, k=2)
    assert g.nodes == (
        ((0, "Relu"),),
        ((0, "Conv3x3"), (1, "SkipConnection")),
        ((1, "Tanh"), (2, "Conv3x3")),
        ((0, "SkipConnection"), (1, "Relu")),
    )
    g1 = discretize(alphas, OPS, k=1)
    assert g1.nodes[2] == ((2, "Conv3x3"),) and g1.nodes[3] == ((0, "SkipConnection"),)


def test_discretize_network_dict_and_ties():
    zeros = [np.zeros((1 + i, 5)) for i in range(3)]
    g = discretize({"normal": zeros, "reduction": zeros}, OPS, k=2)
    assert isinstance(g, NetworkGenotype)
    # All equal: lowest op index and lowest input indices win, deterministically.
    assert g["normal"].nodes == (((0, "Conv3x3"),), ((0, "Conv3x3"), (1, "Conv3x3")),
                                 ((0, "Conv3x3"), (1, "Conv3x3")))


def test_discretize_bad_input():
    with pytest.raises(ValueError, match="k must be positive"):
        discretize([np.zeros((1, 5))], OPS, k=0)
    with pytest.raises(ValueError, match=r"alphas of node 1 have shape \(3, 5\)"):
        discretize([np.zeros((1, 5)), np.zeros((3, 5))], OPS)
    with pytest.raises(ValueError, match="unknown op"):
        discretize([np.zeros((1, 2))], ("Conv3x3", "Bogus"))


def test_json_round_trip_cell_and_network():
    cell = CellGenotype(nodes=(((0, "Conv3x3"),), ((0, "Relu"), (1, "Tanh"))))
    assert CellGenotype.from_json(cell.to_json()) == cell
    data = json.loads(cell.to_json())
    assert data["format_version"] == 1 and data["nodes"][1] == [[0, "Relu"], [1, "Tanh"]]
    net = NetworkGenotype({"normal": cell, "reduction": cell})
    back = NetworkGenotype.from_json(net.to_json())
    assert back == net and back["reduction"].nodes == cell.nodes


@pytest.mark.parametrize("text,match", [
    ("{not json", "malformed genotype JSON"),
    ('{"format_version": 7, "nodes": []}', "unsupported genotype format_version 7"),
    ('{"format_version": 1, "nodes": [[[0, "Conv9"]]]}', "node 0 uses unknown op 'Conv9'"),
    ('{"format_version": 1, "nodes": [[[1, "Relu"]]]}', r"input index 1 out of range \[0, 1\)"),
    ('{"format_version": 1, "nodes": [[[0, "Relu"]], []]}', "node 1 has no incoming edge"),
    ('{"format_version": 1, "nodes": [[[0, "Zero"]]]}', "keeps a 'Zero' edge"),
    ('{"format_version": 1, "nodes": [[["0", "Relu"]]]}', "an edge is"),
    ('{"format_version": 1}', "expected an object with 'nodes'"),
])
def test_cell_validation_errors(text, match):
    with pytest.raises(ValueError, match=match):
        CellGenotype.from_json(text)


def test_network_validation_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown cell type 'middle'"):
        NetworkGenotype.from_json('{"format_version": 1, "cells": {"middle": {"nodes": '
                                  '[[[0, "Relu"]]]}}}')
    with pytest.raises(ValueError, match="cannot read genotype file"):
        NetworkGenotype.load(str(tmp_path / "missing.json"))
    (tmp_path / "g.json").write_text('{"format_version": 1, "cells": 3}')
    with pytest.raises(ValueError, match="g.json: malformed network genotype"):
        NetworkGenotype.load(str(tmp_path / "g.json"))
