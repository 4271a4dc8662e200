"""Networks: shapes, jit, alpha gradients, supernet == fixed network, heads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rldarts.model import cells, networks
from rldarts.model.genotypes import CellGenotype, NetworkGenotype

OBS = jnp.asarray(np.random.RandomState(0).randint(0, 256, (3, 64, 64, 3)), jnp.uint8)
SMALL = dict(depths=(4, 8), dense=16, num_nodes=2)
OPS = ("Conv3x3Relu", "SkipConnection", "Relu", "Zero")


@pytest.mark.parametrize("network", ["impala", "darts_impala", "darts_standard"])
def test_torso_shapes_jit_and_alpha_grads(network):
    kw = {} if network == "impala" else dict(SMALL, search_space=OPS)
    torso = networks.make_torso(network, **({"depths": (4, 8), "dense": 16} | kw))
    alphas = networks.init_network_alphas(network, OPS, 2)
    params = torso.init(jax.random.PRNGKey(0), OBS, alphas)
    feats = jax.jit(torso.apply)(params, OBS, alphas)
    assert feats.shape == (3, 16) and feats.dtype == jnp.float32
    if network == "impala":
        assert alphas == {}
        return
    assert set(alphas) == set(networks.CELL_TYPES[network])
    grads = jax.jit(jax.grad(lambda a: jnp.sum(torso.apply(params, OBS, a) ** 2)))(alphas)
    for g in jax.tree.leaves(grads):
        assert np.all(np.isfinite(np.asarray(g))) and np.abs(np.asarray(g)).sum() > 0


def test_default_sizes_and_uint8_scaling():
    torso = networks.make_torso("impala")
    params = torso.init(jax.random.PRNGKey(0), OBS)
    assert torso.apply(params, OBS).shape == (3, 256)
    # uint8 input is scaled to [0, 1] inside: same as feeding the scaled floats.
    np.testing.assert_allclose(
        np.asarray(torso.apply(params, OBS)),
        np.asarray(torso.apply(params, OBS.astype(jnp.float32) / 255)),
        atol=1e-5,
    )


def _subset(tree, template):
    if isinstance(template, dict):
        return {k: _subset(tree[k], v) for k, v in template.items()}
    return tree


def test_supernet_network_with_one_hot_alphas_equals_fixed_network():
    cell = CellGenotype(nodes=(((0, "Conv3x3Relu"),), ((0, "SkipConnection"), (1, "Relu"))))
    red = CellGenotype(nodes=(((0, "Conv3x3Relu"),), ((0, "Relu"), (1, "Conv3x3Relu"))))
    geno = NetworkGenotype({"normal": cell, "reduction": red})
    kw = dict(SMALL, search_space=OPS)
    supernet = networks.make_torso("darts_standard", **kw)
    fixed = networks.make_torso("darts_standard", genotype=geno, **kw)
    alphas = {t: cells.one_hot_alphas(geno[t], OPS) for t in ("normal", "reduction")}
    sp = supernet.init(jax.random.PRNGKey(0), OBS, alphas)
    fp = _subset(sp, fixed.init(jax.random.PRNGKey(1), OBS))
    np.testing.assert_allclose(
        np.asarray(supernet.apply(sp, OBS, alphas)), np.asarray(fixed.apply(fp, OBS)), atol=1e-3
    )


def test_genotype_must_fit_network():
    cell = CellGenotype(nodes=(((0, "Relu"),),))
    with pytest.raises(ValueError, match=r"does not fit network 'darts_standard'.*reduction"):
        networks.make_torso("darts_standard", genotype=NetworkGenotype({"normal": cell}))
    with pytest.raises(ValueError, match="unknown network 'resnet'.*impala"):
        networks.make_torso("resnet")
    with pytest.raises(ValueError, match="must be positive"):
        networks.make_torso("impala", depths=(0, 8))


def test_policy_value_head_and_agent():
    agent = networks.Agent(
        networks.make_torso("impala", depths=(4,), dense=8), networks.PolicyValueHead(15)
    )
    params = agent.init(jax.random.PRNGKey(0), OBS)
    logits, value = agent.apply(params, OBS)
    assert logits.shape == (3, 15) and value.shape == (3,)


def test_c51_dueling_head_formula():
    head = networks.C51DuelingHead(num_actions=4, num_atoms=5, hidden=8)
    feats = jnp.asarray(np.random.RandomState(1).randn(2, 6), jnp.float32)
    params = head.init(jax.random.PRNGKey(0), feats)
    out = np.asarray(head.apply(params, feats))
    p = jax.tree.map(np.asarray, params["params"])
    relu = lambda x: np.maximum(x, 0)
    f = np.asarray(feats)
    dense = lambda name, x: x @ p[name]["kernel"] + p[name]["bias"]
    v = dense("value_out", relu(dense("value_hidden", f)))
    a = dense("advantage_out", relu(dense("advantage_hidden", f))).reshape(2, 4, 5)
    np.testing.assert_allclose(out, v[:, None] + a - a.mean(axis=1, keepdims=True), atol=1e-5)
