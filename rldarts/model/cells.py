"""DARTS cells: the supernet cell (mixed ops) and the discrete cell of a genotype.

Wiring (RL-DARTS, section 2 of the reference): ``num_inputs`` cell inputs (1 by
default), ``num_nodes`` intermediate nodes; node i sums one edge from every cell
input and every earlier node, then a batch norm without scale/offset that uses
the current batch statistics. A reduction cell (stride 2) applies the stride on
edges leaving a cell input only. An input whose width differs from the cell's is
first projected by a 1x1 conv.

The architecture parameters (alphas) are NOT module params: they are a list with
one array per node, node i of shape ``(num_inputs + i, num_ops)``, passed to
``SearchCell.__call__`` explicitly.

How a supernet edge mixes its candidate ops is its search method's business
(``rldarts.model.methods``: darts, gdas, pc_darts); the edge modules are in
``rldarts.model.edges``. The parameter tree of a ``FixedCell`` is a
subset of the ``SearchCell`` one (``node{i}_edge{j}/<op name>``), so the weights of
kept ops map across unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rldarts.model import conv as conv_lib
from rldarts.model import methods, remat
from rldarts.model import ops as ops_lib
from rldarts.model.edges import MixedOp
from rldarts.model.genotypes import OUTPUT_MODES, CellGenotype

Alphas = list  # one jax/np array per node, node i: (num_inputs + i, num_ops)


def init_alphas(
    ops: Sequence[str],
    num_nodes: int = 4,
    num_inputs: int = 1,
    key: jax.Array | None = None,
    scale: float = 0.0,
) -> Alphas:
    """Alphas of one cell type: zeros (a uniform mixture), or scale * N(0,1) with a key."""
    ops = ops_lib.resolve_search_space(ops)
    _check_positive(num_nodes=num_nodes, num_inputs=num_inputs)
    shapes = [(num_inputs + i, len(ops)) for i in range(num_nodes)]
    if key is None or scale == 0.0:
        return [jnp.zeros(s, jnp.float32) for s in shapes]
    keys = jax.random.split(key, num_nodes)
    return [scale * jax.random.normal(k, s, jnp.float32) for k, s in zip(keys, shapes)]


def edge_probabilities(alphas: Alphas, inverse_temperature: float = 1.0) -> Alphas:
    """Mixing weights per edge: softmax(inverse_temperature * alpha) over the ops."""
    return [jax.nn.softmax(inverse_temperature * a, axis=-1) for a in alphas]


def mean_entropy(alphas: Alphas, inverse_temperature: float = 1.0) -> jax.Array:
    """Mean over all edges of the entropy (nats) of the op distribution."""
    ents = [
        -jnp.sum(p * jnp.log(jnp.clip(p, 1e-12)), axis=-1)
        for p in edge_probabilities(alphas, inverse_temperature)
    ]
    return jnp.mean(jnp.concatenate(ents))


def parameter_free_share(
    alphas: Alphas, ops: Sequence[str], inverse_temperature: float = 1.0
) -> jax.Array:
    """Mean probability on weight-free ops (skip, activations, pools, zero).

    A share growing toward 1 is the early sign of the DARTS skip collapse.
    """
    mask = jnp.array([op in ops_lib.PARAMETER_FREE_OPS for op in ops], jnp.float32)
    probs = jnp.concatenate(edge_probabilities(alphas, inverse_temperature), axis=0)
    return jnp.mean(probs @ mask)


def _check_positive(**values):
    for name, v in values.items():
        if v <= 0:
            raise ValueError(f"{name} must be positive, got {v}")


def _check_output_mode(mode: str):
    if mode not in OUTPUT_MODES:
        raise ValueError(f"unknown output_mode {mode!r}; valid: {', '.join(OUTPUT_MODES)}")


class _CellBase(nn.Module):
    """Shared input projection and output combination of both cell kinds."""

    def _project_inputs(self, inputs, channels: int, num_inputs: int):
        if not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        if len(inputs) != num_inputs:
            raise ValueError(f"cell expects {num_inputs} input(s), got {len(inputs)}")
        return [
            x
            if x.shape[-1] == channels
            else conv_lib.Conv(channels, (1, 1), name=f"preprocess{i}")(x)
            for i, x in enumerate(inputs)
        ]

    def _combine(self, nodes, channels: int, mode: str):
        if mode == "concat_conv":
            return conv_lib.Conv(channels, (1, 1), name="output_conv")(
                jnp.concatenate(nodes, axis=-1)
            )
        if mode == "sum":
            return sum(nodes)
        if mode == "average":
            return sum(nodes) / len(nodes)
        if mode == "weighted_sum":
            logits = self.param("output_logits", nn.initializers.zeros, (len(nodes),))
            w = jax.nn.softmax(logits)
            return sum(w[i] * n for i, n in enumerate(nodes))
        return nodes[-1]  # last_node


class SearchCell(_CellBase):
    """The supernet cell: every edge mixes ``ops`` as ``method`` says
    (``rldarts.model.methods``). A sampling method (``gdas``) runs the architecture
    ``draw`` it is given: a network draws once per cell type and forward pass and hands
    that draw to every cell of the type, so the subnet that runs is one member of the
    space a genotype describes. Without ``draw`` the cell draws its own from the
    ``'arch'`` RNG stream (``rngs={'arch': key}`` in ``apply``); the drawn op indices are
    sown as ``intermediates/gdas_draw``. ``pc_darts`` needs ``edge_weights``."""

    channels: int
    ops: tuple[str, ...]
    num_nodes: int = 4
    num_inputs: int = 1
    stride: int = 1
    output_mode: str = "concat_conv"
    method: str = methods.DEFAULT
    partial_channels_k: int = 4
    remat: str = "none"  # net.remat (rldarts.model.remat): "edge" recomputes each edge

    @nn.compact
    def __call__(
        self,
        inputs,
        alphas: Alphas,
        inverse_temperature=1.0,
        edge_weights: Alphas | None = None,
        draw: list | None = None,
    ):
        ops = ops_lib.resolve_search_space(self.ops)
        m = self._check(ops, alphas, edge_weights)
        states = self._project_inputs(inputs, self.channels, self.num_inputs)
        if m.samples:
            if draw is None:
                draw = m.draw(self.make_rng("arch"), alphas, inverse_temperature)
            self.sow("intermediates", "gdas_draw", tuple(index for index, _ in draw))
        for i in range(self.num_nodes):
            weights = m.node_weights(alphas[i], inverse_temperature, draw[i] if draw else None)
            node_edge_weights = edge_weights[i] if edge_weights is not None else None
            total = 0.0
            for j, h in enumerate(states):
                stride = self.stride if j < self.num_inputs else 1
                total = total + m.edge(
                    h,
                    j,
                    weights,
                    node_edge_weights,
                    self.channels,
                    ops,
                    stride,
                    self.partial_channels_k,
                    name=f"node{i}_edge{j}",
                    level=self.remat,
                )
            states.append(ops_lib.batch_norm(total))
        return self._combine(states[self.num_inputs :], self.channels, self.output_mode)

    def _check(self, ops, alphas, edge_weights) -> methods.SearchMethod:
        _check_positive(
            channels=self.channels,
            num_nodes=self.num_nodes,
            num_inputs=self.num_inputs,
            stride=self.stride,
        )
        _check_output_mode(self.output_mode)
        m = methods.get(self.method)
        m.check_cell(
            self.channels, self.partial_channels_k, edge_weights, self.num_inputs, self.num_nodes
        )
        if len(alphas) != self.num_nodes:
            raise ValueError(f"got alphas for {len(alphas)} nodes, cell has {self.num_nodes}")
        for i, a in enumerate(alphas):
            expected = (self.num_inputs + i, len(ops))
            if tuple(a.shape) != expected:
                raise ValueError(
                    f"alphas of node {i} have shape {tuple(a.shape)}, expected {expected}"
                )
        return m


class FixedCell(_CellBase):
    """The discrete cell of a genotype: one op per kept edge."""

    channels: int
    genotype: CellGenotype
    stride: int = 1
    output_mode: str = "concat_conv"
    remat: str = "none"  # net.remat (rldarts.model.remat): "edge" recomputes each edge

    @nn.compact
    def __call__(self, inputs):
        _check_positive(channels=self.channels, stride=self.stride)
        _check_output_mode(self.output_mode)
        g = self.genotype
        states = self._project_inputs(inputs, self.channels, g.num_inputs)
        for i, node in enumerate(g.nodes):
            total = 0.0
            for j, op in node:
                stride = self.stride if j < g.num_inputs else 1
                edge = remat.at(MixedOp, self.remat, "edge")
                total = total + edge(self.channels, (op,), stride, name=f"node{i}_edge{j}")(
                    states[j]
                )
            states.append(ops_lib.batch_norm(total))
        return self._combine(states[g.num_inputs :], self.channels, self.output_mode)


def one_hot_alphas(genotype: CellGenotype, ops: Sequence[str], strength: float = 30.0):
    """Alphas whose mixture is (numerically) the genotype: the kept op on kept edges,
    the zero op on every other edge. Needs a zero op in ``ops``."""
    ops = ops_lib.resolve_search_space(ops)
    zero = [k for k, op in enumerate(ops) if op in ops_lib.ZERO_OPS]
    if not zero:
        raise ValueError(f"search space {ops} has no zero op to switch edges off")
    alphas = []
    for i, node in enumerate(genotype.nodes):
        a = np.zeros((genotype.num_inputs + i, len(ops)), np.float32)
        a[:, zero[0]] = strength
        for j, op in node:
            a[j, zero[0]] = 0.0
            a[j, ops.index(op)] = strength
        alphas.append(jnp.asarray(a))
    return alphas
