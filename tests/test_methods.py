"""The cheaper supernets (issue 11) at the level of cells and discretization: GDAS's
straight-through Gumbel weights and its one-op-per-edge forward pass, PC-DARTS's
partial-channel edge and edge normalisation. References are hand computations and
NumPy, never the code's own output."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rldarts.model import cells, edges, networks
from rldarts.model import ops as ops_lib
from rldarts.model.genotypes import (
    EDGE_WEIGHTS,
    CellGenotype,
    NetworkGenotype,
    discretize,
    discretize_cell,
)

# --- GDAS ------------------------------------------------------------------------------


def test_gumbel_hard_weights_value_and_straight_through_gradient():
    alphas = jnp.array([[0.3, -1.2, 0.8, 0.1]])
    gumbel = jnp.array([[0.5, 2.3, -0.4, 0.2]])
    tau = 0.7
    index, w = edges.gumbel_hard_weights(alphas, gumbel, 1 / tau)
    # Gumbel-max: argmax(log_softmax(a) + g); here alpha 1 loses on alpha but wins on g.
    logits = np.log(np.exp(alphas) / np.exp(alphas).sum()) + np.asarray(gumbel)
    assert int(index[0]) == int(np.argmax(logits)) == 1
    np.testing.assert_array_equal(np.asarray(w), [[0, 1, 0, 0]])
    # d w_idx / d alpha_k for the soft sample s = softmax((log_softmax(a) + g) / tau):
    # log_softmax has Jacobian (delta - p), so d s_i / d a_k = (1/tau) s_i (delta_ik - s_k)
    # after the chain rule: sum_j s_i (delta_ij - s_j)/tau * (delta_jk - p_k)
    # = (1/tau) s_i (delta_ik - s_k) (the p terms cancel since sum_j s_i(delta_ij-s_j) = 0).
    s = np.exp(logits / tau) / np.exp(logits / tau).sum()
    i = 1
    expected = (1 / tau) * s[0, i] * ((np.arange(4) == i) - s[0])
    grad = jax.grad(lambda a: edges.gumbel_hard_weights(a, gumbel, 1 / tau)[1][0, i])(alphas)
    np.testing.assert_allclose(np.asarray(grad)[0], expected, rtol=1e-5, atol=1e-7)


def test_gumbel_draws_follow_softmax_alphas():
    """The drawn op is a sample of softmax(alphas) whatever the temperature."""
    alphas = jnp.log(jnp.array([[0.6, 0.3, 0.1]]))
    gumbel = jax.random.gumbel(jax.random.PRNGKey(0), (20000, 3))
    index, _ = jax.vmap(lambda g: edges.gumbel_hard_weights(alphas, g[None], 10.0))(gumbel)
    freq = np.bincount(np.asarray(index).ravel(), minlength=3) / 20000
    np.testing.assert_allclose(freq, [0.6, 0.3, 0.1], atol=0.015)


_CALLS = []


class _Recorded(nn.Module):
    """An op that records (at run time, through a host callback) that it ran."""

    channels: int
    stride: int = 1
    tag: str = ""

    def __call__(self, x):
        jax.debug.callback(lambda: _CALLS.append(self.tag))
        return x[:, :: self.stride, :: self.stride]


@pytest.fixture
def recorded_ops(monkeypatch):
    names = ("RecA", "RecB", "RecC")
    for name in names:
        monkeypatch.setitem(
            ops_lib.OPS, name, lambda c, s, name=name, **kw: _Recorded(c, s, name, **kw)
        )
    _CALLS.clear()
    return names


def test_gdas_forward_runs_only_the_drawn_op_per_edge(recorded_ops):
    cell = cells.SearchCell(4, recorded_ops, num_nodes=3, method="gdas", output_mode="sum")
    alphas = cells.init_alphas(recorded_ops, 3)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 6, 4))
    params = cell.init({"params": jax.random.PRNGKey(0), "arch": jax.random.PRNGKey(1)}, x, alphas)
    apply = jax.jit(lambda p, k: cell.apply(p, x, alphas, 1.0, rngs={"arch": k}))
    # The program holds one conditional per edge (1 + 2 + 3 edges).
    jaxpr = jax.make_jaxpr(lambda p, k: cell.apply(p, x, alphas, 1.0, rngs={"arch": k}))(
        params, jax.random.PRNGKey(2)
    )
    conds = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "cond"]
    assert len(conds) == 6 and all(len(e.params["branches"]) == 3 for e in conds)
    seen = set()
    for seed in range(6):
        _CALLS.clear()
        jax.block_until_ready(apply(params, jax.random.PRNGKey(seed)))
        assert len(_CALLS) == 6, _CALLS  # one op per edge ran, not 3 per edge
        seen.update(_CALLS)
    assert seen == set(recorded_ops)  # and which one changes with the draw


def test_gdas_supernet_gradient_reaches_alphas_of_multi_edge_nodes():
    torso = networks.make_torso("darts_standard", depths=(8,), dense=8, num_nodes=2, method="gdas")
    alphas = networks.init_network_alphas("darts_standard", "rl_darts_conv", 2)
    obs = jax.random.randint(jax.random.PRNGKey(1), (4, 16, 16, 3), 0, 255).astype(jnp.uint8)
    key = jax.random.PRNGKey(3)
    params = torso.init({"params": key, "arch": key}, obs, alphas)
    grad = jax.jit(jax.grad(lambda a, k: torso.apply(params, obs, a, 1.0, rngs={"arch": k}).sum()))
    # Node 1 sums two edges: the drawn ops' weights change the output after the node's
    # batch norm. Node 0 has one edge, whose scale the batch norm removes: zero gradient
    # (the GDAS estimator carries no information there; WORKSPACE.md). Summed over a few
    # draws: one draw shared by both normal cells may put Zero on a node-1 edge, and
    # then that node's gradient is ~0 too.
    grads = [grad(alphas, jax.random.PRNGKey(seed))["normal"] for seed in range(4)]
    node0, node1 = (sum(float(jnp.abs(g[i]).sum()) for g in grads) for i in (0, 1))
    assert node1 > 1e-3 and node0 < 1e-2 * node1, (node0, node1)  # eps of the BN only


_GDAS_OPS = ("Conv3x3Relu", "Relu", "Tanh", "SkipConnection")  # real ops: any draw is a genotype


def _gdas_network(key):
    """A tiny darts_standard gdas supernet (two normal cells and a reduction cell per
    stage, two stages) with random alphas, its params and an observation batch."""
    torso = networks.make_torso(
        "darts_standard",
        depths=(4, 4),
        dense=8,
        search_space=_GDAS_OPS,
        num_nodes=3,
        method="gdas",
    )
    alphas = networks.init_network_alphas("darts_standard", _GDAS_OPS, 3, key=key, scale=0.5)
    obs = jax.random.randint(key, (3, 12, 12, 3), 0, 255).astype(jnp.uint8)
    params = torso.init({"params": key, "arch": key}, obs, alphas)
    return torso, alphas, params, obs


@functools.partial(jax.jit, static_argnums=0)
def _apply_sown(torso, params, obs, alphas, key):
    return torso.apply(params, obs, alphas, 1.0, rngs={"arch": key}, mutable=["intermediates"])


def _drawn(torso, params, obs, alphas, key):
    """The output of one forward pass and each cell's drawn op indices (sown)."""
    out, state = _apply_sown(torso, params, obs, alphas, key)
    inter = state["intermediates"]
    draws = {
        name: tuple(tuple(int(i) for i in node) for node in inter[name]["gdas_draw"][0])
        for name in inter
    }
    return out, draws


def test_gdas_draws_one_architecture_per_cell_type_and_forward_pass():
    torso, alphas, params, obs = _gdas_network(jax.random.PRNGKey(0))
    seen = set()
    for seed in range(4):
        _, draws = _drawn(torso, params, obs, alphas, jax.random.PRNGKey(seed))
        assert len(draws) == 6, sorted(draws)  # every cell ran and sowed its draw
        for cell_type in ("normal", "reduction"):
            per_cell = {d for name, d in draws.items() if cell_type in name}
            assert len(per_cell) == 1, (cell_type, draws)
            seen.update((cell_type, d) for d in per_cell)
    assert len(seen) > 2  # and the draw changes with the key


def test_gdas_forward_pass_is_the_fixed_network_of_its_draw():
    """The subnet a GDAS forward pass runs is one member of the genotype space: the
    fixed network of the drawn genotype (every edge, the drawn op), on the same
    weights, computes the same output."""
    torso, alphas, params, obs = _gdas_network(jax.random.PRNGKey(1))
    out, draws = _drawn(torso, params, obs, alphas, jax.random.PRNGKey(7))
    genotype = NetworkGenotype(
        {
            t: CellGenotype(
                tuple(
                    tuple((j, _GDAS_OPS[k]) for j, k in enumerate(node))
                    for node in draws[f"stage0_{t}" + ("0" if t == "normal" else "")]
                )
            )
            for t in ("normal", "reduction")
        }
    )
    fixed = networks.make_torso(
        "darts_standard", depths=(4, 4), dense=8, search_space=_GDAS_OPS, genotype=genotype
    )
    np.testing.assert_allclose(fixed.apply(params, obs), out, rtol=1e-5, atol=1e-6)


# --- PC-DARTS --------------------------------------------------------------------------


def _np_max_pool(x, size, stride):
    """'SAME' max pool (pad with -inf, output ceil(H / stride)), NHWC."""
    n, h, w, c = x.shape
    oh, ow = -(-h // stride), -(-w // stride)
    ph = max((oh - 1) * stride + size - h, 0)
    pw = max((ow - 1) * stride + size - w, 0)
    xp = np.pad(
        x,
        ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)),
        constant_values=-np.inf,
    )
    out = np.empty((n, oh, ow, c), x.dtype)
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = xp[
                :, i * stride : i * stride + size, j * stride : j * stride + size
            ].max(axis=(1, 2))
    return out


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_channel_edge_matches_numpy(stride):
    """PC-DARTS edge on C=8, K=4: ops on channels 0-1, bypass 2-7 (2x2 max pool when
    strided), then channel g*(C/K)+i -> i*K+g."""
    ops = ("MaxPool3x3", "MaxPool2x2", "Zero")
    c, k = 8, 4
    x = np.random.default_rng(0).standard_normal((2, 6, 6, c)).astype(np.float32)
    w = np.array([0.2, 0.5, 0.3], np.float32)
    edge = edges.MixedOp(c, ops, stride, partial_channels_k=k)
    got = np.asarray(edge.apply(edge.init(jax.random.PRNGKey(0), x, w), x, w))
    part = x[..., : c // k]
    mixed = w[0] * _np_max_pool(part, 3, stride) + w[1] * _np_max_pool(part, 2, stride)
    bypass = x[..., c // k :]
    bypass = bypass if stride == 1 else _np_max_pool(bypass, 2, stride)
    both = np.concatenate([mixed, bypass], axis=-1)
    want = np.empty_like(both)
    for g in range(k):
        for i in range(c // k):
            want[..., i * k + g] = both[..., g * (c // k) + i]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_pc_darts_node_weights_edges_by_softmax_of_edge_weights():
    """A node of a pc_darts cell sums its edges scaled by softmax(edge weights): with a
    skip-only space, node 1 (before its batch norm) = sum_j beta_j shuffle(h_j)."""
    ops = ("SkipConnection",)
    cell = cells.SearchCell(
        4, ops, num_nodes=2, method="pc_darts", partial_channels_k=2, output_mode="last_node"
    )
    alphas = cells.init_alphas(ops, 2)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 5, 4))
    for beta in ([0.0, 0.0], [2.0, -1.0]):
        edge_weights = [jnp.zeros(1), jnp.array(beta)]
        params = cell.init(jax.random.PRNGKey(0), x, alphas, 1.0, edge_weights)
        got = np.asarray(cell.apply(params, x, alphas, 1.0, edge_weights))
        # shuffle of (skip on 2 channels, bypass 2) with K=2 maps channels [0,1,2,3]
        # to [0,2,1,3]; node 0 = bn(shuffle(x)); node 1 = bn(b0 shuffle(x) + b1 shuffle(n0)).
        shuffle = lambda h: h[..., [0, 2, 1, 3]]
        bn = lambda h: (h - h.mean((0, 1, 2))) / np.sqrt(h.var((0, 1, 2)) + 1e-5)
        b = np.exp(beta) / np.exp(beta).sum()
        n0 = bn(shuffle(np.asarray(x)))
        want = bn(b[0] * shuffle(np.asarray(x)) + b[1] * shuffle(n0))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_edge_normalisation_changes_the_kept_edges():
    ops = ("Conv3x3", "SkipConnection", "Zero")
    # Node 2 has inputs 0, 1, 2; by op strength alone it keeps 0 and 1 (0.7, 0.6 > 0.5).
    probs = np.array([[0.7, 0.1, 0.2], [0.6, 0.2, 0.2], [0.1, 0.5, 0.4]])
    alphas = [np.log([[0.5, 0.3, 0.2]]), np.log([[0.5, 0.3, 0.2]] * 2), np.log(probs)]
    plain = discretize_cell(alphas, ops, k=2)
    assert plain.nodes[2] == ((0, "Conv3x3"), (1, "Conv3x3"))
    # softmax(beta) = (0.2, 0.2, 0.6): strengths 0.14, 0.12, 0.30 -> keep 0 and 2.
    betas = [np.zeros(1), np.zeros(2), np.log([0.2, 0.2, 0.6])]
    normalised = discretize_cell(alphas, ops, k=2, edge_weights=betas)
    assert normalised.nodes[2] == ((0, "Conv3x3"), (2, "SkipConnection"))
    assert normalised.nodes[:2] == plain.nodes[:2]
    # The network-level entry point reads the edge weights from the alpha pytree.
    net = discretize({"normal": alphas, EDGE_WEIGHTS: {"normal": betas}}, ops)
    assert net["normal"] == normalised and set(net.cells) == {"normal"}


def test_pc_darts_needs_a_width_divisible_by_k():
    with pytest.raises(ValueError, match="partial_channels_k=3 must be a positive divisor"):
        networks.make_torso(
            "darts_standard", depths=(8, 16), method="pc_darts", partial_channels_k=3
        )


def test_pc_darts_alphas_hold_edge_weights_per_node():
    alphas = networks.init_network_alphas("darts_standard", "rl_darts_conv", 3, method="pc_darts")
    assert [b.shape for b in alphas[EDGE_WEIGHTS]["reduction"]] == [(1,), (2,), (3,)]
    assert set(alphas) == {"normal", "reduction", EDGE_WEIGHTS}
