"""Discretization on hand-built alphas, JSON round trips and validation."""

import json

import numpy as np
import pytest

from rldarts.model.genotypes import CellGenotype, NetworkGenotype, Provenance, discretize

OPS = ("Conv3x3", "Relu", "Tanh", "SkipConnection", "Zero")


def _alphas_from_probs(rows_per_node):
    """log-probabilities are alphas whose softmax is exactly the given probabilities."""
    return [np.log(np.asarray(rows, np.float64)) for rows in rows_per_node]


def test_discretize_hand_built():
    alphas = _alphas_from_probs(
        [
            # node 0: one edge, kept whatever its strength; Zero is ignored even when largest.
            [[0.1, 0.2, 0.1, 0.1, 0.5]],
            # node 1: both edges kept (k=2 and only 2 edges).
            [[0.6, 0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.3, 0.4]],
            # node 2: edge 1 (Tanh .5) and edge 2 (Conv .7) win over edge 0 (Relu .3).
            [[0.2, 0.3, 0.2, 0.2, 0.1], [0.1, 0.1, 0.5, 0.2, 0.1], [0.7, 0.1, 0.1, 0.05, 0.05]],
            # node 3: edge 3 has Zero .9 -> its best real op (.04) is weakest; keep 0 and 1.
            [
                [0.1, 0.1, 0.1, 0.6, 0.1],
                [0.1, 0.5, 0.2, 0.1, 0.1],
                [0.3, 0.2, 0.2, 0.2, 0.1],
                [0.01, 0.02, 0.03, 0.04, 0.9],
            ],
        ]
    )
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
    assert g["normal"].nodes == (
        ((0, "Conv3x3"),),
        ((0, "Conv3x3"), (1, "Conv3x3")),
        ((0, "Conv3x3"), (1, "Conv3x3")),
    )


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
    assert data["format_version"] == 2 and data["nodes"][1] == [[0, "Relu"], [1, "Tanh"]]
    net = NetworkGenotype({"normal": cell, "reduction": cell})
    back = NetworkGenotype.from_json(net.to_json())
    assert back == net and back["reduction"].nodes == cell.nodes
    assert back.found_with is None and "found_with" not in json.loads(net.to_json())


@pytest.mark.parametrize(
    "text,match",
    [
        ("{not json", "malformed genotype JSON"),
        ('{"format_version": 7, "nodes": []}', "unsupported genotype format_version 7"),
        ('{"format_version": 1, "nodes": [[[0, "Conv9"]]]}', "node 0 uses unknown op 'Conv9'"),
        ('{"format_version": 1, "nodes": [[[1, "Relu"]]]}', r"input index 1 out of range \[0, 1\)"),
        ('{"format_version": 1, "nodes": [[[0, "Relu"]], []]}', "node 1 has no incoming edge"),
        ('{"format_version": 1, "nodes": [[[0, "Zero"]]]}', "keeps a 'Zero' edge"),
        ('{"format_version": 1, "nodes": [[["0", "Relu"]]]}', "an edge is"),
        ('{"format_version": 1}', "expected an object with 'nodes'"),
    ],
)
def test_cell_validation_errors(text, match):
    with pytest.raises(ValueError, match=match):
        CellGenotype.from_json(text)


def test_network_validation_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown cell type 'middle'"):
        NetworkGenotype.from_json(
            '{"format_version": 1, "cells": {"middle": {"nodes": [[[0, "Relu"]]]}}}'
        )
    with pytest.raises(ValueError, match="cannot read genotype file"):
        NetworkGenotype.load(str(tmp_path / "missing.json"))
    (tmp_path / "g.json").write_text('{"format_version": 1, "cells": 3}')
    with pytest.raises(ValueError, match="g.json: malformed network genotype"):
        NetworkGenotype.load(str(tmp_path / "g.json"))


# Provenance (format 2): how a genotype was found, enough to rebuild its network.
CELL2 = CellGenotype(nodes=(((0, "Conv3x3Relu"),), ((0, "SkipConnection"), (1, "Conv3x3Relu"))))
FOUND = Provenance(
    method="darts",
    network="darts_standard",
    search_space="conv3x3_only",
    num_nodes=2,
    output_mode="concat_conv",
    first_conv=False,
    depths=(4, 8),
    dense=32,
)


def _provenance_json(**changes):
    found = {**FOUND.to_dict(), **changes}
    found = {k: v for k, v in found.items() if v is not _DROP}
    cells = {"normal": CELL2.to_dict(), "reduction": CELL2.to_dict()}
    return json.dumps({"format_version": 2, "found_with": found, "cells": cells})


_DROP = object()


def test_provenance_json_round_trip(tmp_path):
    net = NetworkGenotype({"normal": CELL2, "reduction": CELL2}, found_with=FOUND)
    text = net.to_json()
    data = json.loads(text)
    assert data["format_version"] == 2
    assert data["found_with"] == {
        "method": "darts",
        "network": "darts_standard",
        "search_space": "conv3x3_only",
        "num_nodes": 2,
        "output_mode": "concat_conv",
        "first_conv": False,
        "depths": [4, 8],
        "dense": 32,
    }
    assert '"depths": [4, 8]' in text  # readable: a list of ints on one line
    (tmp_path / "g.json").write_text(text)
    back = NetworkGenotype.load(str(tmp_path / "g.json"))
    assert back == net and back.found_with == FOUND and back.found_with.depths == (4, 8)
    assert back.with_provenance(None) == NetworkGenotype({"normal": CELL2, "reduction": CELL2})
    assert back != back.with_provenance(None)  # provenance is part of the value
    assert hash(back) == hash(net)


def test_format_1_file_still_loads(tmp_path):
    # Exactly what rldarts wrote before provenance (format 1): no found_with.
    (tmp_path / "g.json").write_text("""{
  "format_version": 1,
  "cells": {
    "normal": {
      "num_inputs": 1,
      "nodes": [
        [
          [0, "Conv3x3Relu"]
        ],
        [
          [0, "SkipConnection"],
          [1, "Conv3x3Relu"]
        ]
      ]
    },
    "reduction": {
      "num_inputs": 1,
      "nodes": [
        [
          [0, "Conv3x3Relu"]
        ],
        [
          [0, "SkipConnection"],
          [1, "Conv3x3Relu"]
        ]
      ]
    }
  }
}""")
    g = NetworkGenotype.load(str(tmp_path / "g.json"))
    assert g.found_with is None
    assert g == NetworkGenotype({"normal": CELL2, "reduction": CELL2})
    assert CellGenotype.from_json('{"format_version": 1, "nodes": [[[0, "Relu"]]]}').num_nodes == 1


@pytest.mark.parametrize(
    "changes,match",
    [
        (
            {"network": "impala"},
            "found_with.network='impala' is not valid; valid choices: "
            "darts_dmc, darts_impala, darts_minatar, darts_standard",
        ),
        (
            {"search_space": "bogus"},
            "found_with.search_space='bogus' is not valid; valid choices: rl_darts_default, ",
        ),
        (
            {"output_mode": "max"},
            "found_with.output_mode='max' is not valid; valid choices: concat_conv, sum",
        ),
        ({"num_nodes": "2"}, "found_with.num_nodes='2' is not valid; expected a positive int"),
        ({"num_nodes": True}, "found_with.num_nodes=True is not valid"),
        ({"dense": 0}, "found_with.dense=0 is not valid; expected a positive int"),
        ({"depths": []}, r"found_with.depths=\[\] is not valid; expected a non-empty list"),
        ({"depths": [4, "8"]}, "found_with.depths=.* is not valid"),
        ({"depths": 4}, "found_with.depths=4 is not valid"),
        ({"first_conv": "yes"}, "found_with.first_conv='yes' is not valid; expected true or false"),
        ({"method": ""}, "found_with.method='' is not valid; expected a non-empty string"),
        ({"method": 3}, "found_with.method=3 is not valid"),
        ({"dense": _DROP}, "malformed genotype found_with: missing dense; its fields: method, "),
        ({"width": 3}, "malformed genotype found_with: unknown field.* width"),
        ({"num_nodes": 3}, "found_with.num_nodes=3 but the normal cell has 2 nodes"),
        (
            {"network": "darts_impala"},
            r"found_with.network='darts_impala' has cell types "
            r"\['normal'\], the genotype has \['normal', 'reduction'\]",
        ),
        (
            {"search_space": "activations"},
            "the normal cell uses Conv3x3Relu, outside found_with.search_space='activations'",
        ),
    ],
)
def test_malformed_provenance_one_line(tmp_path, changes, match):
    (tmp_path / "g.json").write_text(_provenance_json(**changes))
    with pytest.raises(ValueError, match=match) as err:
        NetworkGenotype.load(str(tmp_path / "g.json"))
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"genotype file {tmp_path}")


def test_provenance_must_be_an_object():
    text = json.dumps(
        {"format_version": 2, "found_with": "darts", "cells": {"normal": CELL2.to_dict()}}
    )
    with pytest.raises(ValueError, match="malformed genotype found_with: expected an object"):
        NetworkGenotype.from_json(text)
