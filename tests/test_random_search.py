"""Random genotypes: the discretization constraints, reproducibility, uniformity, files."""

import collections
import json

import numpy as np
import pytest

from rldarts.model import ops as ops_lib
from rldarts.model import random_search as rs
from rldarts.model.genotypes import NetworkGenotype

OPS = ("Conv3x3", "Relu", "Tanh", "SkipConnection", "Zero")


@pytest.mark.parametrize("num_inputs,num_nodes,k", [(1, 4, 2), (2, 5, 2), (1, 3, 1), (1, 4, 3)])
def test_sampled_cells_meet_the_discretization_constraints(num_inputs, num_nodes, k):
    rng = np.random.default_rng(0)
    for _ in range(50):
        cell = rs.sample_cell_genotype(OPS, num_nodes, k, rng, num_inputs=num_inputs)
        assert cell.num_inputs == num_inputs and cell.num_nodes == num_nodes
        for i, node in enumerate(cell.nodes):
            idx = [j for j, _ in node]
            assert len(idx) == min(k, num_inputs + i)  # k edges (all when fewer)
            assert len(set(idx)) == len(idx)  # distinct inputs
            assert idx == sorted(idx)  # ordered by input index
            assert all(0 <= j < num_inputs + i for j in idx)
            assert all(op in OPS and op not in ops_lib.ZERO_OPS for _, op in node)


def test_classic_space_never_samples_none():
    rng = np.random.default_rng(1)
    ops = set()
    for _ in range(100):
        ops |= set(rs.sample_cell_genotype("darts_classic", 4, 2, rng).op_names)
    assert ops == set(ops_lib.SEARCH_SPACES["darts_classic"]) - {"none"}


def test_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="only zero ops"):
        rs.sample_cell_genotype(("Zero", "none"), 2, 2, rng)
    with pytest.raises(ValueError, match="must be positive"):
        rs.sample_cell_genotype(OPS, 2, 0, rng)
    with pytest.raises(ValueError, match="no cells"):
        rs.write_random_genotypes("/nonexistent", 1, 0, "impala", OPS, 2, 2)


def test_stream_is_reproducible_and_order_free():
    args = (("normal", "reduction"), OPS, 4, 2)
    forward = [rs.sample_network_genotype(*args, seed=7, index=i) for i in range(6)]
    backward = [rs.sample_network_genotype(*args, seed=7, index=i) for i in reversed(range(6))]
    assert forward == backward[::-1]
    assert len({g.to_json() for g in forward}) == 6  # samples differ from each other
    other = rs.sample_network_genotype(*args, seed=8, index=0)
    assert other != forward[0]
    assert forward[0]["normal"] != forward[0]["reduction"]


def test_roughly_uniform():
    """Over many cells: each op ~1/4 of the edges, node 3's 6 input pairs ~1/6 each."""
    rng = np.random.default_rng(2)
    ops, pairs = collections.Counter(), collections.Counter()
    n = 3000
    for _ in range(n):
        cell = rs.sample_cell_genotype(OPS, 4, 2, rng)
        ops.update(cell.op_names)
        pairs[tuple(j for j, _ in cell.nodes[3])] += 1
    total = sum(ops.values())
    assert set(ops) == set(OPS) - {"Zero"}
    for count in ops.values():  # std of a share ~0.004 here
        assert abs(count / total - 0.25) < 0.02
    assert len(pairs) == 6
    for count in pairs.values():  # std ~0.007
        assert abs(count / n - 1 / 6) < 0.035


def test_write_random_genotypes(tmp_path):
    paths = rs.write_random_genotypes(
        str(tmp_path), 3, 5, "darts_standard", "rl_darts_default", 2, 2
    )
    assert paths == [str(tmp_path / f"random_{i:03d}" / "genotype.json") for i in range(3)]
    for i, path in enumerate(paths):
        genotype = NetworkGenotype.load(path)
        assert set(genotype.cells) == {"normal", "reduction"}
        assert genotype == rs.sample_network_genotype(
            ("normal", "reduction"), "rl_darts_default", 2, 2, 5, i
        )
        info = json.loads((tmp_path / f"random_{i:03d}" / "random_search.json").read_text())
        assert info["sample_index"] == i and info["seed"] == 5
        assert NetworkGenotype.from_json(json.dumps(info["genotype"])) == genotype
    # Idempotent; a one-cell network gets one cell type.
    assert (
        rs.write_random_genotypes(str(tmp_path), 3, 5, "darts_standard", "rl_darts_default", 2, 2)
        == paths
    )
    one = rs.write_random_genotypes(
        str(tmp_path / "impala"), 1, 0, "darts_impala", "rl_darts_default", 2, 2
    )
    assert set(NetworkGenotype.load(one[0]).cells) == {"normal"}
    assert NetworkGenotype.load(one[0]).found_with is None  # no net keys: no provenance
    assert not list(tmp_path.rglob("*.tmp"))


def test_random_genotypes_record_their_provenance(tmp_path):
    from rldarts.model.genotypes import Provenance

    paths = rs.write_random_genotypes(
        str(tmp_path),
        2,
        5,
        "darts_standard",
        "rl_darts_default",
        2,
        2,
        depths=[8, 16],
        dense=64,
        output_mode="concat_conv",
        first_conv=False,
    )
    expected = Provenance(
        "random", "darts_standard", "rl_darts_default", 2, "concat_conv", False, (8, 16), 64
    )
    for i, path in enumerate(paths):
        genotype = NetworkGenotype.load(path)
        assert genotype.found_with == expected
        assert (
            genotype.cells
            == rs.sample_network_genotype(
                ("normal", "reduction"), "rl_darts_default", 2, 2, 5, i
            ).cells
        )
        info = json.loads((tmp_path / f"random_{i:03d}" / "random_search.json").read_text())
        assert info["genotype"]["found_with"]["method"] == "random"
