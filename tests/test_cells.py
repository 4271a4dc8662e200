"""Cells: supernet == fixed cell on one-hot alphas, wiring, alpha helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rldarts.model.cells as cells
from rldarts.model.genotypes import CellGenotype

OPS = ("Conv3x3Relu", "DilConv3x3", "Relu", "Tanh", "SkipConnection", "Zero")


def _genotype(num_inputs=1):
    n = num_inputs
    return CellGenotype(
        num_inputs=n,
        nodes=(
            ((0, "Conv3x3Relu"),),
            ((0, "SkipConnection"), (n, "DilConv3x3")),
            ((n, "Tanh"), (n + 1, "Conv3x3Relu")),
            ((0, "Relu"), (n + 2, "Conv3x3Relu")),
        ),
    )


def _subset(tree, template):
    """The part of ``tree`` with ``template``'s structure (fixed params inside supernet)."""
    if isinstance(template, dict):
        return {k: _subset(tree[k], v) for k, v in template.items()}
    assert tree.shape == template.shape
    return tree


@pytest.mark.parametrize("output_mode", cells.OUTPUT_MODES)
@pytest.mark.parametrize("stride", [1, 2])
def test_supernet_with_one_hot_alphas_equals_fixed_cell(output_mode, stride):
    x = jnp.asarray(np.random.RandomState(0).randn(4, 8, 8, 5), jnp.float32)
    geno = _genotype()
    search = cells.SearchCell(6, OPS, num_nodes=4, stride=stride, output_mode=output_mode)
    alphas = cells.one_hot_alphas(geno, OPS)
    sparams = search.init(jax.random.PRNGKey(0), x, alphas)
    fixed = cells.FixedCell(6, geno, stride=stride, output_mode=output_mode)
    fparams = fixed.init(jax.random.PRNGKey(1), x)
    # Weights of the kept ops map across unchanged: the fixed tree is a subset.
    fparams = _subset(sparams, fparams)
    ys = search.apply(sparams, x, alphas)
    yf = fixed.apply(fparams, x)
    assert ys.shape == yf.shape == (4, 8 // stride, 8 // stride, 6)
    np.testing.assert_allclose(np.asarray(ys), np.asarray(yf), atol=2e-4)
    # ...and the uniform mixture is a different function (the test can fail).
    yu = search.apply(sparams, x, cells.init_alphas(OPS, 4))
    assert np.abs(np.asarray(yu) - np.asarray(yf)).max() > 1e-2


def test_two_input_cell_equivalence():
    xs = [jnp.asarray(np.random.RandomState(i).randn(2, 6, 6, 4), jnp.float32) for i in range(2)]
    geno = _genotype(num_inputs=2)
    search = cells.SearchCell(4, OPS, num_nodes=4, num_inputs=2)
    alphas = cells.one_hot_alphas(geno, OPS)
    assert [a.shape for a in alphas] == [(2, 6), (3, 6), (4, 6), (5, 6)]
    sparams = search.init(jax.random.PRNGKey(0), xs, alphas)
    fixed = cells.FixedCell(4, geno)
    fparams = _subset(sparams, fixed.init(jax.random.PRNGKey(1), xs))
    np.testing.assert_allclose(
        np.asarray(search.apply(sparams, xs, alphas)),
        np.asarray(fixed.apply(fparams, xs)),
        atol=2e-4,
    )


def test_node_normalisation_and_wiring():
    """last_node output is node 3 after a no-affine batch norm: zero mean, unit var,
    and the cell has exactly one mixed-op edge per (node, earlier state)."""
    x = jnp.asarray(np.random.RandomState(0).randn(8, 6, 6, 4) * 5 + 2, jnp.float32)
    cell = cells.SearchCell(4, OPS, num_nodes=4, output_mode="last_node")
    alphas = cells.init_alphas(OPS, 4)
    params = cell.init(jax.random.PRNGKey(0), x, alphas)
    edges = sorted(k for k in params["params"] if k.startswith("node"))
    assert edges == sorted(f"node{i}_edge{j}" for i in range(4) for j in range(i + 1))
    y = np.asarray(cell.apply(params, x, alphas))
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1, atol=1e-3)


def test_input_projection_only_when_widths_differ():
    alphas = cells.init_alphas(OPS, 2)
    cell = cells.SearchCell(4, OPS, num_nodes=2)
    same = cell.init(jax.random.PRNGKey(0), jnp.ones((2, 4, 4, 4)), alphas)["params"]
    other = cell.init(jax.random.PRNGKey(0), jnp.ones((2, 4, 4, 3)), alphas)["params"]
    assert "preprocess0" not in same and "preprocess0" in other


def test_alpha_helpers_against_hand_computation():
    alphas = cells.init_alphas(OPS, 4)
    assert [a.shape for a in alphas] == [(1, 6), (2, 6), (3, 6), (4, 6)]
    assert all(float(jnp.abs(a).sum()) == 0 for a in alphas)
    # Uniform over 6 ops: entropy log 6 on every edge.
    np.testing.assert_allclose(float(cells.mean_entropy(alphas)), np.log(6), rtol=1e-6)
    a = [jnp.array([[np.log(3.0), 0, 0, 0, 0, 0]])]
    p = np.array([3, 1, 1, 1, 1, 1]) / 8
    np.testing.assert_allclose(np.asarray(cells.edge_probabilities(a)[0][0]), p, rtol=1e-6)
    np.testing.assert_allclose(float(cells.mean_entropy(a)), -(p * np.log(p)).sum(), rtol=1e-6)
    # Parameter-free ops here: Relu, Tanh, SkipConnection, Zero -> 4 of 8 parts.
    np.testing.assert_allclose(float(cells.parameter_free_share(a, OPS)), 4 / 8, rtol=1e-6)
    # Inverse temperature 2 squares the odds: 9 vs 1.
    p2 = cells.edge_probabilities(a, 2.0)[0][0]
    np.testing.assert_allclose(float(p2[0]), 9 / 14, rtol=1e-6)


def test_alpha_gradients_finite_and_nonzero():
    x = jnp.asarray(np.random.RandomState(0).randn(4, 6, 6, 4), jnp.float32)
    cell = cells.SearchCell(4, OPS, num_nodes=3)
    alphas = cells.init_alphas(OPS, 3)
    params = cell.init(jax.random.PRNGKey(0), x, alphas)
    grads = jax.jit(jax.grad(lambda a: jnp.sum(cell.apply(params, x, a) ** 2)))(alphas)
    for g in grads:
        g = np.asarray(g)
        assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0


def test_bad_cell_config():
    x = jnp.ones((1, 4, 4, 4))
    with pytest.raises(ValueError, match="unknown output_mode 'max'.*concat_conv"):
        cells.SearchCell(4, OPS, output_mode="max").init(
            jax.random.PRNGKey(0), x, cells.init_alphas(OPS, 4)
        )
    with pytest.raises(ValueError, match="num_nodes must be positive"):
        cells.init_alphas(OPS, 0)
    with pytest.raises(ValueError, match="alphas of node 1 have shape"):
        bad = cells.init_alphas(OPS, 4)
        bad[1] = jnp.zeros((3, 6))
        cells.SearchCell(4, OPS).init(jax.random.PRNGKey(0), x, bad)
    with pytest.raises(ValueError, match="unknown op 'Conv9x9'"):
        cells.init_alphas(("Conv9x9", "Zero"), 4)
