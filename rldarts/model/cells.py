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

How a supernet edge mixes its candidate ops (``method``, the config's ``arch.method``):
* ``darts`` (Liu et al. 2019): every op, weighted by softmax(alphas).
* ``gdas`` (Dong & Yang 2019): one op per edge per forward pass, drawn from
  softmax(alphas) by the Gumbel-max trick (one draw per edge, shared by the batch and
  by every cell of the type, as the alphas are);
  the forward pass runs the drawn op only (``lax.switch``), scaled by a weight whose
  value is 1 and whose gradient is that of the Gumbel-softmax sample at temperature
  1 / ``inverse_temperature`` (straight-through). As in the paper, the backward pass
  reaches the alphas through the drawn op's weight only.
* ``pc_darts`` (Xu et al. 2020): the mixture runs on the first 1/K of the edge's
  channels, the rest bypass it (max-pooled on strided edges), then a channel shuffle;
  each node weights its incoming edges by softmax(edge weights), one weight per edge
  (``edge_weights``, a list per node of shape ``(num_inputs + i,)``, kept beside the
  alphas and trained like them). The parameter tree of a ``FixedCell`` is a
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
from rldarts.model import ops as ops_lib

# `X as X`: re-exported, `rldarts.model.cells` is the public entry point to cells, genotypes and
# their discretization. Never let a lint fix drop them.
from rldarts.model.genotypes import EDGE_WEIGHTS as EDGE_WEIGHTS
from rldarts.model.genotypes import OUTPUT_MODES, CellGenotype
from rldarts.model.genotypes import NetworkGenotype as NetworkGenotype
from rldarts.model.genotypes import discretize as discretize
from rldarts.model.genotypes import discretize_cell as discretize_cell
from rldarts.model.genotypes import split_alphas as split_alphas

METHODS = ("darts", "gdas", "pc_darts")

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


def init_edge_weights(num_nodes: int = 4, num_inputs: int = 1) -> Alphas:
    """PC-DARTS edge-normalisation weights of one cell type: zeros (equal edges)."""
    _check_positive(num_nodes=num_nodes, num_inputs=num_inputs)
    return [jnp.zeros((num_inputs + i,), jnp.float32) for i in range(num_nodes)]


def gumbel_hard_weights(
    alphas: jax.Array, gumbel: jax.Array, inverse_temperature=1.0
) -> tuple[jax.Array, jax.Array]:
    """GDAS draw for edges ``alphas`` ``(edges, ops)`` with Gumbel(0, 1) noise ``gumbel``
    of the same shape: ``(index, weights)``, the drawn op per edge (a sample of
    softmax(alphas)) and a one-hot ``weights`` whose gradient is that of the soft sample
    softmax(inverse_temperature * (log_softmax(alphas) + gumbel)) (straight-through)."""
    logits = jax.nn.log_softmax(alphas, axis=-1) + gumbel
    soft = jax.nn.softmax(inverse_temperature * logits, axis=-1)
    index = jnp.argmax(logits, axis=-1)
    hard = jax.nn.one_hot(index, alphas.shape[-1], dtype=soft.dtype)
    return index, hard + (soft - jax.lax.stop_gradient(soft))


def gdas_draw(key: jax.Array, alphas: Alphas, inverse_temperature=1.0) -> list:
    """One GDAS architecture of a cell type: per node, ``gumbel_hard_weights`` of its
    edges with fresh Gumbel noise, ``[(index (edges,), weights (edges, ops)), ...]``."""
    keys = jax.random.split(key, len(alphas))
    return [
        gumbel_hard_weights(a, jax.random.gumbel(k, a.shape), inverse_temperature)
        for k, a in zip(keys, alphas)
    ]


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
    """NHWC channel shuffle (ShuffleNet; PC-DARTS): channel g * (C / groups) + i moves to
    i * groups + g, so the mixed part of an edge is spread over every group."""
    n, h, w, c = x.shape
    return x.reshape(n, h, w, groups, c // groups).swapaxes(-1, -2).reshape(n, h, w, c)


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


class MixedOp(nn.Module):
    """sum_k w_k op_k(x) over the candidate ops; a single op when ``weights`` is None.

    Zero ops are skipped: their output is 0, computing it would only cost time.
    With ``partial_channels_k`` K > 1 (PC-DARTS) the mixture runs on the first C/K
    channels only; the other channels bypass it (2x2 max pool on strided edges, as
    PC-DARTS) and a channel shuffle interleaves the two parts.
    """

    channels: int
    ops: tuple[str, ...]
    stride: int = 1
    partial_channels_k: int = 1

    @nn.compact
    def __call__(self, x, weights=None):
        k = self.partial_channels_k
        if k == 1:
            return self._mixture(x, self.channels, weights)
        check_partial_channels(self.channels, k)
        part = self.channels // k
        mixed = self._mixture(x[..., :part], part, weights)
        bypass = x[..., part:]
        if self.stride > 1:
            bypass = ops_lib.max_pool(bypass, 2, self.stride)
        return channel_shuffle(jnp.concatenate([mixed, bypass], axis=-1), k)

    def _mixture(self, x, channels: int, weights):
        out = 0.0
        for k, name in enumerate(self.ops):
            if name in ops_lib.ZERO_OPS:
                continue
            y = ops_lib.make_op(name, channels, self.stride, name=name)(x)
            out = out + (y if weights is None else weights[k] * y)
        if isinstance(out, float):  # only zero ops: keep the strided shape
            out = ops_lib.Zero(channels, self.stride)(x)
        return out


def check_partial_channels(channels: int, k: int) -> None:
    """PC-DARTS splits an edge's channels in K groups: K must divide the width."""
    if k <= 0 or channels % k:
        raise ValueError(
            f"arch.partial_channels_k={k} must be a positive divisor of "
            f"every cell width; got width {channels}"
        )


class SampledOp(nn.Module):
    """GDAS edge: ``weight * op_index(x)``, where only the op at ``index`` runs (a
    ``lax.switch``; at init every op runs once so that all parameters exist). The
    parameters are named as ``MixedOp``'s (``<op name>/...``)."""

    channels: int
    ops: tuple[str, ...]
    stride: int = 1

    def setup(self):
        for name in self.ops:  # setattr names the submodule: params under <op name>/
            setattr(self, name, ops_lib.make_op(name, self.channels, self.stride))

    def __call__(self, x, index, weights):
        branches = [lambda mdl, x, name=name: getattr(mdl, name)(x) for name in self.ops]
        if self.is_initializing():
            for branch in branches:
                branch(self, x)
        return weights[index] * nn.switch(index, branches, self, x)


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
    """The supernet cell: every edge a mixture of ``ops`` weighted by the alphas, made
    as ``method`` says (module docstring). ``gdas`` runs the architecture ``draw``
    (``gdas_draw``) it is given: a network draws once per cell type and forward pass
    and hands that draw to every cell of the type, so the subnet that runs is one
    member of the space a genotype describes. Without ``draw`` the cell draws its own
    from the ``'arch'`` RNG stream (``rngs={'arch': key}`` in ``apply``). The drawn op
    indices are sown as ``intermediates/gdas_draw``. ``pc_darts`` needs
    ``edge_weights``."""

    channels: int
    ops: tuple[str, ...]
    num_nodes: int = 4
    num_inputs: int = 1
    stride: int = 1
    output_mode: str = "concat_conv"
    method: str = "darts"
    partial_channels_k: int = 4

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
        _check_positive(
            channels=self.channels,
            num_nodes=self.num_nodes,
            num_inputs=self.num_inputs,
            stride=self.stride,
        )
        _check_output_mode(self.output_mode)
        self._check_method(edge_weights)
        if len(alphas) != self.num_nodes:
            raise ValueError(f"got alphas for {len(alphas)} nodes, cell has {self.num_nodes}")
        states = self._project_inputs(inputs, self.channels, self.num_inputs)
        if self.method == "gdas":
            if draw is None:
                draw = gdas_draw(self.make_rng("arch"), alphas, inverse_temperature)
            self.sow("intermediates", "gdas_draw", tuple(index for index, _ in draw))
        for i in range(self.num_nodes):
            expected = (self.num_inputs + i, len(ops))
            if tuple(alphas[i].shape) != expected:
                raise ValueError(
                    f"alphas of node {i} have shape {tuple(alphas[i].shape)}, expected {expected}"
                )
            if self.method == "gdas":
                index, weights = draw[i]
            else:
                weights = jax.nn.softmax(inverse_temperature * alphas[i], axis=-1)
            total = 0.0
            for j, h in enumerate(states):
                stride = self.stride if j < self.num_inputs else 1
                name = f"node{i}_edge{j}"
                if self.method == "gdas":
                    y = SampledOp(self.channels, ops, stride, name=name)(h, index[j], weights[j])
                elif self.method == "pc_darts":
                    edge = MixedOp(self.channels, ops, stride, self.partial_channels_k, name=name)
                    y = jax.nn.softmax(edge_weights[i])[j] * edge(h, weights[j])
                else:
                    y = MixedOp(self.channels, ops, stride, name=name)(h, weights[j])
                total = total + y
            states.append(ops_lib.batch_norm(total))
        return self._combine(states[self.num_inputs :], self.channels, self.output_mode)

    def _check_method(self, edge_weights):
        if self.method not in METHODS:
            raise ValueError(f"unknown arch.method {self.method!r}; valid: {', '.join(METHODS)}")
        if self.method != "pc_darts":
            return
        check_partial_channels(self.channels, self.partial_channels_k)
        expected = [(self.num_inputs + i,) for i in range(self.num_nodes)]
        if edge_weights is None or [tuple(np.shape(b)) for b in edge_weights] != expected:
            got = None if edge_weights is None else [tuple(np.shape(b)) for b in edge_weights]
            raise ValueError(f"pc_darts cell needs edge weights of shapes {expected}, got {got}")


class FixedCell(_CellBase):
    """The discrete cell of a genotype: one op per kept edge."""

    channels: int
    genotype: CellGenotype
    stride: int = 1
    output_mode: str = "concat_conv"

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
                total = total + MixedOp(self.channels, (op,), stride, name=f"node{i}_edge{j}")(
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
